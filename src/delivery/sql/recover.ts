/**
 * Recover (`POST /v1/destinations/{id}/recover`): every failed delivery of one destination created
 * in [since, until) goes back to `pending`, due now, with a new round of attempts — e.g. after an
 * outage on the receiving side. Other statuses are left alone.
 */
import type { WorkspaceTx } from '../../db/tenant-tx.js';
import { notFound } from '../../errors.js';

/** Returns how many deliveries were queued again. */
export async function recoverDestination(tx: WorkspaceTx, q: { readonly destinationId: string; readonly since: Date; readonly until: Date; readonly now: Date }): Promise<number> {
  const { rows } = await tx.query('SELECT 1 FROM destinations WHERE id = $1', [q.destinationId]);
  if (rows.length === 0) throw notFound('destination');
  const updated = await tx.query(
    `UPDATE deliveries SET status = 'pending', attempt_count = 0, next_attempt_at = $4, updated_at = $4
      WHERE destination_id = $1 AND status = 'failed' AND created_at >= $2 AND created_at < $3`,
    [q.destinationId, q.since, q.until, q.now],
  );
  return updated.rowCount;
}
