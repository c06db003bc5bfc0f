/**
 * Per-workspace count limits (connections, destinations, rules, inbound sources): creations in one workspace are
 * serialised by an advisory lock for the rest of the transaction, so two concurrent ones cannot
 * both pass the count.
 */
import { advisoryLockKey } from '../db/locks.js';
import type { WorkspaceTx } from '../db/tenant-tx.js';
import { BulkheadError } from '../errors.js';

export async function enforceCountLimit(
  tx: WorkspaceTx,
  table: 'connections' | 'destinations' | 'rules' | 'inbound_sources',
  max: number,
  code: 'limit_exceeded' | 'connection_limit_exceeded' = 'limit_exceeded',
): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock($1)', [advisoryLockKey(table, tx.workspaceId)]);
  const { rows } = await tx.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
  if ((rows[0]?.n ?? 0) >= max) {
    throw new BulkheadError(code, `this workspace may have at most ${String(max)} ${table.replace('_', ' ')}`, { details: { limit: max } });
  }
}
