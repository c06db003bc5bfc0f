/**
 * Recording a batch of finished attempts of one workspace, set-based, in one statement whatever
 * the batch's size:
 *
 * - one `UPDATE … FROM unnest` moves every delivery to its next state, guarded by the lease (a
 *   delivery whose lease ran out and was taken by another worker is not touched, and its attempt
 *   is not recorded: the other worker's attempt is the one on record);
 * - one multi-row `INSERT` writes the attempts of the deliveries that were updated, each numbered
 *   after the delivery's highest so far (numbering goes on across manual-retry rounds);
 * - the destinations that only succeeded in this batch (`healthy`), and had a delivery updated,
 *   are reset if anything was failing — in the steady state that changes no row. Destinations with
 *   failures are delivery/health.ts's, after this statement.
 */
import type { WorkspaceTx } from '../../db/tenant-tx.js';
import type { Transition } from '../outcome.js';

export interface RecordedAttempt {
  readonly deliveryId: string;
  readonly attemptId: string;
  readonly transition: Transition;
  readonly lastStatus: number | null;
  readonly lastError: string | null;
  readonly startedAt: Date;
  readonly durationMs: number;
  /** Sealed (table delivery_attempts, column response_body), or null for an empty answer. */
  readonly responseBody: Uint8Array | null;
}

export interface Recorded {
  /** Deliveries whose lease still held: only these attempts are on record and count. */
  readonly held: Set<string>;
  /** Healthy destinations that were reset, and whether a failing period ended. */
  readonly reset: Map<string, { readonly wasFailing: boolean }>;
}

export async function recordAttempts(tx: WorkspaceTx, batch: readonly RecordedAttempt[], healthy: readonly string[], owner: string, now: Date): Promise<Recorded> {
  const { rows } = await tx.query<{ kind: 'held' | 'reset'; id: string; was_failing: boolean | null }>(
    `WITH u AS (
       SELECT * FROM unnest($3::text[], $4::text[], $5::int[], $6::timestamptz[], $7::int[], $8::text[], $9::text[], $10::timestamptz[], $11::int[], $12::text[])
         AS u(id, status, attempt, next_attempt_at, last_status, last_error, attempt_id, started_at, duration_ms, response_body)
     ), done AS (
       UPDATE deliveries d
          SET status = u.status, attempt_count = u.attempt, next_attempt_at = u.next_attempt_at, last_status = u.last_status, last_error = u.last_error,
              lease_owner = NULL, lease_until = NULL, updated_at = $2
         FROM u
        WHERE d.workspace_id = $1 AND d.id = u.id AND d.status = 'delivering' AND d.lease_owner = $13
       RETURNING d.id, d.destination_id
     ), attempts AS (
       INSERT INTO delivery_attempts (workspace_id, id, delivery_id, attempt, started_at, duration_ms, status, error, response_body)
       SELECT $1, u.attempt_id, u.id,
              COALESCE((SELECT max(a.attempt) FROM delivery_attempts a WHERE a.workspace_id = $1 AND a.delivery_id = u.id), 0) + 1,
              u.started_at, u.duration_ms, u.last_status, u.last_error, decode(u.response_body, 'base64')
         FROM u JOIN done ON done.id = u.id
     ), reset AS (
       UPDATE destinations d SET failing_since = NULL, consecutive_failures = 0, circuit_open_until = NULL
         FROM (SELECT id, failing_since FROM destinations
                WHERE workspace_id = $1 AND id = ANY($14::text[]) AND id IN (SELECT destination_id FROM done)
                  AND (failing_since IS NOT NULL OR consecutive_failures > 0)
                ORDER BY id FOR UPDATE) old
        WHERE d.workspace_id = $1 AND d.id = old.id
       RETURNING d.id, old.failing_since IS NOT NULL AS was_failing
     )
     SELECT 'held' AS kind, id, NULL::boolean AS was_failing FROM done
     UNION ALL SELECT 'reset', id, was_failing FROM reset`,
    [
      tx.workspaceId,
      now,
      batch.map((a) => a.deliveryId),
      batch.map((a) => a.transition.status),
      batch.map((a) => a.transition.attempt),
      batch.map((a) => a.transition.nextAttemptAt),
      batch.map((a) => a.lastStatus),
      batch.map((a) => a.lastError),
      batch.map((a) => a.attemptId),
      batch.map((a) => a.startedAt),
      batch.map((a) => a.durationMs),
      // As base64 text: a bytea[] parameter is encoded differently by each driver.
      batch.map((a) => (a.responseBody === null ? null : Buffer.from(a.responseBody).toString('base64'))),
      owner,
      healthy,
    ],
  );
  const held = new Set<string>();
  const reset = new Map<string, { wasFailing: boolean }>();
  for (const r of rows) {
    if (r.kind === 'held') held.add(r.id);
    else reset.set(r.id, { wasFailing: r.was_failing === true });
  }
  return { held, reset };
}
