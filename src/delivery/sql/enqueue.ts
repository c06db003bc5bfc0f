/**
 * Enqueue: new deliveries, written `pending` and due now, in the transaction that caused them.
 * Two shapes, because the payload lives in different places:
 *  - ingest (events/ingest.ts): one delivery per matching (event, destination); the payload is the
 *    event's, read from `events` at send time, and an ordered destination carries the event's
 *    resource id as its ordering key;
 *  - an execution (executions/runner.ts): deliveries a transform or deliver step produced, each with
 *    its own sealed payload and event type; unique per (execution, destination, part), so a re-run
 *    after a crash writes none twice.
 * Both are one set-based statement (unnest of column arrays) whatever the number of rows.
 */
import type { WorkspaceTx } from '../../db/tenant-tx.js';

export interface EventDelivery {
  readonly id: string;
  readonly eventId: string;
  readonly destinationId: string;
  readonly ruleId: string;
  readonly orderingKey: string | null;
}

/** Queues the deliveries of freshly ingested events. */
export async function enqueueEventDeliveries(tx: WorkspaceTx, now: Date, rows: readonly EventDelivery[]): Promise<void> {
  if (rows.length === 0) return;
  await tx.query(
    `INSERT INTO deliveries (workspace_id, id, event_id, destination_id, rule_id, status, next_attempt_at, ordering_key, created_at, updated_at)
     SELECT $1, d.id, d.event_id, d.destination_id, d.rule_id, 'pending', $2, d.ordering_key, $2, $2
       FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) AS d(id, event_id, destination_id, rule_id, ordering_key)`,
    [tx.workspaceId, now, rows.map((d) => d.id), rows.map((d) => d.eventId), rows.map((d) => d.destinationId), rows.map((d) => d.ruleId), rows.map((d) => d.orderingKey)],
  );
}

export interface ExecutionDelivery {
  readonly id: string;
  readonly destinationId: string;
  readonly part: number;
  readonly eventType: string;
  /** Sealed with the workspace key for the place (deliveries, id, payload). */
  readonly payload: Uint8Array;
}

/**
 * Queues the deliveries an execution produced. Returns how many were written: a part already
 * written by an earlier run of the same execution is skipped.
 */
export async function enqueueExecutionDeliveries(
  tx: WorkspaceTx,
  from: { readonly executionId: string; readonly eventId: string | null; readonly ruleId: string | null; readonly now: Date },
  rows: readonly ExecutionDelivery[],
): Promise<number> {
  if (rows.length === 0) return 0;
  const written = await tx.query(
    `INSERT INTO deliveries (workspace_id, id, event_id, destination_id, rule_id, execution_id, part, event_type, payload, status, next_attempt_at, created_at, updated_at)
     SELECT $1, d.id, $2, d.destination_id, $3, $4, d.part, d.event_type, decode(d.payload, 'hex'), 'pending', $5, $5, $5
       FROM unnest($6::text[], $7::text[], $8::int[], $9::text[], $10::text[]) AS d(id, destination_id, part, event_type, payload)
     ON CONFLICT (workspace_id, execution_id, destination_id, part) WHERE execution_id IS NOT NULL DO NOTHING`,
    [
      tx.workspaceId, from.eventId, from.ruleId, from.executionId, from.now,
      rows.map((d) => d.id), rows.map((d) => d.destinationId), rows.map((d) => d.part), rows.map((d) => d.eventType), rows.map((d) => Buffer.from(d.payload).toString('hex')),
    ],
  );
  return written.rowCount;
}
