-- Inbound webhooks: sources with a public /hooks/{id} URL, their sealed verification secrets,
-- the replay memory, and per-source counters.

CREATE TABLE inbound_sources (
  workspace_id           text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
  id                     text NOT NULL,
  name                   text NOT NULL,
  scheme                 text NOT NULL CHECK (scheme IN ('standard-webhooks', 'github', 'stripe', 'slack', 'hmac')),
  event_type             text NOT NULL,
  -- Timestamp tolerance of the timed schemes; NULL for schemes whose signatures carry no time.
  tolerance_seconds      integer CHECK (tolerance_seconds BETWEEN 1 AND 86400),
  -- Generic HMAC only: { header, algorithm, encoding, prefix }.
  hmac                   jsonb,
  rate_limit_per_minute  integer NOT NULL CHECK (rate_limit_per_minute > 0),
  created_at             timestamptz NOT NULL,
  PRIMARY KEY (workspace_id, id),
  UNIQUE (workspace_id, name)
);
-- The public endpoint finds a source's workspace by id before any workspace is known: a named
-- cross-workspace read (see src/inbound/receive.ts). Not unique: uniqueness stays per workspace.
CREATE INDEX inbound_sources_by_id ON inbound_sources (id);

-- Verification secrets, sealed with the workspace key (table inbound_source_secrets, row = id,
-- column secret). After a rotation the previous secret keeps verifying until expires_at.
CREATE TABLE inbound_source_secrets (
  workspace_id  text NOT NULL,
  source_id     text NOT NULL,
  id            text NOT NULL,
  secret        bytea NOT NULL,
  created_at    timestamptz NOT NULL,
  expires_at    timestamptz,
  PRIMARY KEY (workspace_id, id),
  FOREIGN KEY (workspace_id, source_id) REFERENCES inbound_sources (workspace_id, id) ON DELETE CASCADE
);
CREATE INDEX inbound_source_secrets_by_source ON inbound_source_secrets (workspace_id, source_id);

-- What each source has accepted, keyed by a digest of exactly the signed content, kept until the
-- signature could no longer verify. The insert shares the event's transaction, so of two
-- identical requests exactly one becomes an event.
CREATE TABLE inbound_replays (
  workspace_id  text NOT NULL,
  source_id     text NOT NULL,
  key           text NOT NULL,
  expires_at    timestamptz NOT NULL,
  PRIMARY KEY (workspace_id, source_id, key),
  FOREIGN KEY (workspace_id, source_id) REFERENCES inbound_sources (workspace_id, id) ON DELETE CASCADE
);
CREATE INDEX inbound_replays_expiry ON inbound_replays (workspace_id, source_id, expires_at);

-- Received and rejected counts per source, sharded (each request adds to one of 8 rows at random)
-- so concurrent requests to one source rarely wait on the same row lock.
CREATE TABLE inbound_source_counters (
  workspace_id          text NOT NULL,
  source_id             text NOT NULL,
  shard                 smallint NOT NULL CHECK (shard BETWEEN 0 AND 7),
  received              bigint NOT NULL DEFAULT 0,
  rejected              bigint NOT NULL DEFAULT 0,
  last_received_at      timestamptz,
  last_rejected_at      timestamptz,
  last_rejected_reason  text,
  PRIMARY KEY (workspace_id, source_id, shard),
  FOREIGN KEY (workspace_id, source_id) REFERENCES inbound_sources (workspace_id, id) ON DELETE CASCADE
);

ALTER TABLE inbound_sources ENABLE ROW LEVEL SECURITY;
ALTER TABLE inbound_sources FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON inbound_sources USING (workspace_id = bulkhead_current_workspace()) WITH CHECK (workspace_id = bulkhead_current_workspace());
ALTER TABLE inbound_source_secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE inbound_source_secrets FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON inbound_source_secrets USING (workspace_id = bulkhead_current_workspace()) WITH CHECK (workspace_id = bulkhead_current_workspace());
ALTER TABLE inbound_replays ENABLE ROW LEVEL SECURITY;
ALTER TABLE inbound_replays FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON inbound_replays USING (workspace_id = bulkhead_current_workspace()) WITH CHECK (workspace_id = bulkhead_current_workspace());
ALTER TABLE inbound_source_counters ENABLE ROW LEVEL SECURITY;
ALTER TABLE inbound_source_counters FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON inbound_source_counters USING (workspace_id = bulkhead_current_workspace()) WITH CHECK (workspace_id = bulkhead_current_workspace());

-- Sources are created and deleted, never edited in place.
GRANT SELECT, INSERT, DELETE ON inbound_sources TO ${app_role};
-- Only the sealed value (re-sealing) and the end of a rotation overlap change.
GRANT SELECT, INSERT, DELETE ON inbound_source_secrets TO ${app_role};
GRANT UPDATE (secret, expires_at) ON inbound_source_secrets TO ${app_role};
-- Replay records are purged when they expire; an expired record's key can be taken again.
GRANT SELECT, INSERT, DELETE ON inbound_replays TO ${app_role};
GRANT UPDATE (expires_at) ON inbound_replays TO ${app_role};
GRANT SELECT, INSERT ON inbound_source_counters TO ${app_role};
GRANT UPDATE (received, rejected, last_received_at, last_rejected_at, last_rejected_reason) ON inbound_source_counters TO ${app_role};
