/**
 * Cron triggers. Each enabled instance's cron trigger has a row in `instance_schedules` with its
 * next fire time. The job finds due rows across workspaces (a named cross-workspace read: ids and
 * times only), then in each row's workspace transaction locks it `FOR UPDATE SKIP LOCKED` and
 * queues one execution for the slot. Two guarantees make a slot fire at most once whatever the
 * number of workers: the row lock (one worker at a time decides for a row), and the unique index
 * on (instance, trigger, slot) that turns a second insert for a slot into a no-op.
 *
 * A scheduler that was down fires each trigger once, for the latest slot it missed, never a burst.
 */
import type { WithPlatform, WithWorkspace } from '../db/tenant-tx.js';
import { newId, type Runtime } from '../ids.js';
import { latestDueAtOrBefore, nextFireAfter } from '../integrations/cron.js';
import type { Job } from '../jobs/background.js';

interface ScheduleRow {
  instance_id: string;
  trigger_index: number;
  schedule: string;
  timezone: string;
  last_fired_at: Date | null;
  next_fire_at: Date;
  created_at: Date;
}

export function cronJob(deps: { withPlatform: WithPlatform; withWorkspace: WithWorkspace; runtime: Runtime; intervalMs: number; batch?: number; onQueued?: () => void }): Job {
  return {
    name: 'cron',
    intervalMs: deps.intervalMs,
    async run() {
      const now = deps.runtime.now();
      const due = await deps.withPlatform(async (tx) =>
        (await tx.query<{ workspace_id: string; instance_id: string; trigger_index: number }>(
          'SELECT workspace_id, instance_id, trigger_index FROM instance_schedules WHERE next_fire_at <= $1 ORDER BY next_fire_at LIMIT $2',
          [now, deps.batch ?? 500],
        )).rows,
      );
      let queued = 0;
      for (const row of due) {
        const fired = await deps.withWorkspace(row.workspace_id, async (tx) => {
          const schedule = (await tx.query<ScheduleRow>(
            `SELECT s.instance_id, s.trigger_index, s.schedule, s.timezone, s.last_fired_at, s.next_fire_at, i.created_at
               FROM instance_schedules s JOIN instances i ON i.workspace_id = s.workspace_id AND i.id = s.instance_id
              WHERE s.instance_id = $1 AND s.trigger_index = $2 AND s.next_fire_at <= $3 AND i.enabled
                FOR UPDATE OF s SKIP LOCKED`,
            [row.instance_id, row.trigger_index, now],
          )).rows[0];
          if (!schedule) return false; // another worker has it, or it fired meanwhile
          const slot = latestDueAtOrBefore(schedule.schedule, schedule.timezone, schedule.last_fired_at, now, schedule.created_at) ?? schedule.next_fire_at;
          const inserted = await tx.query(
            `INSERT INTO executions (workspace_id, id, kind, instance_id, trigger, scheduled_for, trigger_index, status, created_at)
             VALUES ($1, $2, 'instance', $3, 'cron', $4, $5, 'queued', $6)
             ON CONFLICT (workspace_id, instance_id, trigger_index, scheduled_for) WHERE scheduled_for IS NOT NULL DO NOTHING`,
            [tx.workspaceId, newId('execution', deps.runtime), schedule.instance_id, slot, schedule.trigger_index, now],
          );
          const next = nextFireAfter(schedule.schedule, schedule.timezone, now);
          if (next === null) await tx.query('DELETE FROM instance_schedules WHERE instance_id = $1 AND trigger_index = $2', [schedule.instance_id, schedule.trigger_index]);
          else await tx.query('UPDATE instance_schedules SET last_fired_at = $3, next_fire_at = $4 WHERE instance_id = $1 AND trigger_index = $2', [schedule.instance_id, schedule.trigger_index, slot, next]);
          return inserted.rowCount > 0;
        });
        if (fired) queued++;
      }
      if (queued > 0) deps.onQueued?.();
      return { due: due.length, queued };
    },
  };
}
