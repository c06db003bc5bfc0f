/**
 * Cancel: a destination being deleted (routing/destinations.ts `remove`) takes its queued
 * deliveries (pending, retrying) to `cancelled` in the same transaction, so nothing is sent to a
 * destination that no longer exists. Deliveries do not reference destinations by foreign key, so
 * they (and their attempt history) outlive it. A delivery mid-attempt (`delivering`) is not
 * touched here: it belongs to the worker holding its lease. Finished deliveries keep their status.
 */
import type { WorkspaceTx } from '../../db/tenant-tx.js';

/** Returns how many deliveries were cancelled. */
export async function cancelDestinationDeliveries(tx: WorkspaceTx, destinationId: string, now: Date): Promise<number> {
  const cancelled = await tx.query("UPDATE deliveries SET status = 'cancelled', updated_at = $2 WHERE destination_id = $1 AND status IN ('pending', 'retrying')", [destinationId, now]);
  return cancelled.rowCount;
}
