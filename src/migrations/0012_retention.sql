-- Retention (src/jobs/retention.ts): the worker removes, workspace by workspace and in bounded
-- batches, events whose deliveries are all finished, their deliveries and attempts, deliveries an
-- execution made, and the relay and operational logs, once older than the tenant's retention.

-- Is an event still needed by an execution (queued, running, or failed and so retryable)? One
-- probe per candidate event; executions had no index on event_id.
CREATE INDEX executions_by_event ON executions (workspace_id, event_id) WHERE event_id IS NOT NULL;
-- Deliveries an execution made have no event to go with: they expire on their own, oldest first.
-- Partial, so the event deliveries (most of the hottest table) never maintain it, and rows in the
-- queue are not in it either.
CREATE INDEX deliveries_unowned_finished ON deliveries (workspace_id, updated_at)
  WHERE event_id IS NULL AND status IN ('delivered', 'failed', 'cancelled');
-- Events are found by events_by_time (workspace_id, created_at), their deliveries by
-- deliveries_by_event, attempts by their (workspace_id, delivery_id, attempt) key. The relay and
-- operational logs need no index: their ids are time-ordered, so "older than" is a range of the
-- primary key (see idBefore in src/ids.ts).

-- Only the retention job deletes these; RLS still confines every DELETE to the current workspace.
GRANT DELETE ON events, deliveries, delivery_attempts, relay_log, operational_events TO ${app_role};
