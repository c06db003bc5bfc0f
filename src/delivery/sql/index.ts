/**
 * The delivery queue's transitions. Every write to `deliveries` is one named function here, with
 * its SQL beside it; everything else calls these (ownership.test.ts fails on a write elsewhere).
 * Modelled on graphile/worker's src/sql/.
 *
 *   transition      what it does                                              module
 *   enqueue         new deliveries, pending and due now: ingest's (payload    sql/enqueue.ts
 *                   from the event) and an execution's (own sealed payload)
 *   claim           due deliveries leased to a worker, per-destination flow   sql/claim.ts
 *                   control decided under the destination's lock
 *   complete/fail   record an attempt's outcome under the lease: delivered,   sql/record.ts
 *                   retrying with the next attempt time, or failed
 *   release         give back leases a stopping worker still holds            sql/release.ts
 *   manual retry    a finished delivery back to pending for a new round       sql/retry.ts
 *   recover         a destination's failed deliveries in a time window back   sql/recover.ts
 *                   to pending
 *   cancel          a deleted destination's queued deliveries to cancelled    sql/cancel.ts
 *
 *   load            (a read, but the hot path's) a workspace's leased deliveries  sql/load.ts
 *                   with payloads and destinations, in one statement
 *
 * Destination health after a batch (consecutive failures, circuit, disabling) is delivery/health.ts.
 * Deleting expired rows (retention) is not a transition of a live delivery and is owned by
 * jobs/retention.ts.
 *
 * Reads are not here: the API's reader is delivery/deliveries.ts and the row shape it maps is
 * delivery/view.ts.
 */
export { cancelDestinationDeliveries } from './cancel.js';
export { enqueueEventDeliveries, enqueueExecutionDeliveries, type EventDelivery, type ExecutionDelivery } from './enqueue.js';
export { recoverDestination } from './recover.js';
export { retryDelivery } from './retry.js';
