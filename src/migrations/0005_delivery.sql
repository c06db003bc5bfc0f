-- The delivery engine: attempts on record, and the index the fair claim walks.

CREATE TABLE delivery_attempts (
  workspace_id   text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
  id             text NOT NULL,
  delivery_id    text NOT NULL,
  attempt        integer NOT NULL,
  started_at     timestamptz NOT NULL,
  duration_ms    integer NOT NULL,
  status         integer,
  error          text,
  -- The start of the receiver's answer, truncated and sealed (table delivery_attempts, column response_body).
  response_body  bytea,
  PRIMARY KEY (workspace_id, id),
  UNIQUE (workspace_id, delivery_id, attempt)
);

ALTER TABLE delivery_attempts ENABLE ROW LEVEL SECURITY;
ALTER TABLE delivery_attempts FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON delivery_attempts USING (workspace_id = bulkhead_current_workspace()) WITH CHECK (workspace_id = bulkhead_current_workspace());
GRANT SELECT, INSERT ON delivery_attempts TO ${app_role};
GRANT UPDATE (response_body) ON delivery_attempts TO ${app_role};

-- Per destination, the next due deliveries: the claim takes a few from each destination in turn.
CREATE INDEX deliveries_queue ON deliveries (workspace_id, destination_id, next_attempt_at, id) WHERE status IN ('pending', 'retrying', 'delivering');
