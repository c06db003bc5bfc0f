/**
 * Reading deliveries. Nothing here writes: every change of a delivery is a transition in sql/
 * (sql/index.ts lists them).
 */
import type { WorkspaceTx } from '../db/tenant-tx.js';
import { mapSerially } from '../db/serially.js';
import { notFound } from '../errors.js';
import type { Vault } from '../vault/vault.js';
import { idPattern, isId } from '../ids.js';
import { decodeCursor, type Page, toPage } from '../pagination.js';
import { DELIVERY_COLUMNS as COLUMNS, type DeliveryRow as Row, type DeliveryView, deliveryView as view } from './view.js';

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

  async forEvent(tx: WorkspaceTx, eventId: string): Promise<DeliveryView[]> {
    return (await tx.query<Row>(`SELECT ${COLUMNS} FROM deliveries WHERE event_id = $1 ORDER BY id`, [eventId])).rows.map(view);
  },
};
