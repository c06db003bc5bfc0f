/**
 * The claim: the delivery engine's one cross-workspace step (a named exception to the
 * tenant-transaction rule — it reads only ids and flow-control figures, never payloads or
 * secrets), in one short transaction:
 *
 * 1. Destinations with due work, least recently served first, skipping open circuits, are
 *    locked `FOR UPDATE SKIP LOCKED`: for each destination one worker at a time decides, so
 *    the in-flight cap, the rate limit and the half-open probe hold across all workers.
 * 2. Their deliveries in flight are counted in a new statement (which sees every claim
 *    committed before the lock was ours) and each destination's allowance is computed
 *    (delivery/flow.ts).
 * 3. Up to the allowance, each destination's due deliveries (oldest first; an ordered one waits
 *    while an earlier one with its key is open; expired leases count as due) are locked
 *    `SKIP LOCKED` and leased to this worker.
 * 4. The destinations are stamped as served, and their buckets debited.
 *
 * Serving destinations least-recently-first is the fairness: a workspace with a backlog of
 * 100,000 deliveries gets one turn per round like a workspace with one.
 */
import type { WithPlatform } from '../../db/tenant-tx.js';
import { allowance, type FlowPolicy, tokensAt } from '../flow.js';

export interface Claimed {
  readonly workspace_id: string;
  readonly id: string;
  readonly destination_id: string;
}

export interface ClaimOptions extends FlowPolicy {
  readonly owner: string;
  readonly perDestination: number;
  readonly leaseMs: number;
  readonly defaultMaxInFlight: number;
  /** A per-process cap on one destination's share of this worker (added to what the cap allows). */
  readonly localInFlight: (destinationId: string) => number;
  readonly localMaxPerDestination: number;
}

interface Candidate {
  workspace_id: string;
  id: string;
  rate_limit_per_second: number | null;
  rate_tokens: number | null;
  rate_refilled_at: Date | null;
  max_in_flight: number | null;
  consecutive_failures: number;
}

// Due means waiting and due, or leased to a worker whose lease ran out. The two are asked
// separately, never with OR: each is then an ordered index scan that stops after a few rows,
// where the OR made PostgreSQL read and sort a destination's whole backlog.
const WAITING = `q.status IN ('pending', 'retrying') AND q.next_attempt_at <= $1`;
const EXPIRED = `q.status = 'delivering' AND q.lease_until < $1`;
// An ordered delivery waits while an earlier one with its key to the same destination is open.
const IN_ORDER = `(q.ordering_key IS NULL OR NOT EXISTS (
  SELECT 1 FROM deliveries e WHERE e.workspace_id = q.workspace_id AND e.destination_id = q.destination_id AND e.ordering_key = q.ordering_key
     AND e.status IN ('pending', 'retrying', 'delivering') AND (e.created_at, e.id) < (q.created_at, q.id)))`;
const pick = (due: string, order: string) => `SELECT c.turn, c.n, q.workspace_id, q.id, q.destination_id FROM candidates c
  CROSS JOIN LATERAL (
    SELECT q.workspace_id, q.id, q.destination_id FROM deliveries q
     WHERE q.workspace_id = c.workspace_id AND q.destination_id = c.destination_id AND ${due} AND ${IN_ORDER}
     ORDER BY ${order} LIMIT c.n
     FOR UPDATE OF q SKIP LOCKED
  ) q
 WHERE c.n > 0`;

export async function claimDue(withPlatform: WithPlatform, now: Date, limit: number, options: ClaimOptions): Promise<Claimed[]> {
  if (limit <= 0) return [];
  return withPlatform(async (tx) => {
    const { rows: candidates } = await tx.query<Candidate>(
      `SELECT dst.workspace_id, dst.id, dst.rate_limit_per_second, dst.rate_tokens, dst.rate_refilled_at, dst.max_in_flight, dst.consecutive_failures
         FROM destinations dst
        WHERE dst.enabled AND (dst.circuit_open_until IS NULL OR dst.circuit_open_until <= $1)
          -- Correlated probes with LIMIT 1, not EXISTS: PostgreSQL turns EXISTS into a semi-join that
          -- may hash the whole deliveries table (50+ ms under a 100,000-row backlog); these stay one
          -- short index probe per destination.
          AND ((SELECT 1 FROM deliveries q WHERE q.workspace_id = dst.workspace_id AND q.destination_id = dst.id AND ${WAITING} LIMIT 1) IS NOT NULL
            OR (SELECT 1 FROM deliveries q WHERE q.workspace_id = dst.workspace_id AND q.destination_id = dst.id AND ${EXPIRED} LIMIT 1) IS NOT NULL)
        ORDER BY dst.last_claimed_at NULLS FIRST, dst.id
        LIMIT $2
        FOR UPDATE OF dst SKIP LOCKED`,
      [now, limit],
    );
    if (candidates.length === 0) return [];
    const workspaces = candidates.map((c) => c.workspace_id);
    const ids = candidates.map((c) => c.id);
    const { rows: counts } = await tx.query<{ destination_id: string; n: number }>(
      `SELECT q.destination_id, count(*)::int AS n FROM deliveries q
        WHERE (q.workspace_id, q.destination_id) IN (SELECT * FROM unnest($1::text[], $2::text[])) AND q.status = 'delivering' AND q.lease_until >= $3
        GROUP BY q.destination_id`,
      [workspaces, ids, now],
    );
    const inFlight = new Map(counts.map((c) => [c.destination_id, c.n]));
    // Each destination's allowance is what it may take, not what it has: the worker's budget is
    // shared out after the rows are known, one per destination per turn.
    const limits = candidates.map((c) =>
      allowance(
        { ratePerSecond: c.rate_limit_per_second, tokens: c.rate_tokens, refilledAt: c.rate_refilled_at, maxInFlight: c.max_in_flight ?? options.defaultMaxInFlight, inFlight: inFlight.get(c.id) ?? 0, consecutiveFailures: c.consecutive_failures },
        options,
        now,
        Math.min(limit, options.perDestination, options.localMaxPerDestination - options.localInFlight(c.id)),
      ),
    );
    const { rows: available } = await tx.query<Claimed & { turn: number | string; n: number }>(
      `WITH candidates AS (SELECT * FROM unnest($2::text[], $3::text[], $4::int[]) WITH ORDINALITY AS c(workspace_id, destination_id, n, turn)),
            waiting AS (${pick(WAITING, 'q.next_attempt_at, q.id')}),
            expired AS (${pick(EXPIRED, 'q.lease_until, q.id')})
       SELECT * FROM expired UNION ALL SELECT * FROM waiting`,
      [now, workspaces, ids, limits],
    );
    const claimed = roundRobin(available, limit);
    if (claimed.length > 0) {
      await tx.query(
        `UPDATE deliveries SET status = 'delivering', lease_owner = $3, lease_until = $4, updated_at = $5
          WHERE (workspace_id, id) IN (SELECT * FROM unnest($1::text[], $2::text[]))`,
        [claimed.map((r) => r.workspace_id), claimed.map((r) => r.id), options.owner, new Date(now.getTime() + options.leaseMs), now],
      );
    }
    const taken = new Map<string, number>();
    for (const r of claimed) taken.set(r.destination_id, (taken.get(r.destination_id) ?? 0) + 1);
    // Served destinations (and those with no room now) go to the back of the line; one whose
    // turn the budget did not reach keeps its place. Buckets are debited by what was taken.
    const served = candidates.filter((c, i) => (taken.get(c.id) ?? 0) > 0 || limits[i] === 0);
    const tokens = served.map((c) => (c.rate_limit_per_second === null ? null : tokensAt({ ratePerSecond: c.rate_limit_per_second, tokens: c.rate_tokens, refilledAt: c.rate_refilled_at }, now) - (taken.get(c.id) ?? 0)));
    if (served.length > 0) {
      await tx.query(
        `UPDATE destinations d SET last_claimed_at = $3::timestamptz, rate_tokens = u.tokens, rate_refilled_at = CASE WHEN u.tokens IS NULL THEN NULL ELSE $3::timestamptz END
           FROM unnest($1::text[], $2::text[], $4::float8[]) AS u(workspace_id, id, tokens)
          WHERE d.workspace_id = u.workspace_id AND d.id = u.id`,
        [served.map((c) => c.workspace_id), served.map((c) => c.id), now, tokens],
      );
    }
    return claimed;
  });
}

/**
 * Up to `limit` rows, one per destination per turn in the destinations' order (rows arrive
 * grouped by destination, oldest first). Rows locked but not taken are released at commit.
 */
function roundRobin(rows: readonly (Claimed & { turn: number | string; n: number })[], limit: number): Claimed[] {
  const queues = new Map<string, Claimed[]>();
  for (const row of [...rows].sort((a, b) => Number(a.turn) - Number(b.turn))) {
    const queue = queues.get(row.destination_id) ?? [];
    // Expired and waiting rows were asked for separately: together at most the destination's allowance.
    if (queue.length < row.n) queue.push({ workspace_id: row.workspace_id, id: row.id, destination_id: row.destination_id });
    queues.set(row.destination_id, queue);
  }
  const taken: Claimed[] = [];
  while (taken.length < limit && queues.size > 0) {
    for (const [destination, queue] of queues) {
      const next = queue.shift();
      if (next) taken.push(next);
      if (queue.length === 0) queues.delete(destination);
      if (taken.length >= limit) break;
    }
  }
  return taken;
}
