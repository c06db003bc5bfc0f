/**
 * Operational events: things Bulkhead itself reports into a workspace (a connection needing
 * re-authorisation, later delivery failures). Written in the same transaction as the change they
 * describe. The event engine turns them into deliverable events; until it exists they are kept
 * in `operational_events` and listed by `GET /v1/operational-events`.
 */
import type { WorkspaceTx } from '../db/tenant-tx.js';
import { newId, type Runtime } from '../ids.js';

export type OperationalEventType =
  | 'bulkhead.connection.needs_reauth'
  | 'bulkhead.connection.refresh_failing'
  | 'bulkhead.delivery.exhausted'
  | 'bulkhead.delivery.failing'
  | 'bulkhead.destination.recovered'
  | 'bulkhead.destination.disabled';

export async function emitOperationalEvent(
  tx: WorkspaceTx,
  runtime: Runtime,
  event: { type: OperationalEventType; resource: string; resourceId: string; payload: Record<string, unknown> },
): Promise<string> {
  const id = newId('operationalEvent', runtime);
  await tx.query(
    'INSERT INTO operational_events (workspace_id, id, type, resource, resource_id, payload, occurred_at) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)',
    [tx.workspaceId, id, event.type, event.resource, event.resourceId, JSON.stringify(event.payload), runtime.now()],
  );
  return id;
}
