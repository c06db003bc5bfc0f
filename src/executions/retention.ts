/**
 * Execution retention: finished executions (succeeded or failed) are deleted once they are older
 * than their tenant's `executionRetentionDays` limit, or the platform default. Age counts from
 * `finished_at`; queued and running executions are never touched, whatever their age.
 */
import type { WithPlatform, WithWorkspace } from '../db/tenant-tx.js';
import type { Runtime } from '../ids.js';
import type { Job } from '../jobs/background.js';

export function executionRetentionJob(deps: {
  withPlatform: WithPlatform;
  withWorkspace: WithWorkspace;
  runtime: Runtime;
  defaultDays: number;
  intervalMs: number;
  /** Rows per DELETE statement (and per transaction). */
  batch?: number;
}): Job {
  const batch = deps.batch ?? 1_000;
  return {
    name: 'execution-retention',
    intervalMs: deps.intervalMs,
    async run() {
      const now = deps.runtime.now();
      // A named cross-workspace read (owner): workspace ids, their tenant's retention setting and
      // the resulting cutoff, only for workspaces that have something to delete. No execution
      // content is read here; the deletes run in each workspace's own transaction under RLS.
      const due = await deps.withPlatform(async (tx) =>
        (await tx.query<{ workspace_id: string; cutoff: Date }>(
          `SELECT w.id AS workspace_id, $1::timestamptz - make_interval(days => r.days) AS cutoff
             FROM workspaces w
             JOIN tenants t ON t.id = w.tenant_id
             CROSS JOIN LATERAL (
               SELECT CASE WHEN jsonb_typeof(t.limits -> 'executionRetentionDays') = 'number'
                           THEN least(greatest(0, floor((t.limits ->> 'executionRetentionDays')::numeric)), 1000000)::int
                           ELSE $2::int END AS days
             ) r
            WHERE EXISTS (
              SELECT 1 FROM executions e
               WHERE e.workspace_id = w.id AND e.finished_at IS NOT NULL
                 AND e.finished_at < $1::timestamptz - make_interval(days => r.days)
                 AND e.status IN ('succeeded', 'failed'))
            ORDER BY w.id`,
          [now, Math.min(1_000_000, Math.max(0, Math.floor(deps.defaultDays)))],
        )).rows,
      );
      let deleted = 0;
      for (const { workspace_id: workspaceId, cutoff } of due) {
        // One short transaction per batch, so a large backlog never holds locks for long.
        for (;;) {
          const removed = await deps.withWorkspace(workspaceId, async (tx) =>
            (await tx.query(
              `DELETE FROM executions WHERE id IN (
                 SELECT id FROM executions WHERE finished_at IS NOT NULL AND finished_at < $1 AND status IN ('succeeded', 'failed') LIMIT $2)`,
              [cutoff, batch],
            )).rowCount,
          );
          deleted += removed;
          if (removed < batch) break;
        }
      }
      return { workspaces: due.length, deleted };
    },
  };
}
