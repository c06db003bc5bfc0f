/** Reading deliveries (the engine that attempts them arrives in delivery/engine.ts). */
import type { WorkspaceTx } from '../db/tenant-tx.js';
import { notFound } from '../errors.js';
import { idPattern, isId } from '../ids.js';
import { decodeCursor, type Page, toPage } from '../pagination.js';

export const deliveryStatuses = ['pending', 'delivering', 'retrying', 'delivered', 'failed', 'cancelled'] as const;
export type DeliveryStatus = (typeof deliveryStatuses)[number];

export interface DeliveryView {
  readonly id: string;
  readonly eventId: string;
  readonly destinationId: string;
  readonly ruleId: string;
  readonly status: DeliveryStatus;
  readonly attemptCount: number;
  readonly nextAttemptAt: string | null;
  readonly lastStatus: number | null;
  readonly lastError: string | null;
  readonly orderingKey: string | null;
  readonly createdAt: string;
  readonly updatedAt: string;
}

interface Row {
  id: string;
  event_id: string;
  destination_id: string;
  rule_id: string;
  status: DeliveryStatus;
  attempt_count: number;
  next_attempt_at: Date;
  last_status: number | null;
  last_error: string | null;
  ordering_key: string | null;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS = 'id, event_id, destination_id, rule_id, status, attempt_count, next_attempt_at, last_status, last_error, ordering_key, created_at, updated_at';
const view = (r: Row): DeliveryView => ({
  id: r.id,
  eventId: r.event_id,
  destinationId: r.destination_id,
  ruleId: r.rule_id,
  status: r.status,
  attemptCount: r.attempt_count,
  nextAttemptAt: r.status === 'pending' || r.status === 'retrying' ? r.next_attempt_at.toISOString() : null,
  lastStatus: r.last_status,
  lastError: r.last_error,
  orderingKey: r.ordering_key,
  createdAt: r.created_at.toISOString(),
  updatedAt: r.updated_at.toISOString(),
});

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

  async forEvent(tx: WorkspaceTx, eventId: string): Promise<DeliveryView[]> {
    return (await tx.query<Row>(`SELECT ${COLUMNS} FROM deliveries WHERE event_id = $1 ORDER BY id`, [eventId])).rows.map(view);
  },
};
