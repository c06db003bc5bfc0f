/**
 * The delivery engine: a durable queue in the database, worked by any number of processes, with
 * a set-based hot path — no statement per delivery in the steady state.
 *
 * 1. Claim (sql/claim.ts, the named cross-workspace exception): up to the free capacity, across
 *    workspaces, destinations served least recently first, each within its in-flight cap, rate
 *    limit and circuit breaker; a claimed row becomes `delivering` with a lease, and a crashed
 *    worker's rows are claimed again when their lease expires.
 * 2. Load (sql/load.ts): per workspace in the claim, one tenant transaction reads all of its
 *    claimed deliveries with payloads and destinations, and each destination's secrets once.
 * 3. Attempt: concurrently, through the egress client (the URL is judged again at send).
 * 4. Record (sql/record.ts, health.ts): finished attempts are grouped per workspace (batcher.ts:
 *    what finished while the previous commit ran goes in the next) and written in one tenant
 *    transaction of one statement — `UPDATE … FROM unnest` guarded by the lease, the multi-row
 *    attempts `INSERT` and the reset of destinations that only succeeded, as CTEs — plus one
 *    statement per destination with failures.
 */
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { isDatabaseUnavailable } from '../db/errors.js';
import type { WithPlatform, WithWorkspace, WorkspaceTx } from '../db/tenant-tx.js';
import type { EgressClient } from '../egress/client.js';
import { BulkheadError } from '../errors.js';
import { newId, type Runtime } from '../ids.js';
import { createQueueWorker } from '../jobs/claim-loop.js';
import type { Logger } from '../logging.js';
import type { DestinationService } from '../routing/destinations.js';
import { isReservedType } from '../routing/patterns.js';
import type { Vault } from '../vault/vault.js';
import { createBatcher } from './batcher.js';
import { applyHealth, type DeliveryAlert, type Finished, healthyDestinations } from './health.js';
import { answered, type AttemptOutcome, type AttemptOutcomeClass, bodyOf, errorOf, outcomeClass, statusOf, transition } from './outcome.js';
import { signedHeaders } from './signing.js';
import { type Claimed, claimDue } from './sql/claim.js';
import { loadLeased } from './sql/load.js';
import { recordAttempts, type RecordedAttempt } from './sql/record.js';
import { releaseLeases } from './sql/release.js';

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

/** What the engine reports as it works (metrics/metrics.ts counts it). */
export interface DeliveryObserver {
  claimed(seconds: number, size: number): void;
  attempted(outcome: AttemptOutcomeClass): void;
  recorded(seconds: number, size: number): void;
}

/** Writes an operational event in the transaction (events/operational.ts; given, not imported: no loop). */
export type EmitAlert = (tx: WorkspaceTx, alert: DeliveryAlert, options: { route: boolean }) => Promise<unknown>;

/** A claimed delivery with everything its attempt needs, loaded with the rest of its workspace's claim. */
interface Prepared extends Claimed {
  readonly attemptCount: number;
  readonly eventId: string | null;
  readonly eventType: string;
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly body: string;
  readonly secrets: readonly string[];
}

/** A claimed delivery, and its load (shared with the rest of its workspace's claim). */
interface Leased extends Claimed {
  readonly ready: Promise<Prepared | undefined>;
}

interface Result {
  readonly prepared: Prepared;
  readonly outcome: AttemptOutcome;
}

/**
 * Reads at most `limit` bytes of a receiver's answer, then lets the rest go (the connection is
 * closed rather than drained): a 2xx with a 5 MB body is a success, kept truncated; a body still
 * trickling in at the deadline is kept as far as it got (the egress client's deadline aborts the
 * response stream as well as the request).
 */
async function readStart(body: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      chunks.push(chunk as Buffer);
      size += (chunk as Buffer).length;
      if (size >= limit) break;
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
  emit: EmitAlert;
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

  /**
   * The claim; then, for each workspace in it, one transaction that reads all of its claimed
   * deliveries with payloads and destinations and each destination's secrets once. The loads are
   * not awaited here: the next claim starts while they run, and each attempt waits for its own.
   * A workspace whose load fails (its keys shredded, say) keeps its leases until they run out.
   */
  async function claim(limit: number): Promise<Leased[]> {
    const started = performance.now();
    let claimed: Claimed[] = [];
    try {
      claimed = await claimDue(withPlatform, runtime.now(), limit, claimOptions);
    } finally {
      deps.observer?.claimed((performance.now() - started) / 1000, claimed.length);
    }
    const byWorkspace = new Map<string, Claimed[]>();
    for (const c of claimed) {
      const items = byWorkspace.get(c.workspace_id);
      if (items) items.push(c);
      else byWorkspace.set(c.workspace_id, [c]);
    }
    const leased: Leased[] = [];
    for (const [workspaceId, items] of byWorkspace) {
      const loaded = load(workspaceId, items).then(
        (prepared) => new Map(prepared.map((p) => [p.id, p])),
        (error: unknown) => {
          deps.logger.warn({ err: error, workspace: workspaceId, deliveries: items.length }, 'loading claimed deliveries failed; they are retried when their leases expire');
          return new Map<string, Prepared>();
        },
      );
      for (const c of items) leased.push({ ...c, ready: loaded.then((m) => m.get(c.id)) });
    }
    return leased;
  }

  async function load(workspaceId: string, items: readonly Claimed[]): Promise<Prepared[]> {
    return withWorkspace(workspaceId, async (tx) => {
      // Both reads issued together (one round trip, pipelined): the claim already names the destinations.
      const [rows, secrets] = await Promise.all([
        loadLeased(tx, items.map((c) => c.id), owner),
        deps.destinations.activeSecretsOf(tx, [...new Set(items.map((c) => c.destination_id))]),
      ]);
      const sealer = vault.workspace(tx);
      const prepared: Prepared[] = [];
      for (const r of rows) {
        const place = r.own_payload ? { table: 'deliveries', rowId: r.id, column: 'payload' } : { table: 'events', rowId: r.event_id ?? '', column: 'payload' };
        const payload = await sealer.openText(place, r.payload);
        prepared.push({
          workspace_id: workspaceId,
          id: r.id,
          destination_id: r.destination_id,
          attemptCount: r.attempt_count,
          eventId: r.event_id,
          eventType: r.type,
          url: r.url,
          headers: r.headers,
          body: `{"type":${JSON.stringify(r.type)},"timestamp":${JSON.stringify(r.event_created_at.toISOString())},"data":${payload}}`,
          secrets: secrets.get(r.destination_id) ?? [],
        });
      }
      return prepared;
    });
  }

  /** One workspace's finished attempts in one transaction: states, attempts, destination health, alerts. */
  async function recordBatch(workspaceId: string, results: readonly Result[]): Promise<void> {
    const started = performance.now();
    await withWorkspace(workspaceId, async (tx) => {
      const now = runtime.now();
      const sealer = vault.workspace(tx);
      const entries: { result: Result; attempt: RecordedAttempt }[] = [];
      for (const result of results) {
        const attemptId = newId('deliveryAttempt', runtime);
        const body = bodyOf(result.outcome);
        entries.push({
          result,
          attempt: {
            deliveryId: result.prepared.id,
            attemptId,
            transition: transition(result.prepared.attemptCount, result.outcome, options.schedule, now, Math.random()),
            lastStatus: statusOf(result.outcome),
            lastError: errorOf(result.outcome),
            startedAt: result.outcome.startedAt,
            durationMs: result.outcome.durationMs,
            responseBody: body && body.length > 0 ? await sealer.seal({ table: 'delivery_attempts', rowId: attemptId, column: 'response_body' }, body.subarray(0, options.keepResponseBytes)) : null,
          },
        });
      }
      const finishedOf = (list: typeof entries): Finished[] => list.map(({ result: { prepared, outcome } }) => ({ deliveryId: prepared.id, destinationId: prepared.destination_id, eventType: prepared.eventType, outcome }));
      const candidates = healthyDestinations(finishedOf(entries));
      // One statement: states (only while the lease is still ours: a worker that took over after it
      // ran out wins, and this attempt is neither recorded nor counted), attempts, healthy destinations.
      const { held, reset } = await recordAttempts(tx, entries.map((e) => e.attempt), candidates, owner, now);
      const kept = entries.filter((e) => held.has(e.attempt.deliveryId));
      const alerts = await applyHealth(tx, finishedOf(kept), options, now, { candidates, reset });
      for (const { result: { prepared, outcome }, attempt } of kept) {
        if (attempt.transition.status !== 'failed') continue;
        alerts.push({
          event: { type: 'bulkhead.delivery.exhausted', resource: 'delivery', resourceId: prepared.id, payload: { deliveryId: prepared.id, eventId: prepared.eventId, destinationId: prepared.destination_id, attempts: attempt.transition.attempt, lastStatus: statusOf(outcome) } },
          // Failures while delivering an operational event are recorded, not routed again: no loops.
          route: !isReservedType(prepared.eventType),
        });
      }
      for (const alert of alerts) await deps.emit(tx, alert.event, { route: alert.route });
    });
    deps.observer?.recorded((performance.now() - started) / 1000, results.length);
  }

  const recorder = createBatcher<Result>(recordBatch, RECORD_BATCH_MAX, RECORDS_PER_WORKSPACE);

  async function attempt(prepared: Prepared): Promise<void> {
    const startedAt = runtime.now();
    const started = performance.now();
    const headers = {
      'content-type': 'application/json',
      'user-agent': 'Bulkhead-Webhooks/1',
      ...prepared.headers,
      ...signedHeaders(prepared.secrets, prepared.id, Math.floor(startedAt.getTime() / 1000), prepared.body),
    };
    let outcome: AttemptOutcome;
    try {
      // One deadline for the request and the reading of its answer: the egress client's own.
      const response = await deps.egress.stream(prepared.url, { method: 'POST', headers, body: prepared.body, timeoutMs: options.timeoutMs, redirect: 'manual' });
      // The status line is the answer; of the body only the start is kept, read within the same deadline.
      const body = await readStart(response.body, options.keepResponseBytes);
      outcome = answered(response.status, body, response.headers['retry-after'], { startedAt, durationMs: Math.round(performance.now() - started) });
    } catch (error) {
      // Not recorded: the lease is handed back on the way out and the attempt is not counted.
      if (deps.cutShort?.() === true) return;
      const code = error instanceof BulkheadError ? error.code : 'egress_failed';
      outcome = { kind: 'failure', error: code, startedAt, durationMs: Math.round(performance.now() - started) };
    }
    deps.observer?.attempted(outcomeClass(outcome));
    await recorder.add(prepared.workspace_id, { prepared, outcome });
  }

  /** An attempt, counted against its destination's share of this worker while it runs. */
  async function attemptCounted(c: Leased): Promise<void> {
    inflightByDestination.set(c.destination_id, (inflightByDestination.get(c.destination_id) ?? 0) + 1);
    try {
      // Undefined: the lease was lost before the load (another worker has it), or the load failed.
      const prepared = await c.ready;
      if (prepared) await attempt(prepared);
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
    // Claim when a quarter of the capacity is free (or nothing runs): fewer, larger claims.
    claimFloor: Math.max(1, Math.floor(options.concurrency / 4)),
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
    release: () => withPlatform((tx) => releaseLeases(tx, owner)),
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

/** Most finished attempts of one workspace recorded in one transaction. */
const RECORD_BATCH_MAX = 200;
/**
 * Recording transactions of one workspace at once. Two measured no faster than one on the e2e
 * bench (the database is the limit) and halved the batches, so statements per delivery rose.
 */
const RECORDS_PER_WORKSPACE = 1;

export type DeliveryEngine = ReturnType<typeof createDeliveryEngine>;
