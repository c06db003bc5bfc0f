/**
 * Recording a batch of finished attempts of one workspace, set-based: one `UPDATE … FROM unnest`
 * moves every delivery to its next state, guarded by the lease (a delivery whose lease ran out
 * and was taken by another worker is not touched, and its attempt is not recorded: the other
 * worker's attempt is the one on record), then one multi-row `INSERT` writes the attempts of the
 * deliveries that were updated. Two statements per batch, whatever its size.
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
}

/** Moves the deliveries on; answers the ids whose lease still held (only those count). */
export async function completeDeliveries(tx: WorkspaceTx, batch: readonly RecordedAttempt[], owner: string, now: Date): Promise<Set<string>> {
  const { rows } = await tx.query<{ id: string }>(
    `UPDATE deliveries d
        SET status = u.status, attempt_count = u.attempt, next_attempt_at = u.next_attempt_at, last_status = u.last_status, last_error = u.last_error,
            lease_owner = NULL, lease_until = NULL, updated_at = $2
       FROM unnest($3::text[], $4::text[], $5::int[], $6::timestamptz[], $7::int[], $8::text[]) AS u(id, status, attempt, next_attempt_at, last_status, last_error)
      WHERE d.workspace_id = $1 AND d.id = u.id AND d.status = 'delivering' AND d.lease_owner = $9
      RETURNING d.id`,
    [
      tx.workspaceId,
      now,
      batch.map((a) => a.deliveryId),
      batch.map((a) => a.transition.status),
      batch.map((a) => a.transition.attempt),
      batch.map((a) => a.transition.nextAttemptAt),
      batch.map((a) => a.lastStatus),
      batch.map((a) => a.lastError),
      owner,
    ],
  );
  return new Set(rows.map((r) => r.id));
}

/**
 * The attempts, numbered across rounds (a manual retry starts a new round, the numbering goes
 * on): each is the delivery's highest number so far plus one, read from the unique index.
 * `responseBodies` are already sealed (table delivery_attempts, column response_body).
 */
export async function insertAttempts(tx: WorkspaceTx, batch: readonly RecordedAttempt[], responseBodies: readonly (Uint8Array | null)[]): Promise<void> {
  if (batch.length === 0) return;
  await tx.query(
    `INSERT INTO delivery_attempts (workspace_id, id, delivery_id, attempt, started_at, duration_ms, status, error, response_body)
     SELECT $1, u.id, u.delivery_id,
            COALESCE((SELECT max(a.attempt) FROM delivery_attempts a WHERE a.workspace_id = $1 AND a.delivery_id = u.delivery_id), 0) + 1,
            u.started_at, u.duration_ms, u.status, u.error, decode(u.response_body, 'base64')
       FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::int[], $6::int[], $7::text[], $8::text[])
            AS u(id, delivery_id, started_at, duration_ms, status, error, response_body)`,
    [
      tx.workspaceId,
      batch.map((a) => a.attemptId),
      batch.map((a) => a.deliveryId),
      batch.map((a) => a.startedAt),
      batch.map((a) => a.durationMs),
      batch.map((a) => a.lastStatus),
      batch.map((a) => a.lastError),
      // As base64 text: a bytea[] parameter is encoded differently by each driver.
      responseBodies.map((b) => (b === null ? null : Buffer.from(b).toString('base64'))),
    ],
  );
}
