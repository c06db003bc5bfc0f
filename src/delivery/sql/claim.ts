/**
 * The claim: the delivery engine's one cross-workspace step (a named exception to the
 * tenant-transaction rule — it reads only ids and flow-control figures, never payloads or
 * secrets), in one short transaction of two statements:
 *
 * 1. Destinations with due work, least recently served first, skipping open circuits, are
 *    locked `FOR UPDATE SKIP LOCKED`: for each destination one worker at a time decides, so
 *    the in-flight cap, the rate limit and the half-open probe hold across all workers. What the
 *    rate limit allows is computed here from the locked rows (delivery/flow.ts).
 * 2. One statement does the rest: it counts each destination's deliveries in flight (a new
 *    statement, so it sees every claim committed before the lock was ours) and takes that from
 *    the cap; picks up to the allowance of each destination's due deliveries (oldest first; an
 *    ordered one waits while an earlier one with its key is open; expired leases count as due),
 *    locking them `SKIP LOCKED`; shares the worker's budget out one delivery per destination per
 *    turn, in the destinations' order; leases what it took; and stamps the destinations served
 *    and debits their buckets.
 *
 * Serving destinations least-recently-first, one per turn, is the fairness: a workspace with a
 * backlog of 100,000 deliveries gets one turn per round like a workspace with one.
 *
 * The transaction commits asynchronously (`synchronous_commit = off`): a claim lost in a crash
 * only means its deliveries are claimed again (at least once, the same webhook-id), and the
 * attempt's own record, committed synchronously, flushes the claim before it.
 */
import type { WithPlatform } from '../../db/tenant-tx.js';
import { allowanceByRate, type FlowPolicy, inFlightCap, tokensAt } from '../flow.js';

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
// `since` is what the rows are ordered by (no window function here: FOR UPDATE does not allow one).
const pick = (due: string, since: string, source: number) => `SELECT c.turn, c.n, ${String(source)} AS source, q.since, q.workspace_id, q.id, q.destination_id FROM candidates c
  CROSS JOIN LATERAL (
    SELECT q.workspace_id, q.id, q.destination_id, ${since} AS since FROM deliveries q
     WHERE q.workspace_id = c.workspace_id AND q.destination_id = c.destination_id AND ${due} AND ${IN_ORDER}
     ORDER BY ${since}, q.id LIMIT c.n
     FOR UPDATE OF q SKIP LOCKED
  ) q
 WHERE c.n > 0`;

export async function claimDue(withPlatform: WithPlatform, now: Date, limit: number, options: ClaimOptions): Promise<Claimed[]> {
  if (limit <= 0) return [];
  return withPlatform(async (tx) => {
    const { rows: candidates } = await tx.query<Candidate>(
      `SELECT dst.workspace_id, dst.id, dst.rate_limit_per_second, dst.rate_tokens, dst.rate_refilled_at, dst.max_in_flight, dst.consecutive_failures
         FROM destinations dst, (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
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
    // Each destination's allowance is what it may take, not what it has: the worker's budget is
    // shared out after the rows are known, one per destination per turn.
    const byRate = candidates.map((c) =>
      allowanceByRate({ ratePerSecond: c.rate_limit_per_second, tokens: c.rate_tokens, refilledAt: c.rate_refilled_at }, now, Math.min(limit, options.perDestination, options.localMaxPerDestination - options.localInFlight(c.id))),
    );
    const caps = candidates.map((c) => inFlightCap({ maxInFlight: c.max_in_flight ?? options.defaultMaxInFlight, consecutiveFailures: c.consecutive_failures }, options));
    const tokens = candidates.map((c) => (c.rate_limit_per_second === null ? null : tokensAt({ ratePerSecond: c.rate_limit_per_second, tokens: c.rate_tokens, refilledAt: c.rate_refilled_at }, now)));
    const { rows } = await tx.query<Claimed>(
      `WITH given AS (
         SELECT * FROM unnest($2::text[], $3::text[], $4::int[], $5::int[], $6::float8[]) WITH ORDINALITY AS g(workspace_id, destination_id, by_rate, cap, tokens, turn)
       ), candidates AS (
         SELECT g.*, GREATEST(0, LEAST(g.by_rate, g.cap - (
                  SELECT count(*) FROM deliveries q
                   WHERE q.workspace_id = g.workspace_id AND q.destination_id = g.destination_id AND q.status = 'delivering' AND q.lease_until >= $1)))::int AS n
           FROM given g
       ),
       waiting AS (${pick(WAITING, 'q.next_attempt_at', 1)}),
       expired AS (${pick(EXPIRED, 'q.lease_until', 0)}),
       ranked AS (
         -- Expired leases first, then the oldest due; at most n per destination.
         SELECT r.*, row_number() OVER (PARTITION BY r.workspace_id, r.destination_id ORDER BY r.source, r.since, r.id) AS rank
           FROM (SELECT * FROM expired UNION ALL SELECT * FROM waiting) r
       ),
       taken AS (
         SELECT workspace_id, id, destination_id FROM ranked WHERE rank <= n ORDER BY rank, turn LIMIT $7
       ),
       leased AS (
         UPDATE deliveries d SET status = 'delivering', lease_owner = $8, lease_until = $9, updated_at = $1
           FROM taken t WHERE d.workspace_id = t.workspace_id AND d.id = t.id
         RETURNING d.workspace_id, d.id, d.destination_id
       ),
       served AS (
         -- Served destinations (and those with no room now) go to the back of the line; one whose
         -- turn the budget did not reach keeps its place. Buckets are debited by what was taken.
         UPDATE destinations d SET last_claimed_at = $1, rate_tokens = s.tokens - s.taken,
                rate_refilled_at = CASE WHEN s.tokens IS NULL THEN NULL ELSE $1::timestamptz END
           FROM (SELECT c.workspace_id, c.destination_id, c.tokens, c.n,
                        (SELECT count(*) FROM taken t WHERE t.workspace_id = c.workspace_id AND t.destination_id = c.destination_id)::int AS taken
                   FROM candidates c) s
          WHERE d.workspace_id = s.workspace_id AND d.id = s.destination_id AND (s.taken > 0 OR s.n = 0)
       )
       SELECT workspace_id, id, destination_id FROM leased`,
      [now, candidates.map((c) => c.workspace_id), candidates.map((c) => c.id), byRate, caps, tokens, limit, options.owner, new Date(now.getTime() + options.leaseMs)],
    );
    return rows;
  });
}
