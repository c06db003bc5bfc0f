/**
 * Tenant transactions. Every query on workspace data runs inside `withWorkspace`, which
 *  1. resolves where the workspace lives (placement),
 *  2. opens a transaction,
 *  3. sets `bulkhead.workspace_id` with set_config(..., true) — a bound parameter, never
 *     interpolated — and switches to the application role (NOSUPERUSER, NOBYPASSRLS, not an
 *     owner), both for this transaction only,
 *  4. runs `fn(tx)`.
 * Row-level security then confines every statement to that workspace, whatever the SQL says.
 *
 * `WorkspaceTx` is branded: a function that takes one can only be called from inside
 * `withWorkspace`, which is how "nothing tenant-scoped is reachable outside it" is enforced by
 * the type checker as well as by the database.
 */
import { BulkheadError } from '../errors.js';
import { translateDbError } from './errors.js';
import type { Placement } from './placement.js';
import type { Queryable } from './types.js';

declare const workspaceTx: unique symbol;
declare const platformTx: unique symbol;

export interface WorkspaceTx extends Queryable {
  readonly workspaceId: string;
  readonly [workspaceTx]: true;
}

/** The owner's transaction, for the named cross-workspace work only (platform registry, purge). */
export interface PlatformTx extends Queryable {
  readonly [platformTx]: true;
}

export type WithWorkspace = <T>(workspaceId: string, fn: (tx: WorkspaceTx) => Promise<T>) => Promise<T>;
export type WithPlatform = <T>(fn: (tx: PlatformTx) => Promise<T>) => Promise<T>;

const WORKSPACE_ID = /^ws_[0-9a-z]{26}$/;

export function createTenantTransactions(deps: { placement: Placement; appRole: string }): {
  withWorkspace: WithWorkspace;
  withPlatform: WithPlatform;
} {
  const withWorkspace: WithWorkspace = async (workspaceId, fn) => {
    if (!WORKSPACE_ID.test(workspaceId)) {
      throw new BulkheadError('workspace_context_missing', 'withWorkspace needs a valid workspace id');
    }
    const db = deps.placement.databaseFor(workspaceId);
    try {
      return await db.app.transaction(async (tx) => {
        // Not awaited: on PostgreSQL the context travels in one write with BEGIN and fn's first
        // statement (pipelining, postgres.ts). Statements on one transaction run in the order they
        // were issued, so none runs before the context, and if setting it fails the transaction is
        // aborted and every statement queued behind it fails too — then its error is the one
        // reported, and nothing commits.
        const context = tx.query("SELECT set_config('bulkhead.workspace_id', $1, true), set_config('role', $2, true)", [
          workspaceId,
          deps.appRole,
        ]);
        context.catch(() => undefined);
        let result: Awaited<ReturnType<typeof fn>>;
        try {
          result = await fn(Object.assign(tx, { workspaceId }) as unknown as WorkspaceTx);
        } catch (error) {
          await context;
          throw error;
        }
        await context;
        return result;
      });
    } catch (error) {
      throw translateDbError(error);
    }
  };

  const withPlatform: WithPlatform = async (fn) => {
    try {
      return await deps.placement.registry().owner.transaction((tx) => fn(tx as PlatformTx));
    } catch (error) {
      throw translateDbError(error);
    }
  };

  return { withWorkspace, withPlatform };
}
