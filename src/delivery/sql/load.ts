/**
 * Loading a claim: every delivery of one workspace that this worker just leased, with its payload
 * and its destination, in one statement inside the workspace's transaction (RLS applies). A row
 * whose lease is no longer ours (it ran out and another worker took it) is left out.
 */
import type { WorkspaceTx } from '../../db/tenant-tx.js';

export interface LoadedRow {
  readonly id: string;
  readonly event_id: string | null;
  readonly destination_id: string;
  readonly attempt_count: number;
  readonly type: string;
  /** Sealed: the event's payload, or the delivery's own (a delivery made by an execution). */
  readonly payload: Uint8Array;
  readonly own_payload: boolean;
  readonly event_created_at: Date;
  readonly url: string;
  readonly headers: Record<string, string>;
}

export async function loadLeased(tx: WorkspaceTx, ids: readonly string[], owner: string): Promise<LoadedRow[]> {
  const { rows } = await tx.query<LoadedRow>(
    `SELECT d.id, d.event_id, d.destination_id, d.attempt_count,
            COALESCE(d.event_type, e.type) AS type, COALESCE(d.payload, e.payload) AS payload, d.payload IS NOT NULL AS own_payload,
            COALESCE(e.created_at, d.created_at) AS event_created_at, dst.url, dst.headers
       FROM deliveries d
       LEFT JOIN events e ON e.workspace_id = d.workspace_id AND e.id = d.event_id
       JOIN destinations dst ON dst.workspace_id = d.workspace_id AND dst.id = d.destination_id
      WHERE d.workspace_id = $1 AND d.id = ANY($2::text[]) AND d.status = 'delivering' AND d.lease_owner = $3`,
    [tx.workspaceId, ids, owner],
  );
  return rows;
}
