/**
 * Retention: what is older than the tenant's `retentionDays` (default BULKHEAD_RETENTION_DAYS) is
 * removed by the worker, workspace by workspace, in bounded batches.
 *
 * - An event goes, with its deliveries and their attempts, once it is older than the retention,
 *   none of its deliveries is open (pending, retrying, delivering) or was touched (attempted,
 *   retried) within the retention, and no execution that still needs it (queued, running, or
 *   failed and so retryable) names it. An event with an open delivery is never removed.
 * - A delivery an execution made without an event goes once finished and untouched for the
 *   retention (with its attempts).
 * - Relay and operational log entries go once older than the retention.
 * - Executions and their step logs are not touched here: they have their own retention
 *   (src/executions/retention.ts, `executionRetentionDays`), and a delivery carries its own payload,
 *   so nothing open depends on one.
 *
 * How: each batch is one short transaction in the workspace (RLS applies) removing at most
 * `batch` rows per statement; batches are separated by a pause, and a run stops after its time
 * budget (the next run carries on where it stopped). Finding which workspaces have anything to do
 * is the named cross-workspace read below (ids, cutoffs and existence probes only).
 * Batches rather than time partitions: partitions would drop a month in one statement, but every
 * workspace has its own retention (a partition holds every workspace's rows), an event lives as
 * long as its slowest delivery, and primary keys, foreign keys and RLS would all have to be
 * rebuilt around a partition key. A batch delete with an index on age costs a little more I/O and
 * keeps the schema as it is; docs/DELIVERY.md ("Retention") has the measurement.
 *
 * Every run that removed something from a workspace appends one `retention.purge` entry to that
 * workspace's audit chain (counts per table, cutoff), in the same transaction as its last batch.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { workspaceAudit } from '../audit/store.js';
import type { WithPlatform, WithWorkspace, WorkspaceTx } from '../db/tenant-tx.js';
import { idBefore, type Runtime } from '../ids.js';
import type { Job } from './background.js';

export const RETENTION_TABLES = ['events', 'deliveries', 'delivery_attempts', 'relay_log', 'operational_events'] as const;
export type RetentionTable = (typeof RETENTION_TABLES)[number];
type Counts = Record<RetentionTable, number>;

/** What one run did (logged by startJobs). A type, not an interface: a Job's result is a record. */
// eslint-disable-next-line @typescript-eslint/consistent-type-definitions
export type RetentionRun = { workspaces: number; batches: number; removed: Counts };

/** Rows this process removed since it started, by table (read by /metrics at scrape time). */
export interface RetentionMetrics {
  readonly removed: ReadonlyMap<RetentionTable, number>;
}

const FINISHED = `('delivered', 'failed', 'cancelled')`;
/** An event's delivery that keeps it: open, or touched within the retention ($1: the cutoff). */
const KEEPS_EVENT = `(d.status NOT IN ${FINISHED} OR d.updated_at >= $1)`;
/** An execution that still needs its event: it will run, or a retry would run it again. */
const NEEDS_EVENT = `x.status IN ('queued', 'running', 'failed')`;

interface Bounds {
  readonly cutoff: Date;
  readonly relayBefore: string;
  readonly operationalBefore: string;
}

type Part = (tx: WorkspaceTx, bounds: Bounds, batch: number) => Promise<{ full: boolean; counts: Partial<Counts> }>;

/** Old events whose deliveries are all finished and quiet, with those deliveries and their attempts. */
const events: Part = async (tx, { cutoff }, batch) => {
  // SKIP LOCKED: two workers purging at once split the rows instead of queueing behind each other.
  const candidates = (await tx.query<{ id: string }>(
    `SELECT e.id FROM events e
      WHERE e.created_at < $1
        AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.workspace_id = e.workspace_id AND d.event_id = e.id AND ${KEEPS_EVENT})
        AND NOT EXISTS (SELECT 1 FROM executions x WHERE x.workspace_id = e.workspace_id AND x.event_id = e.id AND ${NEEDS_EVENT})
      ORDER BY e.created_at LIMIT $2
      FOR UPDATE OF e SKIP LOCKED`,
    [cutoff, batch],
  )).rows.map((r) => r.id);
  if (candidates.length === 0) return { full: false, counts: {} };
  // Lock the deliveries, then decide on what the lock returns (the latest committed rows): a manual
  // retry that committed meanwhile makes its delivery pending and keeps its event; one that comes
  // later waits for this transaction and then finds no delivery (404), never a half-removed one.
  const deliveries = (await tx.query<{ id: string; event_id: string; status: string; updated_at: Date }>(
    'SELECT id, event_id, status, updated_at FROM deliveries WHERE event_id = ANY($1::text[]) FOR UPDATE',
    [candidates],
  )).rows;
  const kept = new Set(deliveries.filter((d) => !['delivered', 'failed', 'cancelled'].includes(d.status) || d.updated_at >= cutoff).map((d) => d.event_id));
  const eventIds = candidates.filter((id) => !kept.has(id));
  const deliveryIds = deliveries.filter((d) => !kept.has(d.event_id)).map((d) => d.id);
  // Attempts first: they have no foreign key to their delivery.
  const attempts = deliveryIds.length > 0 ? (await tx.query('DELETE FROM delivery_attempts WHERE delivery_id = ANY($1::text[])', [deliveryIds])).rowCount : 0;
  const removedDeliveries = deliveryIds.length > 0 ? (await tx.query('DELETE FROM deliveries WHERE id = ANY($1::text[])', [deliveryIds])).rowCount : 0;
  const removedEvents = eventIds.length > 0 ? (await tx.query('DELETE FROM events WHERE id = ANY($1::text[])', [eventIds])).rowCount : 0;
  return { full: candidates.length === batch, counts: { events: removedEvents, deliveries: removedDeliveries, delivery_attempts: attempts } };
};

/** Finished deliveries an execution made (no event), untouched for the retention, with their attempts. */
const executionDeliveries: Part = async (tx, { cutoff }, batch) => {
  // The predicate is deliveries_unowned_finished's; FOR UPDATE re-checks it against a concurrent retry.
  const ids = (await tx.query<{ id: string }>(
    `SELECT id FROM deliveries WHERE event_id IS NULL AND status IN ${FINISHED} AND updated_at < $1
      ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED`,
    [cutoff, batch],
  )).rows.map((r) => r.id);
  if (ids.length === 0) return { full: false, counts: {} };
  const attempts = (await tx.query('DELETE FROM delivery_attempts WHERE delivery_id = ANY($1::text[])', [ids])).rowCount;
  const removed = (await tx.query('DELETE FROM deliveries WHERE id = ANY($1::text[])', [ids])).rowCount;
  return { full: ids.length === batch, counts: { deliveries: removed, delivery_attempts: attempts } };
};

/** A log whose ids are time-ordered: "older than" is a range of its primary key. */
const log = (table: 'relay_log' | 'operational_events', bound: (b: Bounds) => string): Part => async (tx, bounds, batch) => {
  const removed = (await tx.query(
    `DELETE FROM ${table} WHERE id IN (SELECT id FROM ${table} WHERE id < $1 AND occurred_at < $2 ORDER BY id LIMIT $3)`,
    [bound(bounds), bounds.cutoff, batch],
  )).rowCount;
  return { full: removed === batch, counts: { [table]: removed } };
};

const PARTS: readonly Part[] = [events, executionDeliveries, log('relay_log', (b) => b.relayBefore), log('operational_events', (b) => b.operationalBefore)];

export function retentionJob(deps: {
  withPlatform: WithPlatform;
  withWorkspace: WithWorkspace;
  runtime: Runtime;
  defaultDays: number;
  intervalMs: number;
  /** Rows per statement; each batch is one transaction. */
  batch?: number;
  /** Pause between batches, so a backlog leaves the database room for deliveries. */
  pauseMs?: number;
  /** Wall time one run may spend; the next run carries on. */
  budgetMs?: number;
}): Omit<Job, 'run'> & { readonly metrics: RetentionMetrics; run(): Promise<RetentionRun> } {
  const batch = Math.max(1, deps.batch ?? 1_000);
  const pauseMs = deps.pauseMs ?? 50;
  const budgetMs = deps.budgetMs ?? 60_000;
  const removed = new Map<RetentionTable, number>(RETENTION_TABLES.map((t) => [t, 0]));
  /** Where a run that ran out of time stopped: the next one starts there. */
  let resumeAt: string | undefined;

  /** Workspaces with something past their cutoff, and those cutoffs. */
  async function due(now: Date): Promise<{ workspaceId: string; bounds: Bounds }[]> {
    return deps.withPlatform(async (tx) => {
      // A named cross-workspace read (owner): workspace ids with their tenant's setting, then an
      // index probe per table for anything older. No row content is read; the removal runs in each
      // workspace's own transaction under RLS. The tenant routes bound retentionDays (1..3650).
      const workspaces = (await tx.query<{ id: string; days: number | null }>(
        `SELECT w.id, CASE WHEN jsonb_typeof(t.limits -> 'retentionDays') = 'number'
                           THEN least(greatest(1, floor((t.limits ->> 'retentionDays')::numeric)), 3650)::int END AS days
           FROM workspaces w JOIN tenants t ON t.id = w.tenant_id ORDER BY w.id`,
      )).rows;
      if (workspaces.length === 0) return [];
      const all = workspaces.map((w) => {
        const cutoff = new Date(now.getTime() - (w.days ?? deps.defaultDays) * 86_400_000);
        return { workspaceId: w.id, bounds: { cutoff, relayBefore: idBefore('relayCall', cutoff), operationalBefore: idBefore('operationalEvent', cutoff) } };
      });
      const { rows } = await tx.query<{ id: string }>(
        `SELECT u.id FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[]) AS u (id, cutoff, relay_before, operational_before)
          WHERE EXISTS (SELECT 1 FROM events e WHERE e.workspace_id = u.id AND e.created_at < u.cutoff)
             OR EXISTS (SELECT 1 FROM deliveries d WHERE d.workspace_id = u.id AND d.event_id IS NULL AND d.status IN ${FINISHED} AND d.updated_at < u.cutoff)
             OR EXISTS (SELECT 1 FROM relay_log r WHERE r.workspace_id = u.id AND r.id < u.relay_before)
             OR EXISTS (SELECT 1 FROM operational_events o WHERE o.workspace_id = u.id AND o.id < u.operational_before)`,
        [all.map((w) => w.workspaceId), all.map((w) => w.bounds.cutoff), all.map((w) => w.bounds.relayBefore), all.map((w) => w.bounds.operationalBefore)],
      );
      const wanted = new Set(rows.map((r) => r.id));
      return all.filter((w) => wanted.has(w.workspaceId));
    });
  }

  return {
    name: 'retention',
    intervalMs: deps.intervalMs,
    metrics: { removed },
    async run(): Promise<RetentionRun> {
      const started = performance.now();
      const outOfTime = () => performance.now() - started >= budgetMs;
      const list = await due(deps.runtime.now());
      // Rotate: a run cut short by its budget is followed by one that starts where it stopped.
      const from = resumeAt === undefined ? 0 : Math.max(0, list.findIndex((w) => w.workspaceId >= (resumeAt ?? '')));
      const ordered = [...list.slice(from), ...list.slice(0, from)];
      resumeAt = undefined;
      let batches = 0;
      let workspaces = 0;
      const total: Counts = { events: 0, deliveries: 0, delivery_attempts: 0, relay_log: 0, operational_events: 0 };
      for (const { workspaceId, bounds } of ordered) {
        // At least one batch per run, whatever the budget: a run always makes progress.
        if (batches > 0 && outOfTime()) {
          resumeAt = workspaceId;
          break;
        }
        const counts: Counts = { events: 0, deliveries: 0, delivery_attempts: 0, relay_log: 0, operational_events: 0 };
        let open = [...PARTS];
        for (;;) {
          const result = await deps.withWorkspace(workspaceId, async (tx) => {
            const step: Partial<Counts>[] = [];
            const stillOpen: Part[] = [];
            for (const part of open) {
              const r = await part(tx, bounds, batch);
              step.push(r.counts);
              if (r.full) stillOpen.push(part);
            }
            const merged = { ...counts };
            for (const c of step) for (const [table, n] of Object.entries(c) as [RetentionTable, number][]) merged[table] += n;
            const last = stillOpen.length === 0 || outOfTime();
            // One entry per run per workspace, with the last batch: a purge that fits one batch
            // commits with its record; a longer one is recorded when its run ends.
            if (last && Object.values(merged).some((n) => n > 0)) {
              await workspaceAudit.append(tx, deps.runtime, {
                actor: { type: 'system', id: 'retention' },
                action: 'retention.purge',
                outcome: 'success',
                details: { cutoff: bounds.cutoff.toISOString(), removed: merged, complete: stillOpen.length === 0 },
              });
            }
            return { step, stillOpen, last };
          });
          batches++;
          for (const c of result.step) {
            for (const [table, n] of Object.entries(c) as [RetentionTable, number][]) {
              counts[table] += n;
              total[table] += n;
              removed.set(table, (removed.get(table) ?? 0) + n);
            }
          }
          open = result.stillOpen;
          if (result.last) break;
          if (pauseMs > 0) await sleep(pauseMs);
        }
        workspaces++;
        if (open.length > 0) {
          resumeAt = workspaceId;
          break;
        }
      }
      return { workspaces, batches, removed: total };
    },
  };
}
