/**
 * The delivery engine: a durable queue in the database, worked by any number of processes.
 *
 * Claim (delivery/claim.ts, the named cross-workspace exception): destinations are served least
 * recently first, each within its in-flight cap, rate limit and circuit breaker; a claimed row
 * becomes `delivering` with a lease, and a crashed worker's rows are claimed again when their
 * lease expires.
 *
 * Attempt (inside the delivery's own workspace transaction for every read and write): the event
 * payload and signing secrets are opened there, the request goes out through the egress client
 * (the URL is judged again at send), and the outcome is recorded with the attempt.
 */
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { isDatabaseUnavailable } from '../db/errors.js';
import type { WithPlatform, WithWorkspace, WorkspaceTx } from '../db/tenant-tx.js';
import type { EgressClient } from '../egress/client.js';
import { BulkheadError } from '../errors.js';
import { emitOperationalEvent, type OperationalEvent } from '../events/operational.js';
import { newId, type Runtime } from '../ids.js';
import { createQueueWorker } from '../jobs/claim-loop.js';
import type { Logger } from '../logging.js';
import type { DestinationService } from '../routing/destinations.js';
import { isReservedType } from '../routing/patterns.js';
import type { Vault } from '../vault/vault.js';
import { type Claimed, claimDue } from './claim.js';
import { cooldownMs } from './flow.js';
import { nextAttemptDelayMs, retryAfterMs } from './schedule.js';
import { signedHeaders } from './signing.js';

export interface EngineOptions {
  readonly concurrency: number;
  readonly perDestination: number;
  readonly leaseMs: number;
  readonly pollMs: number;
  readonly timeoutMs: number;
  readonly schedule: readonly number[];
  /** A destination failing without a success for this long is disabled. */
  readonly disableAfterMs: number;
  /** Bytes of each response kept (sealed) with the attempt. */
  readonly keepResponseBytes: number;
  /** In-flight cap for destinations without their own `maxInFlight`. */
  readonly defaultMaxInFlight: number;
  /** Consecutive failures that open a destination's circuit, and its first cool-down. */
  readonly circuitFailures: number;
  readonly circuitCooldownMs: number;
}

/** How an attempt ended, as `/metrics` counts it: the receiver's status class, or no answer. */
export type AttemptOutcomeClass = '2xx' | '3xx' | '4xx' | '5xx' | 'timeout' | 'error';

/** What the engine reports as it works (metrics/metrics.ts counts it). */
export interface DeliveryObserver {
  claimed(seconds: number): void;
  attempted(outcome: AttemptOutcomeClass): void;
}

export function outcomeClass(outcome: { readonly status?: number; readonly error?: string }): AttemptOutcomeClass {
  if (outcome.status !== undefined) {
    const hundreds = Math.floor(outcome.status / 100);
    // Below 200 cannot reach here as a final answer; above 5xx is counted with the server errors.
    return hundreds <= 2 ? '2xx' : hundreds === 3 ? '3xx' : hundreds === 4 ? '4xx' : '5xx';
  }
  return outcome.error === 'egress_timeout' ? 'timeout' : 'error';
}

interface DeliveryRow {
  id: string;
  event_id: string | null;
  destination_id: string;
  status: string;
  attempt_count: number;
  lease_owner: string | null;
}

interface Outcome {
  readonly status?: number;
  readonly error?: string;
  readonly body?: Buffer;
  readonly retryAfter?: string | string[] | undefined;
  readonly startedAt: Date;
  readonly durationMs: number;
}

/**
 * Reads at most `limit` bytes of a receiver's answer, then lets the rest go (the connection is
 * closed rather than drained): a 2xx with a 5 MB body is a success, kept truncated; a body still
 * trickling in at the deadline is kept as far as it got.
 */
async function readStart(body: Readable, limit: number, deadline: AbortSignal): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      chunks.push(chunk as Buffer);
      size += (chunk as Buffer).length;
      if (size >= limit || deadline.aborted) break;
    }
  } catch {
    // A body cut off (reset, deadline, over the egress cap) after the status arrived: keep what came.
  } finally {
    if (!body.destroyed) {
      body.on('error', () => undefined);
      body.destroy();
    }
  }
  return Buffer.concat(chunks).subarray(0, limit);
}

export function createDeliveryEngine(deps: {
  withPlatform: WithPlatform;
  withWorkspace: WithWorkspace;
  vault: Vault;
  egress: EgressClient;
  destinations: DestinationService;
  runtime: Runtime;
  logger: Logger;
  options: EngineOptions;
  /** Shutdown's grace period is over and what is in flight is being cut: such an attempt says nothing about the receiver. */
  cutShort?: () => boolean;
  observer?: DeliveryObserver | undefined;
}) {
  const { withPlatform, withWorkspace, vault, runtime, options } = deps;
  const owner = `wrk_${randomBytes(8).toString('hex')}`;

  const inflightByDestination = new Map<string, number>();
  const claimOptions = {
    owner,
    perDestination: options.perDestination,
    leaseMs: options.leaseMs,
    defaultMaxInFlight: options.defaultMaxInFlight,
    circuitFailures: options.circuitFailures,
    // One destination never takes more than half of this worker, whatever its own cap says.
    localMaxPerDestination: Math.max(1, Math.ceil(options.concurrency / 2)),
    localInFlight: (destinationId: string) => inflightByDestination.get(destinationId) ?? 0,
  };
  const claim = async (limit: number) => {
    const started = performance.now();
    try {
      return await claimDue(withPlatform, runtime.now(), limit, claimOptions);
    } finally {
      deps.observer?.claimed((performance.now() - started) / 1000);
    }
  };

  /** Reads what the attempt needs, in the delivery's workspace; undefined if the lease was lost. */
  async function prepare(claimed: Claimed) {
    return withWorkspace(claimed.workspace_id, async (tx) => {
      const row = (await tx.query<DeliveryRow & { type: string; payload: Uint8Array; own_payload: boolean; event_created_at: Date; url: string; headers: Record<string, string> }>(
        // A delivery made by an execution carries its own payload and type (and may have no event).
        `SELECT d.id, d.event_id, d.destination_id, d.status, d.attempt_count, d.lease_owner,
                COALESCE(d.event_type, e.type) AS type, COALESCE(d.payload, e.payload) AS payload, d.payload IS NOT NULL AS own_payload,
                COALESCE(e.created_at, d.created_at) AS event_created_at, dst.url, dst.headers
           FROM deliveries d
           LEFT JOIN events e ON e.workspace_id = d.workspace_id AND e.id = d.event_id
           JOIN destinations dst ON dst.workspace_id = d.workspace_id AND dst.id = d.destination_id
          WHERE d.id = $1`,
        [claimed.id],
      )).rows[0];
      if (row?.status !== 'delivering' || row.lease_owner !== owner) return undefined;
      const { type, payload: sealedPayload, own_payload: ownPayload, event_created_at: createdAt, url, headers, ...delivery } = row;
      const place = ownPayload ? { table: 'deliveries', rowId: delivery.id, column: 'payload' } : { table: 'events', rowId: delivery.event_id ?? '', column: 'payload' };
      const payload = await vault.workspace(tx).openText(place, sealedPayload);
      const secrets = await deps.destinations.activeSecrets(tx, delivery.destination_id);
      const body = `{"type":${JSON.stringify(type)},"timestamp":${JSON.stringify(createdAt.toISOString())},"data":${payload}}`;
      return { delivery, destination: { url, headers }, body, secrets, eventType: type };
    });
  }

  async function record(tx: WorkspaceTx, delivery: DeliveryRow, eventType: string, outcome: Outcome): Promise<void> {
    const now = runtime.now();
    // Failures while delivering an operational event are recorded, not routed again: no loops.
    const report = (event: OperationalEvent) => emitOperationalEvent(tx, { vault, runtime }, event, { route: !isReservedType(eventType) });
    // `attempt_count` counts this round (a manual retry starts a new one); attempts on record are numbered across rounds.
    const attempt = delivery.attempt_count + 1;
    const success = outcome.status !== undefined && outcome.status >= 200 && outcome.status < 300;
    const gone = outcome.status === 410;
    const delay = success || gone ? undefined : nextAttemptDelayMs(options.schedule, attempt, Math.random(), retryAfterMs(outcome.retryAfter, now));
    const status = success ? 'delivered' : delay === undefined ? 'failed' : 'retrying';
    // Only while the lease is still ours: a worker that took over after it ran out wins.
    const updated = await tx.query(
      `UPDATE deliveries SET status = $2, attempt_count = $3, next_attempt_at = $4, last_status = $5, last_error = $6, lease_owner = NULL, lease_until = NULL, updated_at = $7
        WHERE id = $1 AND status = 'delivering' AND lease_owner = $8`,
      [delivery.id, status, attempt, new Date(now.getTime() + (delay ?? 0)), outcome.status ?? null, outcome.error ?? null, now, owner],
    );
    if (updated.rowCount === 0) return;
    const attemptId = newId('deliveryAttempt', runtime);
    const sealed = outcome.body && outcome.body.length > 0 ? await vault.workspace(tx).seal({ table: 'delivery_attempts', rowId: attemptId, column: 'response_body' }, outcome.body.subarray(0, options.keepResponseBytes)) : null;
    await tx.query(
      `INSERT INTO delivery_attempts (workspace_id, id, delivery_id, attempt, started_at, duration_ms, status, error, response_body)
       VALUES ($1, $2, $3, (SELECT count(*) + 1 FROM delivery_attempts WHERE delivery_id = $3), $4, $5, $6, $7, $8)`,
      [tx.workspaceId, attemptId, delivery.id, outcome.startedAt, outcome.durationMs, outcome.status ?? null, outcome.error ?? null, sealed],
    );
    if (success) {
      // One statement: the old row (the self-join) says whether this success ends a failing period.
      const { rows: recovered } = await tx.query<{ was_failing: boolean }>(
        `UPDATE destinations d SET failing_since = NULL, consecutive_failures = 0, circuit_open_until = NULL FROM destinations old
          WHERE d.id = $1 AND old.workspace_id = d.workspace_id AND old.id = d.id AND (d.failing_since IS NOT NULL OR d.consecutive_failures > 0)
          RETURNING old.failing_since IS NOT NULL AS was_failing`,
        [delivery.destination_id],
      );
      if (recovered[0]?.was_failing) {
        await report({ type: 'bulkhead.destination.recovered', resource: 'destination', resourceId: delivery.destination_id, payload: { destinationId: delivery.destination_id } });
      }
      return;
    }
    const { rows: counted } = await tx.query<{ consecutive_failures: number }>('UPDATE destinations SET consecutive_failures = consecutive_failures + 1 WHERE id = $1 RETURNING consecutive_failures', [delivery.destination_id]);
    const failures = counted[0]?.consecutive_failures ?? 0;
    if (failures >= options.circuitFailures) {
      // Open (or re-open after a failed probe): nothing goes to this destination until the cool-down ends.
      await tx.query('UPDATE destinations SET circuit_open_until = $2 WHERE id = $1', [delivery.destination_id, new Date(now.getTime() + cooldownMs(failures, options))]);
    }
    const started = await tx.query('UPDATE destinations SET failing_since = $2 WHERE id = $1 AND failing_since IS NULL', [delivery.destination_id, now]);
    if (started.rowCount > 0) {
      await report({ type: 'bulkhead.delivery.failing', resource: 'destination', resourceId: delivery.destination_id, payload: { destinationId: delivery.destination_id, deliveryId: delivery.id, status: outcome.status ?? null, error: outcome.error ?? null } });
    }
    // Failing without a single success for longer than the window: stop sending until the platform re-enables it.
    const stale = await tx.query(
      "UPDATE destinations SET enabled = false, disabled_reason = 'failing continuously', updated_at = $2 WHERE id = $1 AND enabled AND failing_since <= $3",
      [delivery.destination_id, now, new Date(now.getTime() - options.disableAfterMs)],
    );
    if (stale.rowCount > 0) {
      await report({ type: 'bulkhead.destination.disabled', resource: 'destination', resourceId: delivery.destination_id, payload: { destinationId: delivery.destination_id, reason: 'failing' } });
    }
    if (gone) {
      const disabled = await tx.query("UPDATE destinations SET enabled = false, disabled_reason = 'the receiver answered 410 Gone', updated_at = $2 WHERE id = $1 AND enabled", [delivery.destination_id, now]);
      if (disabled.rowCount > 0) {
        await report({ type: 'bulkhead.destination.disabled', resource: 'destination', resourceId: delivery.destination_id, payload: { destinationId: delivery.destination_id, reason: 'gone' } });
      }
    }
    if (status === 'failed') {
      await report({ type: 'bulkhead.delivery.exhausted', resource: 'delivery', resourceId: delivery.id, payload: { deliveryId: delivery.id, eventId: delivery.event_id, destinationId: delivery.destination_id, attempts: attempt, lastStatus: outcome.status ?? null } });
    }
  }

  async function attempt(claimed: Claimed): Promise<void> {
    const prepared = await prepare(claimed);
    if (!prepared) return;
    const startedAt = runtime.now();
    const started = performance.now();
    const headers = {
      'content-type': 'application/json',
      'user-agent': 'Bulkhead-Webhooks/1',
      ...prepared.destination.headers,
      ...signedHeaders(prepared.secrets, prepared.delivery.id, Math.floor(startedAt.getTime() / 1000), prepared.body),
    };
    let outcome: Outcome;
    const deadline = AbortSignal.timeout(options.timeoutMs);
    try {
      const response = await deps.egress.stream(prepared.destination.url, { method: 'POST', headers, body: prepared.body, signal: deadline, redirect: 'manual' });
      // The status line is the answer; of the body only the start is kept, read within the same deadline.
      const body = await readStart(response.body, options.keepResponseBytes, deadline);
      outcome = { status: response.status, body, retryAfter: response.headers['retry-after'], startedAt, durationMs: Math.round(performance.now() - started) };
    } catch (error) {
      // Not recorded: the lease is handed back on the way out and the attempt is not counted.
      if (deps.cutShort?.() === true) return;
      const code = error instanceof BulkheadError ? error.code : 'egress_failed';
      outcome = { error: code, startedAt, durationMs: Math.round(performance.now() - started) };
    }
    deps.observer?.attempted(outcomeClass(outcome));
    await withWorkspace(claimed.workspace_id, (tx) => record(tx, prepared.delivery, prepared.eventType, outcome));
  }

  /** An attempt, counted against its destination's share of this worker while it runs. */
  async function attemptCounted(c: Claimed): Promise<void> {
    inflightByDestination.set(c.destination_id, (inflightByDestination.get(c.destination_id) ?? 0) + 1);
    try {
      await attempt(c);
    } finally {
      const left = (inflightByDestination.get(c.destination_id) ?? 1) - 1;
      if (left > 0) inflightByDestination.set(c.destination_id, left);
      else inflightByDestination.delete(c.destination_id);
    }
  }

  const worker = createQueueWorker({
    claim,
    run: attemptCounted,
    capacity: options.concurrency,
    pollMs: options.pollMs,
    onError: (error, { item, phase }) => {
      // The database went away mid-attempt: the outcome is not recorded, so the lease runs out and
      // the delivery is attempted again (the receiver may see it twice, with the same webhook-id).
      if (phase === 'run' && isDatabaseUnavailable(error)) deps.logger.warn({ code: 'database_unavailable', delivery: item?.id }, 'delivery attempt not recorded: the database is unavailable; it is retried when its lease expires');
      else if (phase === 'run') deps.logger.error({ err: error, delivery: item?.id }, 'delivery attempt failed unexpectedly');
      else if (isDatabaseUnavailable(error)) deps.logger.warn({ code: 'database_unavailable', phase }, phase === 'claim' ? 'claiming deliveries failed: the database is unavailable' : 'could not release delivery leases: the database is unavailable');
      else if (phase === 'claim') deps.logger.warn({ err: error }, 'claiming deliveries failed');
      else deps.logger.warn({ err: error }, 'could not release delivery leases on shutdown');
    },
    release: async () => {
      await withPlatform((tx) =>
        tx.query("UPDATE deliveries SET status = CASE WHEN attempt_count = 0 THEN 'pending' ELSE 'retrying' END, lease_owner = NULL, lease_until = NULL WHERE status = 'delivering' AND lease_owner = $1", [owner]),
      );
    },
  });

  return {
    owner,
    /** One claim-and-deliver round; resolves when its deliveries finished. For tests. */
    runOnce: worker.runOnce,
    start: worker.start,
    /** New work may be due (an event was just ingested in this process): claim without waiting for the poll. */
    wake: worker.wake,
    /** Stops claiming, lets in-flight attempts finish (up to `graceMs`), then releases what is left. */
    stop: worker.stop,
  };
}

export type DeliveryEngine = ReturnType<typeof createDeliveryEngine>;
