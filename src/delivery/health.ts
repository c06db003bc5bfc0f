/**
 * Destination health, applied once per destination and batch: consecutive failures, the circuit
 * breaker, the failing period, and disabling (on 410 Gone, or after failing without a success for
 * longer than the window). The owner of those columns of `destinations` for the engine.
 *
 * A batch holds the destination's outcomes in the order they finished, which is what the
 * sequential rules mean: a success resets the count and ends a failing period, the failures after
 * the last success count on. So a batch reduces to (any success, trailing failures, any 410).
 *
 * - Destinations with only successes: reset in record.ts's statement (in the steady state,
 *   nothing failing, it changes no row).
 * - A destination with failures: one `UPDATE … RETURNING` that reads the old row under its lock
 *   (`FOR UPDATE` in the sub-select, so two workers' batches apply one after the other) and says
 *   what changed, from which the operational events follow.
 */
import type { WorkspaceTx } from '../db/tenant-tx.js';
import { isReservedType } from '../routing/patterns.js';
import { type AttemptOutcome, errorOf, statusOf } from './outcome.js';

export interface HealthPolicy {
  readonly circuitFailures: number;
  readonly circuitCooldownMs: number;
  readonly disableAfterMs: number;
}

export interface Finished {
  readonly deliveryId: string;
  readonly destinationId: string;
  readonly eventType: string;
  readonly outcome: AttemptOutcome;
}

/** An operational event the engine reports (written by the `emit` it is given: it does not import events/). */
export interface DeliveryAlert {
  readonly type: 'bulkhead.delivery.exhausted' | 'bulkhead.delivery.failing' | 'bulkhead.destination.recovered' | 'bulkhead.destination.disabled';
  readonly resource: 'delivery' | 'destination';
  readonly resourceId: string;
  readonly payload: Record<string, unknown>;
}

/** An alert, and whether it is routed (not when it is about delivering one: no loops). */
export interface HealthEvent {
  readonly event: DeliveryAlert;
  readonly route: boolean;
}

interface Summary {
  readonly destinationId: string;
  /** The last success in the batch, if any. */
  readonly success: Finished | undefined;
  /** Failures after the last success (all of them without one), in order. */
  readonly trailing: readonly Finished[];
  /** Any 410 in the batch: disabling is sticky, a later success does not undo it. */
  readonly gone: boolean;
  readonly last: Finished;
}

export function summarise(finished: readonly Finished[]): Summary[] {
  const byDestination = new Map<string, Finished[]>();
  for (const f of finished) {
    const list = byDestination.get(f.destinationId);
    if (list) list.push(f);
    else byDestination.set(f.destinationId, [f]);
  }
  // In id order, so two batches lock shared destinations in the same order (no deadlock).
  return [...byDestination.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([destinationId, list]) => {
    const last = list.map((f) => f.outcome.kind).lastIndexOf('success');
    return {
      destinationId,
      success: last >= 0 ? list[last] : undefined,
      trailing: list.slice(last + 1),
      gone: list.some((f) => f.outcome.kind === 'gone'),
      last: list[list.length - 1] as Finished,
    };
  });
}

const routed = (f: Finished) => !isReservedType(f.eventType);

/** Destinations whose outcomes in this batch are all successes: record.ts resets them in its statement. */
export function healthyDestinations(finished: readonly Finished[]): string[] {
  return summarise(finished).filter((s) => s.trailing.length === 0 && !s.gone).map((s) => s.destinationId);
}

/**
 * The rest of a batch's health, after record.ts: `finished` are the attempts whose lease held;
 * `reset` says which of the destinations it was asked to reset (`candidates`) it changed. A
 * destination healthy now but not a candidate (a failure of its batch lost its lease) is reset
 * here; each destination with failures gets its one statement.
 */
export async function applyHealth(
  tx: WorkspaceTx,
  finished: readonly Finished[],
  policy: HealthPolicy,
  now: Date,
  done: { readonly candidates: readonly string[]; readonly reset: ReadonlyMap<string, { readonly wasFailing: boolean }> },
): Promise<HealthEvent[]> {
  const summaries = summarise(finished);
  const events: HealthEvent[] = [];
  const healthy = summaries.filter((s) => s.trailing.length === 0 && !s.gone);
  const left = healthy.filter((s) => !done.candidates.includes(s.destinationId));
  const wasFailing = new Map([...done.reset].map(([id, r]) => [id, r.wasFailing]));
  if (left.length > 0) {
    const { rows } = await tx.query<{ id: string; was_failing: boolean }>(
      `UPDATE destinations d SET failing_since = NULL, consecutive_failures = 0, circuit_open_until = NULL
         FROM (SELECT id, failing_since FROM destinations WHERE workspace_id = $1 AND id = ANY($2::text[]) AND (failing_since IS NOT NULL OR consecutive_failures > 0) ORDER BY id FOR UPDATE) old
        WHERE d.workspace_id = $1 AND d.id = old.id
        RETURNING d.id, old.failing_since IS NOT NULL AS was_failing`,
      [tx.workspaceId, left.map((s) => s.destinationId)],
    );
    for (const r of rows) wasFailing.set(r.id, r.was_failing);
  }
  for (const s of healthy) if (wasFailing.get(s.destinationId) === true && s.success) events.push(recovered(s.success));
  for (const s of summaries.filter((x) => x.trailing.length > 0 || x.gone)) events.push(...(await applyFailures(tx, s, policy, now)));
  return events;
}

function recovered(f: Finished): HealthEvent {
  return { event: { type: 'bulkhead.destination.recovered', resource: 'destination', resourceId: f.destinationId, payload: { destinationId: f.destinationId } }, route: routed(f) };
}

async function applyFailures(tx: WorkspaceTx, s: Summary, policy: HealthPolicy, now: Date): Promise<HealthEvent[]> {
  const first = s.trailing[0];
  const { rows } = await tx.query<{ was_failing: boolean; was_enabled: boolean; enabled: boolean; disabled_reason: string | null }>(
    // $3: a success in this batch (the count starts again from zero); $4: failures after it.
    `WITH old AS (
       SELECT id, enabled, failing_since, (CASE WHEN $3 THEN 0 ELSE consecutive_failures END) + $4::int AS failures
         FROM destinations WHERE workspace_id = $1 AND id = $2 FOR UPDATE
     ), next AS (
       SELECT old.*, since, COALESCE(since <= $8::timestamptz, false) AS stale
         FROM old, LATERAL (SELECT CASE WHEN $4::int = 0 THEN NULL WHEN $3 OR old.failing_since IS NULL THEN $5::timestamptz ELSE old.failing_since END AS since) s
     )
     UPDATE destinations d SET
       consecutive_failures = next.failures,
       -- Open (or re-open after a failed probe): nothing goes out until the cool-down ends, doubling up to 32 times.
       circuit_open_until = CASE WHEN next.failures >= $6 THEN $5::timestamptz + make_interval(secs => $7::float8 / 1000 * power(2, LEAST(5, GREATEST(0, next.failures - $6))))
                                 WHEN $3 THEN NULL ELSE d.circuit_open_until END,
       failing_since = next.since,
       -- Failing without a single success for longer than the window, or told 410 Gone: stop sending until re-enabled.
       enabled = d.enabled AND NOT (next.stale OR $9),
       disabled_reason = CASE WHEN NOT d.enabled THEN d.disabled_reason WHEN next.stale THEN 'failing continuously'
                              WHEN $9 THEN 'the receiver answered 410 Gone' ELSE d.disabled_reason END,
       updated_at = CASE WHEN d.enabled AND (next.stale OR $9) THEN $5::timestamptz ELSE d.updated_at END
       FROM next
      WHERE d.workspace_id = $1 AND d.id = next.id
      RETURNING next.failing_since IS NOT NULL AS was_failing, next.enabled AS was_enabled, d.enabled, d.disabled_reason`,
    [tx.workspaceId, s.destinationId, s.success !== undefined, s.trailing.length, now, policy.circuitFailures, policy.circuitCooldownMs, new Date(now.getTime() - policy.disableAfterMs), s.gone],
  );
  const row = rows[0];
  if (row === undefined) return [];
  const events: HealthEvent[] = [];
  const destinationId = s.destinationId;
  if (s.success && row.was_failing) events.push(recovered(s.success));
  // A new failing period: none was open, or this batch's success closed it.
  if (first && (!row.was_failing || s.success)) {
    events.push({
      event: { type: 'bulkhead.delivery.failing', resource: 'destination', resourceId: destinationId, payload: { destinationId, deliveryId: first.deliveryId, status: statusOf(first.outcome), error: errorOf(first.outcome) } },
      route: routed(first),
    });
  }
  if (row.was_enabled && !row.enabled) {
    const reason = row.disabled_reason === 'failing continuously' ? 'failing' : 'gone';
    events.push({ event: { type: 'bulkhead.destination.disabled', resource: 'destination', resourceId: destinationId, payload: { destinationId, reason } }, route: routed(s.last) });
  }
  return events;
}
