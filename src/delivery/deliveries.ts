/** Reading deliveries (the engine that attempts them arrives in delivery/engine.ts). */
import type { WorkspaceTx } from '../db/tenant-tx.js';
import { mapSerially } from '../db/serially.js';
import { BulkheadError, notFound } from '../errors.js';
import type { Vault } from '../vault/vault.js';
import { idPattern, isId } from '../ids.js';
import { decodeCursor, type Page, toPage } from '../pagination.js';

export const deliveryStatuses = ['pending', 'delivering', 'retrying', 'delivered', 'failed', 'cancelled'] as const;
export type DeliveryStatus = (typeof deliveryStatuses)[number];

export interface DeliveryView {
  readonly id: string;
  readonly eventId: string | null;
  readonly destinationId: string;
  readonly ruleId: string | null;
  /** The execution that produced this delivery (a rule's transform, an instance's deliver step). */
  readonly executionId: string | null;
  readonly status: DeliveryStatus;
  /**
   * Attempts in the current round: the retry schedule counts these. A manual retry or a recover
   * starts a new round at 0.
   */
  readonly attemptsThisRound: number;
  /** Attempts in all rounds: the number of entries in the delivery's attempt history. */
  readonly attemptsTotal: number;
  readonly nextAttemptAt: string | null;
  readonly lastStatus: number | null;
  readonly lastError: string | null;
  readonly orderingKey: string | null;
  readonly createdAt: string;
  readonly updatedAt: string;
}

interface Row {
  id: string;
  event_id: string | null;
  destination_id: string;
  rule_id: string | null;
  execution_id: string | null;
  status: DeliveryStatus;
  attempt_count: number;
  attempts_total: number;
  next_attempt_at: Date;
  last_status: number | null;
  last_error: string | null;
  ordering_key: string | null;
  created_at: Date;
  updated_at: Date;
}

// Attempts on record are numbered 1, 2, … across rounds, so the highest is the total (one probe of
// the (workspace_id, delivery_id, attempt) unique index per row).
const COLUMNS = `id, event_id, destination_id, rule_id, execution_id, status, attempt_count,
  (SELECT COALESCE(max(a.attempt), 0) FROM delivery_attempts a WHERE a.workspace_id = deliveries.workspace_id AND a.delivery_id = deliveries.id)::int AS attempts_total,
  next_attempt_at, last_status, last_error, ordering_key, created_at, updated_at`;
const view = (r: Row): DeliveryView => ({
  id: r.id,
  eventId: r.event_id,
  destinationId: r.destination_id,
  ruleId: r.rule_id,
  executionId: r.execution_id,
  status: r.status,
  attemptsThisRound: r.attempt_count,
  attemptsTotal: r.attempts_total,
  nextAttemptAt: r.status === 'pending' || r.status === 'retrying' ? r.next_attempt_at.toISOString() : null,
  lastStatus: r.last_status,
  lastError: r.last_error,
  orderingKey: r.ordering_key,
  createdAt: r.created_at.toISOString(),
  updatedAt: r.updated_at.toISOString(),
});

export interface AttemptView {
  readonly attempt: number;
  readonly startedAt: string;
  readonly durationMs: number;
  readonly status: number | null;
  readonly error: string | null;
  /** The start of the receiver's answer (opened from its sealed form), as text. */
  readonly responseBody: string | null;
}

export const deliveryReader = {
  async list(tx: WorkspaceTx, q: { cursor?: string | undefined; limit: number; status?: string | undefined; destinationId?: string | undefined; eventId?: string | undefined }): Promise<Page<DeliveryView>> {
    const after = decodeCursor(q.cursor, new RegExp(idPattern('delivery')));
    const { rows } = await tx.query<Row>(
      `SELECT ${COLUMNS} FROM deliveries WHERE ($1::text IS NULL OR id < $1) AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR destination_id = $3)
         AND ($4::text IS NULL OR event_id = $4) ORDER BY id DESC LIMIT $5`,
      [after ?? null, q.status ?? null, q.destinationId ?? null, q.eventId ?? null, q.limit + 1],
    );
    return toPage(rows, q.limit, (r) => r.id, view);
  },

  async get(tx: WorkspaceTx, id: string): Promise<DeliveryView> {
    const row = isId('delivery', id) ? (await tx.query<Row>(`SELECT ${COLUMNS} FROM deliveries WHERE id = $1`, [id])).rows[0] : undefined;
    if (!row) throw notFound('delivery');
    return view(row);
  },

  async attempts(tx: WorkspaceTx, vault: Vault, deliveryId: string): Promise<AttemptView[]> {
    const { rows } = await tx.query<{ id: string; attempt: number; started_at: Date; duration_ms: number; status: number | null; error: string | null; response_body: Uint8Array | null }>(
      'SELECT id, attempt, started_at, duration_ms, status, error, response_body FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt',
      [deliveryId],
    );
    const sealer = vault.workspace(tx);
    return mapSerially(rows, async (r) => ({
      attempt: r.attempt,
      startedAt: r.started_at.toISOString(),
      durationMs: r.duration_ms,
      status: r.status,
      error: r.error,
      responseBody: r.response_body ? (await sealer.open({ table: 'delivery_attempts', rowId: r.id, column: 'response_body' }, r.response_body)).toString('utf8') : null,
    }));
  },

  /** Puts a finished delivery back in the queue for one more round of attempts (same webhook-id). */
  async retry(tx: WorkspaceTx, id: string, now: Date): Promise<DeliveryView> {
    const row = isId('delivery', id) ? (await tx.query<Row>(`SELECT ${COLUMNS} FROM deliveries WHERE id = $1 FOR UPDATE`, [id])).rows[0] : undefined;
    if (!row) throw notFound('delivery');
    if (row.status === 'pending' || row.status === 'retrying' || row.status === 'delivering') {
      throw new BulkheadError('conflict', `the delivery is ${row.status}; it will be attempted anyway`);
    }
    const { rows } = await tx.query<Row>(
      `UPDATE deliveries SET status = 'pending', attempt_count = 0, next_attempt_at = $2, lease_owner = NULL, lease_until = NULL, updated_at = $2 WHERE id = $1 RETURNING ${COLUMNS}`,
      [id, now],
    );
    return view(rows[0] as Row);
  },

  /** Re-queues a destination's failed deliveries created in [since, until). */
  async recover(tx: WorkspaceTx, destinationId: string, since: Date, until: Date, now: Date): Promise<number> {
    const { rows } = await tx.query('SELECT 1 FROM destinations WHERE id = $1', [destinationId]);
    if (rows.length === 0) throw notFound('destination');
    const updated = await tx.query(
      `UPDATE deliveries SET status = 'pending', attempt_count = 0, next_attempt_at = $4, updated_at = $4
        WHERE destination_id = $1 AND status = 'failed' AND created_at >= $2 AND created_at < $3`,
      [destinationId, since, until, now],
    );
    return updated.rowCount;
  },

  async forEvent(tx: WorkspaceTx, eventId: string): Promise<DeliveryView[]> {
    return (await tx.query<Row>(`SELECT ${COLUMNS} FROM deliveries WHERE event_id = $1 ORDER BY id`, [eventId])).rows.map(view);
  },
};
