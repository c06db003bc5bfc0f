-- Cross-process cache invalidation (src/cache/invalidation.ts). Every change to something a
-- process caches (resolved API keys with their tenant's limits, opened connection credentials)
-- notifies channel bulkhead_invalidate from its own transaction; PostgreSQL delivers it when,
-- and only if, that transaction commits. Triggers rather than application calls, so no writer
-- (a route, the CLI, the refresher, an operator's SQL) can forget to.
-- pg_notify is executable by PUBLIC: these run as whoever writes, owner or application role.

CREATE FUNCTION bulkhead_invalidate_api_key() RETURNS trigger
  LANGUAGE plpgsql SET search_path = pg_catalog
AS $$
BEGIN
  PERFORM pg_notify('bulkhead_invalidate', json_build_object('kind', 'api_key', 'keyId', OLD.id)::text);
  RETURN NULL;
END
$$;

CREATE FUNCTION bulkhead_invalidate_workspace() RETURNS trigger
  LANGUAGE plpgsql SET search_path = pg_catalog
AS $$
BEGIN
  PERFORM pg_notify('bulkhead_invalidate', json_build_object('kind', 'workspace', 'workspaceId', OLD.id)::text);
  RETURN NULL;
END
$$;

CREATE FUNCTION bulkhead_invalidate_tenant() RETURNS trigger
  LANGUAGE plpgsql SET search_path = pg_catalog
AS $$
BEGIN
  PERFORM pg_notify('bulkhead_invalidate', json_build_object('kind', 'tenant', 'tenantId', OLD.id)::text);
  RETURN NULL;
END
$$;

CREATE FUNCTION bulkhead_invalidate_connection() RETURNS trigger
  LANGUAGE plpgsql SET search_path = pg_catalog
AS $$
BEGIN
  PERFORM pg_notify('bulkhead_invalidate', json_build_object('kind', 'connection', 'workspaceId', OLD.workspace_id, 'connectionId', OLD.id)::text);
  RETURN NULL;
END
$$;

-- Revocation, rotation (the old key's expiry moves), any other change, deletion. Not the
-- last-used times every process writes in batches: they change nothing a cache holds.
CREATE TRIGGER api_keys_invalidate_update AFTER UPDATE ON api_keys FOR EACH ROW
  WHEN ((to_jsonb(OLD) - 'last_used_at') IS DISTINCT FROM (to_jsonb(NEW) - 'last_used_at'))
  EXECUTE FUNCTION bulkhead_invalidate_api_key();
CREATE TRIGGER api_keys_invalidate_delete AFTER DELETE ON api_keys FOR EACH ROW
  EXECUTE FUNCTION bulkhead_invalidate_api_key();

-- Deletion (its keys, connections and data keys go with it); a rename changes nothing cached.
CREATE TRIGGER workspaces_invalidate_update AFTER UPDATE ON workspaces FOR EACH ROW
  WHEN ((to_jsonb(OLD) - 'name' - 'updated_at') IS DISTINCT FROM (to_jsonb(NEW) - 'name' - 'updated_at'))
  EXECUTE FUNCTION bulkhead_invalidate_workspace();
CREATE TRIGGER workspaces_invalidate_delete AFTER DELETE ON workspaces FOR EACH ROW
  EXECUTE FUNCTION bulkhead_invalidate_workspace();

-- A cached key carries its tenant's plan limits.
CREATE TRIGGER tenants_invalidate_update AFTER UPDATE ON tenants FOR EACH ROW
  WHEN (OLD.limits IS DISTINCT FROM NEW.limits)
  EXECUTE FUNCTION bulkhead_invalidate_tenant();
CREATE TRIGGER tenants_invalidate_delete AFTER DELETE ON tenants FOR EACH ROW
  EXECUTE FUNCTION bulkhead_invalidate_tenant();

-- Credential, status, settings, deletion. Not the refresher's bookkeeping (leases, failure
-- counts, next attempt), which changes nothing a cache holds and is written often.
CREATE TRIGGER connections_invalidate_update AFTER UPDATE ON connections FOR EACH ROW
  WHEN ((to_jsonb(OLD) - 'refresh_lease_owner' - 'refresh_lease_until' - 'refresh_failures' - 'next_refresh_at' - 'updated_at')
        IS DISTINCT FROM (to_jsonb(NEW) - 'refresh_lease_owner' - 'refresh_lease_until' - 'refresh_failures' - 'next_refresh_at' - 'updated_at'))
  EXECUTE FUNCTION bulkhead_invalidate_connection();
CREATE TRIGGER connections_invalidate_delete AFTER DELETE ON connections FOR EACH ROW
  EXECUTE FUNCTION bulkhead_invalidate_connection();
