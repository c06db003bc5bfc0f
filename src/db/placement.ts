/**
 * Placement: which database holds workspace W. Code asks this seam, never "the database", so
 * schema-per-tenant, database-per-tenant and data-residency placement can arrive later behind it
 * without touching a single caller. Today every workspace lives in the shared database.
 */
import type { Database } from './types.js';

export interface Placement {
  /** The database that holds the workspace's rows. */
  databaseFor(workspaceId: string): Database;
  /** The database that holds the platform registry (tenants, workspaces, platform audit chain). */
  registry(): Database;
}

/** Every workspace in the one shared database (resolved late: it may still be starting). */
export function sharedPlacement(db: () => Database): Placement {
  return {
    databaseFor: () => db(),
    registry: () => db(),
  };
}
