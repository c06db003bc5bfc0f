-- Flow control per destination, decided by the worker that holds the destination's row lock
-- during a claim: the order destinations are served in (least recently served first), a token
-- bucket for the optional rate limit, a cap on deliveries in flight, and a circuit breaker.

ALTER TABLE destinations
  ADD COLUMN max_in_flight        integer CHECK (max_in_flight BETWEEN 1 AND 1000),
  ADD COLUMN last_claimed_at      timestamptz,
  ADD COLUMN rate_tokens          double precision,
  ADD COLUMN rate_refilled_at     timestamptz,
  -- Failed attempts since the last success; the circuit opens at a threshold.
  ADD COLUMN consecutive_failures integer NOT NULL DEFAULT 0,
  -- While in the future nothing is sent; once past, one probe at a time until a success.
  ADD COLUMN circuit_open_until   timestamptz;

-- Counting a destination's deliveries in flight (the cap), and finding expired leases, without
-- walking its backlog.
CREATE INDEX deliveries_in_flight ON deliveries (workspace_id, destination_id, lease_until) WHERE status = 'delivering';
-- A destination's due deliveries, oldest first: an ordered scan that stops after the few a claim
-- takes, however long the backlog (the claim asks for waiting and expired rows separately).
CREATE INDEX deliveries_waiting ON deliveries (workspace_id, destination_id, next_attempt_at, id) WHERE status IN ('pending', 'retrying');
-- Superseded by the two above (waiting rows, rows in flight); kept, it would be maintained on every
-- insert and status change of the hottest table for nothing.
DROP INDEX deliveries_queue;
