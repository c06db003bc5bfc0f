-- Foundation: platform registry, workspace isolation, API keys and the audit chains.
-- ${app_role} is the application role (BULKHEAD_DB_APP_ROLE); the runner creates it beforehand.

-- The workspace of the current tenant transaction. Raises instead of returning NULL or '', so a
-- query that somehow runs without context fails loudly rather than seeing nothing (or everything).
CREATE FUNCTION bulkhead_current_workspace() RETURNS text
  LANGUAGE plpgsql STABLE PARALLEL SAFE
  SET search_path = pg_catalog
AS $$
DECLARE
  ws text := current_setting('bulkhead.workspace_id', true);
BEGIN
  IF ws IS NULL OR ws = '' THEN
    RAISE EXCEPTION 'no workspace context: tenant queries must run inside withWorkspace'
      USING ERRCODE = 'BK001';
  END IF;
  RETURN ws;
END
$$;

-- Platform registry (owner only; the application role has no privilege on these tables).
CREATE TABLE tenants (
  id              text PRIMARY KEY CHECK (id ~ '^ten_[0-9a-z]{26}$'),
  name            text NOT NULL,
  slug            text NOT NULL UNIQUE,
  region          text NOT NULL,
  isolation_tier  text NOT NULL,
  limits          jsonb NOT NULL DEFAULT '{}',
  created_at      timestamptz NOT NULL,
  updated_at      timestamptz NOT NULL
);

CREATE TABLE workspaces (
  id              text PRIMARY KEY CHECK (id ~ '^ws_[0-9a-z]{26}$'),
  tenant_id       text NOT NULL REFERENCES tenants (id),
  name            text NOT NULL,
  environment     text NOT NULL,
  placement       text NOT NULL DEFAULT 'shared',
  created_at      timestamptz NOT NULL,
  updated_at      timestamptz NOT NULL,
  UNIQUE (tenant_id, name)
);
CREATE INDEX workspaces_tenant ON workspaces (tenant_id, id);

CREATE TABLE platform_audit_log (
  seq          bigint PRIMARY KEY,
  id           text NOT NULL UNIQUE,
  occurred_at  timestamptz NOT NULL,
  actor_type   text NOT NULL,
  actor_id     text NOT NULL,
  action       text NOT NULL,
  target_type  text,
  target_id    text,
  outcome      text NOT NULL,
  request_id   text,
  ip           text,
  details      jsonb NOT NULL,
  prev_hash    text NOT NULL,
  hash         text NOT NULL
);

CREATE TABLE platform_audit_head (
  singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  seq        bigint NOT NULL,
  hash       text NOT NULL
);

-- Workspace data. Every table: workspace_id first in every key, RLS enabled and forced.
CREATE TABLE api_keys (
  workspace_id   text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
  id             text NOT NULL,
  name           text NOT NULL,
  prefix         text NOT NULL,
  key_hash       text NOT NULL,
  scopes         text[] NOT NULL,
  allowed_cidrs  text[] NOT NULL DEFAULT '{}',
  expires_at     timestamptz,
  revoked_at     timestamptz,
  last_used_at   timestamptz,
  rotated_from   text,
  created_by     text NOT NULL,
  created_at     timestamptz NOT NULL,
  PRIMARY KEY (workspace_id, id),
  UNIQUE (workspace_id, key_hash)
);
-- Authentication looks a key up by its hash before it knows the workspace (owner, see identity/).
CREATE INDEX api_keys_by_hash ON api_keys (key_hash);

CREATE TABLE audit_log (
  workspace_id  text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
  seq           bigint NOT NULL,
  id            text NOT NULL,
  occurred_at   timestamptz NOT NULL,
  actor_type    text NOT NULL,
  actor_id      text NOT NULL,
  action        text NOT NULL,
  target_type   text,
  target_id     text,
  outcome       text NOT NULL,
  request_id    text,
  ip            text,
  details       jsonb NOT NULL,
  prev_hash     text NOT NULL,
  hash          text NOT NULL,
  PRIMARY KEY (workspace_id, seq),
  UNIQUE (workspace_id, id)
);

-- The head of each workspace's chain: the row appends lock to serialise, and the anchor that
-- lets verification notice entries removed from the end.
CREATE TABLE audit_chain_heads (
  workspace_id  text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
  seq           bigint NOT NULL,
  hash          text NOT NULL,
  PRIMARY KEY (workspace_id)
);

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON api_keys
  USING (workspace_id = bulkhead_current_workspace())
  WITH CHECK (workspace_id = bulkhead_current_workspace());

ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON audit_log
  USING (workspace_id = bulkhead_current_workspace())
  WITH CHECK (workspace_id = bulkhead_current_workspace());

ALTER TABLE audit_chain_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_chain_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON audit_chain_heads
  USING (workspace_id = bulkhead_current_workspace())
  WITH CHECK (workspace_id = bulkhead_current_workspace());

-- The application role: exactly what tenant work needs. No DELETE on keys (revocation is a
-- flag) and, by design, neither UPDATE nor DELETE on the audit log.
GRANT SELECT, INSERT, UPDATE ON api_keys TO ${app_role};
GRANT SELECT, INSERT ON audit_log TO ${app_role};
GRANT SELECT, INSERT, UPDATE ON audit_chain_heads TO ${app_role};
