import path from 'node:path';
import type { Config } from '../config.js';
import { BulkheadError } from '../errors.js';
import { openPGlite } from './pglite.js';
import { openPostgres } from './postgres.js';
import type { Database } from './types.js';

/** PostgreSQL when DATABASE_URL is set, else PGlite persisted under the data folder. */
export async function openDatabase(config: Config): Promise<Database> {
  if (config.databaseUrl !== undefined) {
    return openPostgres({ url: config.databaseUrl, appUrl: config.databaseAppUrl, poolSize: config.pgPoolSize, connectTimeoutMs: config.pgConnectTimeoutMs });
  }
  return openPGlite({ dataDir: path.join(config.dataDir, 'pgdata') });
}

/**
 * The database as it becomes available. The HTTP server listens (and answers /healthz) while the
 * embedded database is still starting; until `set` is called, anything that needs the database
 * gets `not_ready` (503) instead of waiting.
 */
export interface DatabaseRef {
  get(): Database;
  set(db: Database): void;
  readonly ready: boolean;
  /** Resolves with the database once it is set (at once if it already is). */
  whenReady(): Promise<Database>;
}

export function databaseRef(initial?: Database): DatabaseRef {
  let current = initial;
  let resolveReady: ((db: Database) => void) | undefined;
  const ready = initial === undefined ? new Promise<Database>((resolve) => { resolveReady = resolve; }) : Promise.resolve(initial);
  return {
    get() {
      if (!current) throw new BulkheadError('not_ready', 'the database is still starting');
      return current;
    },
    set(db) {
      current = db;
      resolveReady?.(db);
    },
    get ready() {
      return current !== undefined;
    },
    whenReady: () => ready,
  };
}
