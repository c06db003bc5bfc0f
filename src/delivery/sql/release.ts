/**
 * Releasing: on shutdown a worker hands back every delivery it still holds, so another worker
 * takes them at once instead of after the lease. A delivery never attempted goes back to
 * `pending`, one attempted before to `retrying`; neither is counted as an attempt.
 */
import type { PlatformTx } from '../../db/tenant-tx.js';

export async function releaseLeases(tx: PlatformTx, owner: string): Promise<void> {
  await tx.query(
    "UPDATE deliveries SET status = CASE WHEN attempt_count = 0 THEN 'pending' ELSE 'retrying' END, lease_owner = NULL, lease_until = NULL WHERE status = 'delivering' AND lease_owner = $1",
    [owner],
  );
}
