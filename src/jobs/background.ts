/**
 * Background work of the `worker` role (and `all`): proactive OAuth refresh and re-sealing after
 * key rotation. Each job runs on an interval, never overlaps itself, and logs failures without
 * stopping. Finding due work is a named cross-workspace read (owner); the work itself runs in
 * each workspace's own transaction, so RLS applies to it as to any request.
 */
import type { ConnectionService } from '../connections/connections.js';
import { isDatabaseUnavailable } from '../db/errors.js';
import { BulkheadError } from '../errors.js';
import type { WithPlatform } from '../db/tenant-tx.js';
import type { Runtime } from '../ids.js';
import type { Logger } from '../logging.js';
import type { Resealer } from '../vault/reseal.js';

export interface Job {
  readonly name: string;
  readonly intervalMs: number;
  run(): Promise<Record<string, unknown>>;
}

export function refreshJob(deps: { withPlatform: WithPlatform; connections: ConnectionService; runtime: Runtime; intervalMs: number; batch?: number }): Job {
  return {
    name: 'oauth-refresh',
    intervalMs: deps.intervalMs,
    async run() {
      const due = await deps.withPlatform(async (tx) =>
        (await tx.query<{ workspace_id: string; id: string }>(
          `SELECT workspace_id, id FROM connections WHERE status = 'active' AND next_refresh_at IS NOT NULL AND next_refresh_at <= $1 ORDER BY next_refresh_at LIMIT $2`,
          [deps.runtime.now(), deps.batch ?? 100],
        )).rows,
      );
      let refreshed = 0;
      let failed = 0;
      for (const row of due) {
        try {
          await deps.connections.refresh(row.workspace_id, row.id);
          refreshed++;
        } catch {
          // Recorded on the connection itself (backoff, needs_reauth, operational event).
          failed++;
        }
      }
      return { due: due.length, refreshed, failed };
    },
  };
}

export function resealJob(deps: { resealer: Resealer; intervalMs: number }): Job {
  return { name: 'reseal', intervalMs: deps.intervalMs, run: () => deps.resealer.runOnce() };
}

export function startJobs(jobs: readonly Job[], logger: Logger): { stop(): Promise<void> } {
  const running = new Map<string, Promise<void>>();
  let stopped = false;
  const timers = jobs.map((job) => {
    const tick = () => {
      if (stopped || running.has(job.name)) return;
      const done = job
        .run()
        .then((result) => { logger.debug({ job: job.name, ...result }, 'background job ran'); })
        .catch((error: unknown) => {
          if (error instanceof BulkheadError && error.code === 'not_ready') return;
          // An outage is not the job's fault: one line per interval, and the next tick tries again.
          if (isDatabaseUnavailable(error)) logger.warn({ code: 'database_unavailable', job: job.name }, 'background job skipped: the database is unavailable');
          else logger.warn({ err: error, job: job.name }, 'background job failed');
        })
        .finally(() => running.delete(job.name));
      running.set(job.name, done);
    };
    const timer = setInterval(tick, job.intervalMs);
    timer.unref();
    return timer;
  });
  return {
    async stop() {
      stopped = true;
      for (const timer of timers) clearInterval(timer);
      await Promise.all(running.values());
    },
  };
}
