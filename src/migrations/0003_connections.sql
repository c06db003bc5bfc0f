-- Providers, connections, connect sessions, the relay's request log and operational events.

-- Custom providers and OAuth app settings (platform level, owner only). Catalog providers ship
-- with the build; a row here with a catalog key holds that provider's OAuth app settings.
CREATE TABLE providers (
  key             text PRIMARY KEY CHECK (key ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
  source          text NOT NULL CHECK (source IN ('catalog', 'custom')),
  definition      jsonb NOT NULL,
  -- OAuth client secret, sealed with the platform key (table providers, row = key).
  client_secret   bytea,
  created_at      timestamptz NOT NULL,
  updated_at      timestamptz NOT NULL
);

CREATE TABLE connections (
  workspace_id       text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
  id                 text NOT NULL,
  provider_key       text NOT NULL,
  name               text NOT NULL,
  auth_type          text NOT NULL,
  status             text NOT NULL CHECK (status IN ('active', 'needs_reauth', 'revoked', 'error')),
  status_reason      text,
  -- Sealed JSON of the credential (api key, basic pair, or OAuth tokens); never returned.
  credentials        bytea,
  hint               text,
  scopes             text[] NOT NULL DEFAULT '{}',
  metadata           jsonb NOT NULL DEFAULT '{}',
  expires_at         timestamptz,
  refresh_failures   integer NOT NULL DEFAULT 0,
  next_refresh_at    timestamptz,
  last_refreshed_at  timestamptz,
  -- A refresh in flight somewhere: others wait for it instead of calling the token endpoint too.
  refresh_lease_owner text,
  refresh_lease_until timestamptz,
  created_at         timestamptz NOT NULL,
  updated_at         timestamptz NOT NULL,
  PRIMARY KEY (workspace_id, id),
  UNIQUE (workspace_id, name)
);
-- The background refresher finds connections due for refresh across workspaces (owner, named).
CREATE INDEX connections_refresh_due ON connections (next_refresh_at) WHERE next_refresh_at IS NOT NULL AND status = 'active';

CREATE TABLE connect_sessions (
  workspace_id       text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
  id                 text NOT NULL,
  token_hash         text NOT NULL,
  allowed_providers  text[],
  connection_name    text,
  end_user           jsonb NOT NULL DEFAULT '{}',
  -- PKCE verifier while an OAuth redirect is in flight, sealed (table connect_sessions, row = id).
  pkce_verifier      bytea,
  oauth_provider     text,
  state_nonce        text,
  expires_at         timestamptz NOT NULL,
  used_at            timestamptz,
  connection_id      text,
  created_at         timestamptz NOT NULL,
  PRIMARY KEY (workspace_id, id),
  UNIQUE (workspace_id, token_hash)
);
-- The hosted page and the OAuth callback find a session by its token before knowing the workspace.
CREATE INDEX connect_sessions_by_token ON connect_sessions (token_hash);

CREATE TABLE relay_log (
  workspace_id   text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
  id             text NOT NULL,
  connection_id  text NOT NULL,
  method         text NOT NULL,
  host           text NOT NULL,
  path_template  text NOT NULL,
  status         integer,
  outcome        text NOT NULL,
  duration_ms    integer NOT NULL,
  request_bytes  bigint NOT NULL,
  response_bytes bigint NOT NULL,
  attempts       integer NOT NULL,
  occurred_at    timestamptz NOT NULL,
  PRIMARY KEY (workspace_id, id)
);

-- Operational events raised by Bulkhead itself (a connection needing re-authorisation, ...).
-- The event engine turns them into deliverable events; until then they are listed here.
CREATE TABLE operational_events (
  workspace_id   text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
  id             text NOT NULL,
  type           text NOT NULL,
  resource       text,
  resource_id    text,
  payload        jsonb NOT NULL,
  occurred_at    timestamptz NOT NULL,
  PRIMARY KEY (workspace_id, id)
);

ALTER TABLE connections ENABLE ROW LEVEL SECURITY;
ALTER TABLE connections FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON connections
  USING (workspace_id = bulkhead_current_workspace())
  WITH CHECK (workspace_id = bulkhead_current_workspace());

ALTER TABLE connect_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE connect_sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON connect_sessions
  USING (workspace_id = bulkhead_current_workspace())
  WITH CHECK (workspace_id = bulkhead_current_workspace());

ALTER TABLE relay_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE relay_log FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON relay_log
  USING (workspace_id = bulkhead_current_workspace())
  WITH CHECK (workspace_id = bulkhead_current_workspace());

ALTER TABLE operational_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE operational_events FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON operational_events
  USING (workspace_id = bulkhead_current_workspace())
  WITH CHECK (workspace_id = bulkhead_current_workspace());

GRANT SELECT, INSERT, UPDATE, DELETE ON connections TO ${app_role};
GRANT SELECT, INSERT, UPDATE ON connect_sessions TO ${app_role};
GRANT SELECT, INSERT ON relay_log TO ${app_role};
GRANT SELECT, INSERT ON operational_events TO ${app_role};
