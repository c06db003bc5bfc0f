/**
 * Manual retry (`POST /v1/deliveries/{id}/retry`): a finished delivery (delivered, failed or
 * cancelled) goes back to `pending`, due now, with a new round of attempts (same webhook-id; the
 * attempt history is kept). One still in the queue answers `conflict`: it will be attempted anyway.
 */
import type { WorkspaceTx } from '../../db/tenant-tx.js';
import { BulkheadError, notFound } from '../../errors.js';
import { isId } from '../../ids.js';
import { DELIVERY_COLUMNS, type DeliveryRow, type DeliveryView, deliveryView } from '../view.js';

export async function retryDelivery(tx: WorkspaceTx, id: string, now: Date): Promise<DeliveryView> {
  // Locked so a concurrent retry (or the engine) sees the status this decision was made on.
  const row = isId('delivery', id) ? (await tx.query<DeliveryRow>(`SELECT ${DELIVERY_COLUMNS} FROM deliveries WHERE id = $1 FOR UPDATE`, [id])).rows[0] : undefined;
  if (!row) throw notFound('delivery');
  if (row.status === 'pending' || row.status === 'retrying' || row.status === 'delivering') {
    throw new BulkheadError('conflict', `the delivery is ${row.status}; it will be attempted anyway`);
  }
  const { rows } = await tx.query<DeliveryRow>(
    `UPDATE deliveries SET status = 'pending', attempt_count = 0, next_attempt_at = $2, lease_owner = NULL, lease_until = NULL, updated_at = $2 WHERE id = $1 RETURNING ${DELIVERY_COLUMNS}`,
    [id, now],
  );
  return deliveryView(rows[0] as DeliveryRow);
}
