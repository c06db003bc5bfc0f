/**
 * How a delivery row reads over the API: the columns to select and their mapping. Shared by the
 * reader (deliveries.ts) and the transitions that answer with the row they changed (sql/retry.ts),
 * so a transition can return its result without a second read and without importing the reader.
 */
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

export interface DeliveryRow {
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
export const DELIVERY_COLUMNS = `id, event_id, destination_id, rule_id, execution_id, status, attempt_count,
  (SELECT COALESCE(max(a.attempt), 0) FROM delivery_attempts a WHERE a.workspace_id = deliveries.workspace_id AND a.delivery_id = deliveries.id)::int AS attempts_total,
  next_attempt_at, last_status, last_error, ordering_key, created_at, updated_at`;

export const deliveryView = (r: DeliveryRow): DeliveryView => ({
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
