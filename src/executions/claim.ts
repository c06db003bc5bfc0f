/**
 * The execution runner's claim: a named cross-workspace step (it reads ids and times only, never
 * payloads, code or config), in one statement.
 *
 * Fair by construction: the workspaces with queued work are found by a skip scan of the
 * `executions_queued` index, and each contributes its oldest executions in turns — first the
 * oldest of every workspace, then the second of every workspace, ... — so a workspace with
 * 100,000 queued executions gets one turn per round like a workspace with one. Executions whose
 * lease ran out (their worker died) come first.
 *
 * The UPDATE re-checks each row's state under its row lock, so two runners claiming at once
 * never both take an execution: the second sees it `running` with a live lease and skips it.
 */
import type { WithPlatform } from '../db/tenant-tx.js';

export interface ClaimedExecution {
  readonly workspace_id: string;
  readonly id: string;
  readonly attempts: number;
}

/** Workspaces looked at per claim: bounds the skip scan however many have queued work. */
const MAX_WORKSPACES = 1_000;

export async function claimExecutions(
  withPlatform: WithPlatform,
  now: Date,
  limit: number,
  options: { readonly owner: string; readonly leaseMs: number },
): Promise<ClaimedExecution[]> {
  if (limit <= 0) return [];
  return withPlatform(async (tx) => {
    const { rows } = await tx.query<ClaimedExecution>(
      `WITH RECURSIVE ws AS (
         (SELECT workspace_id, 1 AS depth FROM executions WHERE status = 'queued' ORDER BY workspace_id LIMIT 1)
         UNION ALL
         SELECT (SELECT e.workspace_id FROM executions e WHERE e.status = 'queued' AND e.workspace_id > ws.workspace_id ORDER BY e.workspace_id LIMIT 1), ws.depth + 1
           FROM ws WHERE ws.workspace_id IS NOT NULL AND ws.depth < ${String(MAX_WORKSPACES)}
       ),
       queued AS (
         SELECT q.workspace_id, q.id, q.turn, q.created_at FROM ws CROSS JOIN LATERAL (
           SELECT e.workspace_id, e.id, e.created_at, row_number() OVER (ORDER BY e.created_at, e.id) AS turn FROM executions e
            WHERE e.workspace_id = ws.workspace_id AND e.status = 'queued' ORDER BY e.created_at, e.id LIMIT $2
         ) q
         WHERE ws.workspace_id IS NOT NULL
       ),
       expired AS (
         SELECT workspace_id, id, 0::bigint AS turn, created_at FROM executions WHERE status = 'running' AND lease_until < $1 ORDER BY lease_until LIMIT $2
       ),
       chosen AS (
         SELECT workspace_id, id FROM (SELECT * FROM expired UNION ALL SELECT * FROM queued) c ORDER BY turn, created_at, id LIMIT $2
       )
       UPDATE executions x SET status = 'running', lease_owner = $3, lease_until = $4, attempts = x.attempts + 1, started_at = COALESCE(x.started_at, $1)
         FROM chosen c
        WHERE x.workspace_id = c.workspace_id AND x.id = c.id AND (x.status = 'queued' OR (x.status = 'running' AND x.lease_until < $1))
       RETURNING x.workspace_id, x.id, x.attempts`,
      [now, limit, options.owner, new Date(now.getTime() + options.leaseMs)],
    );
    return rows;
  });
}
