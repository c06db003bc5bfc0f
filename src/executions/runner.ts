/**
 * The execution runner: works the `executions` queue like the delivery engine works deliveries.
 *
 *   1. Claim (claim.ts, the named cross-workspace step): queued executions, fairly across
 *      workspaces, each leased to this runner.
 *   2. Plan (plan.ts), in the execution's workspace transaction: the trigger, the items, the
 *      steps, the bindings. The transaction ends before any tenant code runs.
 *   3. Steps (steps.ts), outside any transaction: sandboxed transforms, relay calls.
 *   4. Record, in one workspace transaction and only while the lease is still ours: the
 *      execution's outcome and step log, and the deliveries it produced (unique per execution,
 *      destination and part, so a re-run after a crash writes none twice).
 *
 * A crashed runner's executions are claimed again when their lease runs out and run from their
 * resume step; connection calls made before the crash may then be made again (at least once).
 */
import { randomBytes } from 'node:crypto';
import { isDatabaseUnavailable } from '../db/errors.js';
import type { WithPlatform, WithWorkspace, WorkspaceTx } from '../db/tenant-tx.js';
import { enqueueExecutionDeliveries, type ExecutionDelivery } from '../delivery/sql/enqueue.js';
import { newId, type Runtime } from '../ids.js';
import { createQueueWorker } from '../jobs/claim-loop.js';
import type { Logger } from '../logging.js';
import type { Relay } from '../relay/relay.js';
import { matchesAny } from '../routing/patterns.js';
import type { Sandbox } from '../sandbox/index.js';
import type { Vault } from '../vault/vault.js';
import { claimExecutions, type ClaimedExecution } from './claim.js';
import { loadPlan, type Plan, PlanError, statePlace } from './plan.js';
import { runSteps, type StepsOutcome } from './steps.js';

export interface RunnerOptions {
  readonly concurrency: number;
  readonly leaseMs: number;
  readonly pollMs: number;
  /** Claims of one execution (its worker died each time) before it is failed as `abandoned`. */
  readonly maxAttempts?: number;
}

/** Step payloads kept per execution when an instance logs them (sealed); larger logs are cut. */
const MAX_PAYLOAD_LOG_BYTES = 256 * 1024;

export function createExecutionRunner(deps: {
  withPlatform: WithPlatform;
  withWorkspace: WithWorkspace;
  vault: Vault;
  sandbox: Sandbox;
  relay: Relay;
  runtime: Runtime;
  logger: Logger;
  options: RunnerOptions;
  /** Deliveries were written: the delivery engine may have work. */
  onDeliveries?: () => void;
  /** Shutdown's grace period is over and what is in flight is being cut (relay calls, sandbox runs). */
  cutShort?: () => boolean;
}) {
  const { withPlatform, withWorkspace, vault, runtime, options } = deps;
  const owner = `exr_${randomBytes(8).toString('hex')}`;
  const maxAttempts = options.maxAttempts ?? 3;

  async function destinationsOf(tx: WorkspaceTx) {
    const { rows } = await tx.query<{ id: string; enabled: boolean; event_types: string[] | null }>('SELECT id, enabled, event_types FROM destinations');
    const map = new Map(rows.map((d) => [d.id, { enabled: d.enabled, accepts: (type: string) => d.event_types === null || matchesAny(d.event_types, type) }]));
    return (id: string) => map.get(id);
  }

  /** Writes the outcome, only while the lease is ours. */
  async function record(tx: WorkspaceTx, plan: Pick<Plan, 'executionId' | 'ruleId'> & { readonly trigger?: { readonly id: string | null } }, outcome: StepsOutcome | { error: { code: string; message: string } }): Promise<number> {
    const now = runtime.now();
    const id = plan.executionId;
    const sealer = vault.workspace(tx);
    if ('error' in outcome) {
      const done = await tx.query(
        `UPDATE executions SET status = 'failed', error = $2::jsonb, finished_at = $3, lease_owner = NULL, lease_until = NULL WHERE id = $1 AND status = 'running' AND lease_owner = $4`,
        [id, JSON.stringify({ step: null, ...outcome.error }), now, owner],
      );
      return done.rowCount > 0 ? 0 : -1;
    }
    const failure = outcome.failure;
    const state = failure ? await sealer.seal(statePlace(id), JSON.stringify(failure.items)) : null;
    let payloads: Uint8Array | null = null;
    if (outcome.payloads) {
      let json = JSON.stringify(outcome.payloads);
      if (Buffer.byteLength(json) > MAX_PAYLOAD_LOG_BYTES) json = JSON.stringify({ truncated: true, steps: Object.keys(outcome.payloads) });
      payloads = await sealer.seal({ table: 'executions', rowId: id, column: 'payloads' }, json);
    }
    const done = await tx.query(
      `UPDATE executions SET status = $2, steps = $3::jsonb, error = $4::jsonb, resume_step = $5, resume_state = $6, payloads = $7, finished_at = $8, lease_owner = NULL, lease_until = NULL
        WHERE id = $1 AND status = 'running' AND lease_owner = $9`,
      [
        id, failure ? 'failed' : 'succeeded', JSON.stringify(outcome.steps), failure ? JSON.stringify({ step: failure.name, code: failure.code, message: failure.message }) : null,
        failure?.step ?? 0, state, payloads, now, owner,
      ],
    );
    if (done.rowCount === 0) return -1;
    if (outcome.deliveries.length === 0) return 0;
    const ids = outcome.deliveries.map(() => newId('delivery', runtime));
    const rows: ExecutionDelivery[] = [];
    for (const [i, d] of outcome.deliveries.entries()) {
      const deliveryId = ids[i] as string;
      rows.push({ id: deliveryId, destinationId: d.destinationId, part: d.part, eventType: d.eventType, payload: await sealer.seal({ table: 'deliveries', rowId: deliveryId, column: 'payload' }, JSON.stringify(d.payload)) });
    }
    return enqueueExecutionDeliveries(tx, { executionId: id, eventId: plan.trigger?.id ?? null, ruleId: plan.ruleId, now }, rows);
  }

  async function execute(claimed: ClaimedExecution): Promise<void> {
    const { workspace_id: workspaceId, id } = claimed;
    const fail = (error: { code: string; message: string }) => withWorkspace(workspaceId, (tx) => record(tx, { executionId: id, ruleId: null }, { error }));
    if (claimed.attempts > maxAttempts) {
      await fail({ code: 'abandoned', message: `the execution was claimed ${String(claimed.attempts - 1)} times and never finished (its worker stopped each time)` });
      return;
    }
    let loaded: { plan: Plan; destination: Awaited<ReturnType<typeof destinationsOf>>; secrets: Record<string, string> } | undefined;
    try {
      loaded = await withWorkspace(workspaceId, async (tx) => {
        const plan = await loadPlan(tx, vault, id, owner);
        return plan ? { plan, destination: await destinationsOf(tx), secrets: plan.secrets } : undefined;
      });
    } catch (error) {
      if (error instanceof PlanError) {
        await fail({ code: error.code, message: error.message });
        return;
      }
      throw error;
    }
    if (!loaded) return;
    const outcome = await runSteps(
      loaded.plan,
      {
        sandbox: deps.sandbox,
        relay: deps.relay,
        workspaceId,
        destination: loaded.destination,
        secrets: loaded.secrets,
        onUnexpected: (error) => { deps.logger.error({ err: error, execution: id }, 'an execution step failed unexpectedly'); },
      },
      () => runtime.now(),
    );
    // A step that failed because shutdown cut it is not the integration's failure: the execution is
    // given back (queued again on the way out) and resumes on the next worker.
    if (outcome.failure !== undefined && deps.cutShort?.() === true) return;
    if (outcome.requeue) {
      // The sandbox is saturated: give the execution back (its attempt does not count).
      await withWorkspace(workspaceId, (tx) =>
        tx.query(`UPDATE executions SET status = 'queued', attempts = attempts - 1, lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2 AND status = 'running'`, [id, owner]),
      );
      return;
    }
    const written = await withWorkspace(workspaceId, (tx) => record(tx, loaded.plan, outcome));
    if (written > 0) deps.onDeliveries?.();
  }

  const claim = (limit: number) => claimExecutions(withPlatform, runtime.now(), limit, { owner, leaseMs: options.leaseMs });
  const worker = createQueueWorker({
    claim,
    run: execute,
    capacity: options.concurrency,
    pollMs: options.pollMs,
    onError: (error, { item, phase }) => {
      // The database went away mid-run: nothing is recorded, the lease runs out and the execution runs again.
      if (phase === 'run' && isDatabaseUnavailable(error)) deps.logger.warn({ code: 'database_unavailable', execution: item?.id }, 'execution not recorded: the database is unavailable; it runs again when its lease expires');
      else if (phase === 'run') deps.logger.error({ err: error, execution: item?.id }, 'execution failed unexpectedly');
      else if (isDatabaseUnavailable(error)) deps.logger.warn({ code: 'database_unavailable', phase }, phase === 'claim' ? 'claiming executions failed: the database is unavailable' : 'could not release execution leases: the database is unavailable');
      else if (phase === 'claim') deps.logger.warn({ err: error }, 'claiming executions failed');
      else deps.logger.warn({ err: error }, 'could not release execution leases on shutdown');
    },
    release: async () => {
      await withPlatform((tx) => tx.query("UPDATE executions SET status = 'queued', lease_owner = NULL, lease_until = NULL WHERE status = 'running' AND lease_owner = $1", [owner]));
    },
  });

  return {
    owner,
    /** One claim-and-run round; resolves when its executions finished. For tests. */
    runOnce: worker.runOnce,
    wake: worker.wake,
    start: worker.start,
    /** Stops claiming, lets running executions finish (up to `graceMs`), then gives back what is left. */
    stop: worker.stop,
  };
}

export type ExecutionRunner = ReturnType<typeof createExecutionRunner>;
