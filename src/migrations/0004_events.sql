-- Events, destinations, rules and deliveries (the delivery engine's queue).

CREATE TABLE events (
  workspace_id     text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
  id               text NOT NULL,
  type             text NOT NULL,
  resource         text,
  resource_id      text,
  -- Sealed with the workspace key (table events, row = id, column payload).
  payload          bytea NOT NULL,
  payload_bytes    integer NOT NULL,
  idempotency_key  text,
  created_at       timestamptz NOT NULL,
  PRIMARY KEY (workspace_id, id)
);
CREATE INDEX events_by_type ON events (workspace_id, type, id);
-- The monthly quota counts a workspace's events by time.
CREATE INDEX events_by_time ON events (workspace_id, created_at);

-- Idempotency keys remembered for 24 hours: the same key returns the original event.
CREATE TABLE event_idempotency (
  workspace_id  text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
  key           text NOT NULL,
  event_id      text NOT NULL,
  request_hash  text NOT NULL,
  expires_at    timestamptz NOT NULL,
  PRIMARY KEY (workspace_id, key)
);

CREATE TABLE destinations (
  workspace_id           text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
  id                     text NOT NULL,
  type                   text NOT NULL CHECK (type IN ('webhook')),
  url                    text NOT NULL,
  description            text,
  enabled                boolean NOT NULL DEFAULT true,
  disabled_reason        text,
  headers                jsonb NOT NULL DEFAULT '{}',
  event_types            text[],
  rate_limit_per_second  integer,
  ordered                boolean NOT NULL DEFAULT false,
  failing_since          timestamptz,
  created_at             timestamptz NOT NULL,
  updated_at             timestamptz NOT NULL,
  PRIMARY KEY (workspace_id, id)
);

-- Signing secrets (whsec_), sealed. During rotation the previous secret keeps signing until
-- expires_at, so receivers can switch over without dropping deliveries.
CREATE TABLE destination_secrets (
  workspace_id    text NOT NULL,
  destination_id  text NOT NULL,
  id              text NOT NULL,
  secret          bytea NOT NULL,
  created_at      timestamptz NOT NULL,
  expires_at      timestamptz,
  PRIMARY KEY (workspace_id, id),
  FOREIGN KEY (workspace_id, destination_id) REFERENCES destinations (workspace_id, id) ON DELETE CASCADE
);

CREATE TABLE rules (
  workspace_id     text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
  id               text NOT NULL,
  name             text NOT NULL,
  event_types      text[] NOT NULL,
  resource         text,
  filter           jsonb,
  destination_ids  text[] NOT NULL,
  ordered          boolean NOT NULL DEFAULT false,
  enabled          boolean NOT NULL DEFAULT true,
  created_at       timestamptz NOT NULL,
  updated_at       timestamptz NOT NULL,
  PRIMARY KEY (workspace_id, id),
  UNIQUE (workspace_id, name)
);

CREATE TABLE deliveries (
  workspace_id     text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
  id               text NOT NULL,
  event_id         text NOT NULL,
  destination_id   text NOT NULL,
  rule_id          text NOT NULL,
  status           text NOT NULL CHECK (status IN ('pending', 'delivering', 'retrying', 'delivered', 'failed', 'cancelled')),
  attempt_count    integer NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz NOT NULL,
  ordering_key     text,
  lease_owner      text,
  lease_until      timestamptz,
  last_status      integer,
  last_error       text,
  created_at       timestamptz NOT NULL,
  updated_at       timestamptz NOT NULL,
  PRIMARY KEY (workspace_id, id),
  UNIQUE (workspace_id, event_id, destination_id),
  FOREIGN KEY (workspace_id, event_id) REFERENCES events (workspace_id, id) ON DELETE CASCADE
);
-- The engine finds due work across workspaces (a named exception, see delivery/).
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status IN ('pending', 'retrying');
CREATE INDEX deliveries_by_event ON deliveries (workspace_id, event_id);
CREATE INDEX deliveries_by_destination ON deliveries (workspace_id, destination_id, id);

ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE events FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON events USING (workspace_id = bulkhead_current_workspace()) WITH CHECK (workspace_id = bulkhead_current_workspace());
ALTER TABLE event_idempotency ENABLE ROW LEVEL SECURITY;
ALTER TABLE event_idempotency FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON event_idempotency USING (workspace_id = bulkhead_current_workspace()) WITH CHECK (workspace_id = bulkhead_current_workspace());
ALTER TABLE destinations ENABLE ROW LEVEL SECURITY;
ALTER TABLE destinations FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON destinations USING (workspace_id = bulkhead_current_workspace()) WITH CHECK (workspace_id = bulkhead_current_workspace());
ALTER TABLE destination_secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE destination_secrets FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON destination_secrets USING (workspace_id = bulkhead_current_workspace()) WITH CHECK (workspace_id = bulkhead_current_workspace());
ALTER TABLE rules ENABLE ROW LEVEL SECURITY;
ALTER TABLE rules FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON rules USING (workspace_id = bulkhead_current_workspace()) WITH CHECK (workspace_id = bulkhead_current_workspace());
ALTER TABLE deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON deliveries USING (workspace_id = bulkhead_current_workspace()) WITH CHECK (workspace_id = bulkhead_current_workspace());

GRANT SELECT, INSERT ON events TO ${app_role};
-- Only the sealed payload can change (re-sealing after a workspace-key rotation).
GRANT UPDATE (payload) ON events TO ${app_role};
GRANT SELECT, INSERT, UPDATE, DELETE ON event_idempotency TO ${app_role};
GRANT SELECT, INSERT, UPDATE, DELETE ON destinations TO ${app_role};
GRANT SELECT, INSERT, UPDATE, DELETE ON destination_secrets TO ${app_role};
GRANT SELECT, INSERT, UPDATE, DELETE ON rules TO ${app_role};
GRANT SELECT, INSERT, UPDATE ON deliveries TO ${app_role};
