-- Vault: one data-encryption key (DEK) per workspace, in versions, stored only wrapped by a root
-- key version. The unwrapped key never touches the database.

-- The key ring's state: which DEK version seals new data, and the lowest version still allowed
-- to open (ratcheted up after a workspace-key rotation has re-sealed everything).
CREATE TABLE workspace_key_rings (
  workspace_id         text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
  current_version      integer NOT NULL CHECK (current_version >= 1),
  min_decrypt_version  integer NOT NULL CHECK (min_decrypt_version >= 1),
  updated_at           timestamptz NOT NULL,
  PRIMARY KEY (workspace_id),
  CHECK (min_decrypt_version <= current_version)
);

CREATE TABLE workspace_keys (
  workspace_id   text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
  version        integer NOT NULL CHECK (version >= 1),
  root_provider  text NOT NULL,
  root_version   integer NOT NULL,
  -- AES-256-GCM(root key, DEK): nonce || ciphertext || tag, associated data binds the workspace,
  -- the DEK version and the root version.
  wrapped        bytea NOT NULL,
  created_at     timestamptz NOT NULL,
  rewrapped_at   timestamptz,
  PRIMARY KEY (workspace_id, version)
);

ALTER TABLE workspace_key_rings ENABLE ROW LEVEL SECURITY;
ALTER TABLE workspace_key_rings FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON workspace_key_rings
  USING (workspace_id = bulkhead_current_workspace())
  WITH CHECK (workspace_id = bulkhead_current_workspace());

ALTER TABLE workspace_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE workspace_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON workspace_keys
  USING (workspace_id = bulkhead_current_workspace())
  WITH CHECK (workspace_id = bulkhead_current_workspace());

-- Tenant work reads its own wrapped keys and may add a version (workspace-key rotation). It can
-- neither change a wrapped key (root rotation is the owner's job) nor delete one (only workspace
-- deletion, as the owner, destroys keys).
GRANT SELECT, INSERT ON workspace_keys TO ${app_role};
GRANT SELECT, INSERT, UPDATE ON workspace_key_rings TO ${app_role};

-- The platform's own key ring (provider OAuth client secrets and other platform credentials).
-- Owner only: the application role has no privilege on these tables.
CREATE TABLE platform_key_ring (
  singleton            boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  current_version      integer NOT NULL CHECK (current_version >= 1),
  min_decrypt_version  integer NOT NULL CHECK (min_decrypt_version >= 1),
  updated_at           timestamptz NOT NULL,
  CHECK (min_decrypt_version <= current_version)
);

CREATE TABLE platform_keys (
  version        integer PRIMARY KEY CHECK (version >= 1),
  root_provider  text NOT NULL,
  root_version   integer NOT NULL,
  wrapped        bytea NOT NULL,
  created_at     timestamptz NOT NULL,
  rewrapped_at   timestamptz
);
