/**
 * The work queues' figures for `/metrics`, read from the database at scrape time — the named
 * cross-workspace exception (ids and counts only, never payloads), like the delivery claim.
 *
 * Only the states a queue is made of are counted (deliveries pending, retrying, delivering;
 * executions queued, running): each has a partial index, so the count reads the queue, not the
 * history. Terminal rows (delivered, failed, succeeded) pile up without bound, and counting
 * them would be a full scan per scrape; they are counted in-process as they happen instead
 * (`bulkhead_delivery_attempts_total`). The answer is cached for a few seconds and shared by
 * concurrent scrapes, so however many Prometheus servers scrape, the database sees at most one
 * such read per process per `cacheMs`.
 */
import type { WithPlatform } from '../db/tenant-tx.js';

export const DELIVERY_QUEUE_STATES = ['pending', 'retrying', 'delivering'] as const;
export const EXECUTION_QUEUE_STATES = ['queued', 'running'] as const;

export interface QueueFigures {
  readonly deliveries: Readonly<Record<(typeof DELIVERY_QUEUE_STATES)[number], number>>;
  /** Seconds since the oldest waiting delivery became due; 0 when nothing waits past its time. */
  readonly deliveryLagSeconds: number;
  readonly executions: Readonly<Record<(typeof EXECUTION_QUEUE_STATES)[number], number>>;
}

export function createQueueFigures(deps: { withPlatform: WithPlatform; now: () => Date; cacheMs: number }): () => Promise<QueueFigures> {
  let cached: { at: number; figures: Promise<QueueFigures> } | undefined;

  async function read(now: Date): Promise<QueueFigures> {
    return deps.withPlatform(async (tx) => {
      const deliveries = { pending: 0, retrying: 0, delivering: 0 };
      const executions = { queued: 0, running: 0 };
      const { rows: byState } = await tx.query<{ status: keyof typeof deliveries; n: number }>(
        "SELECT status, count(*)::int AS n FROM deliveries WHERE status IN ('pending', 'retrying', 'delivering') GROUP BY status",
      );
      for (const r of byState) deliveries[r.status] = r.n;
      // The deliveries_due index is ordered by next_attempt_at: the minimum is its first entry.
      const { rows: oldest } = await tx.query<{ due: Date | null }>(
        "SELECT min(next_attempt_at) AS due FROM deliveries WHERE status IN ('pending', 'retrying') AND next_attempt_at <= $1",
        [now],
      );
      const due = oldest[0]?.due;
      const { rows: execs } = await tx.query<{ status: keyof typeof executions; n: number }>(
        "SELECT status, count(*)::int AS n FROM executions WHERE status IN ('queued', 'running') GROUP BY status",
      );
      for (const r of execs) executions[r.status] = r.n;
      return { deliveries, executions, deliveryLagSeconds: due ? Math.max(0, (now.getTime() - new Date(due).getTime()) / 1000) : 0 };
    });
  }

  return () => {
    const now = deps.now();
    if (!cached || now.getTime() - cached.at >= deps.cacheMs) {
      const figures = read(now);
      cached = { at: now.getTime(), figures };
      // A failed read is not kept: the next scrape tries again.
      figures.catch(() => { if (cached?.figures === figures) cached = undefined; });
    }
    return cached.figures;
  };
}
