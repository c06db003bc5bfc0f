/**
 * Operational events: things Bulkhead itself reports into a workspace (a connection needing
 * re-authorisation, a failing or disabled destination, an exhausted delivery). Each is written in
 * the same transaction as the change it describes, twice over: in `operational_events` (listed by
 * `GET /v1/operational-events`) and as an ordinary event of type `bulkhead.…`, routed by the
 * workspace's rules like any other — only rules that name the namespace (`bulkhead.*`) match.
 *
 * Loops are cut by construction: an event about a destination is never delivered to that
 * destination, and failures while delivering an operational event are recorded but not routed
 * again (otherwise two failing alert endpoints would keep reporting each other forever).
 */
import type { WorkspaceTx } from '../db/tenant-tx.js';
import { newId, type Runtime } from '../ids.js';
import type { Vault } from '../vault/vault.js';
import { loadRouting, writeEvent } from './ingest.js';

export type OperationalEventType =
  | 'bulkhead.connection.created'
  | 'bulkhead.connection.failed'
  | 'bulkhead.connection.needs_reauth'
  | 'bulkhead.connection.refresh_failing'
  | 'bulkhead.delivery.exhausted'
  | 'bulkhead.delivery.failing'
  | 'bulkhead.destination.recovered'
  | 'bulkhead.destination.disabled';

export interface OperationalEvent {
  readonly type: OperationalEventType;
  readonly resource: string;
  readonly resourceId: string;
  readonly payload: Record<string, unknown>;
}

export async function emitOperationalEvent(
  tx: WorkspaceTx,
  deps: { vault: Vault; runtime: Runtime },
  event: OperationalEvent,
  options: { route: boolean } = { route: true },
): Promise<string> {
  const id = newId('operationalEvent', deps.runtime);
  await tx.query(
    'INSERT INTO operational_events (workspace_id, id, type, resource, resource_id, payload, occurred_at) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)',
    [tx.workspaceId, id, event.type, event.resource, event.resourceId, JSON.stringify(event.payload), deps.runtime.now()],
  );
  if (options.route) {
    const about = typeof event.payload['destinationId'] === 'string' ? event.payload['destinationId'] : undefined;
    const input = { type: event.type, resource: event.resource, resourceId: event.resourceId, payload: { ...event.payload, operationalEventId: id } };
    await writeEvent(tx, deps, input, JSON.stringify(input.payload), await loadRouting(tx), about);
  }
  return id;
}
