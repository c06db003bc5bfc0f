/**
 * Turns a presented API key into a principal. The workspace of every request comes from here and
 * nowhere else (never the URL or body).
 *
 * Order of checks: format and checksum (no I/O), then the lookup by HMAC, then revocation,
 * expiry and the client address, each with its own error code.
 *
 * The lookup is one of the named cross-workspace operations: it runs on the owner's pool,
 * because the workspace is what it is finding out. Resolved keys are cached per process for
 * `keyCacheTtlMs`; revocation and rotation in this process evict at once, and every other
 * process evicts when the change's notification arrives (src/cache/invalidation.ts), with the
 * TTL as the bound when one is missed. Expiry and CIDRs are checked on every request, cached or not.
 */
import { BulkheadError } from '../errors.js';
import type { Pool } from '../db/types.js';
import { checkApiKey } from './api-key-format.js';
import { cidrMatcher } from './cidr.js';
import { hashApiKey, sameHash } from './key-hash.js';

export interface Principal {
  readonly keyId: string;
  readonly workspaceId: string;
  readonly tenantId: string;
  readonly environment: string;
  readonly scopes: readonly string[];
  /** The key's own restrictions: keys it mints or rotates may not be less restricted. */
  readonly allowedCidrs: readonly string[];
  readonly expiresAt: Date | null;
  readonly tenantRequestsPerMinute: number | undefined;
  /** The tenant's per-workspace connection limit, when its plan sets one. */
  readonly tenantConnectionsPerWorkspace: number | undefined;
  readonly tenantEventsPerMonth: number | undefined;
  readonly tenantEventPayloadBytes: number | undefined;
}

interface ResolvedKey {
  readonly principal: Principal;
  readonly hash: string;
  readonly expiresAt: Date | null;
  readonly revokedAt: Date | null;
  readonly allows: (ip: string) => boolean;
}

interface KeyRow {
  id: string;
  workspace_id: string;
  key_hash: string;
  scopes: string[];
  allowed_cidrs: string[];
  expires_at: Date | null;
  revoked_at: Date | null;
  tenant_id: string;
  environment: string;
  limits: { requestsPerMinute?: number; connectionsPerWorkspace?: number; eventsPerMonth?: number; eventPayloadBytes?: number };
}

export interface KeyAuthenticator {
  authenticate(key: string, ip: string): Promise<Principal>;
  /** Evicts a key from this process's cache (revocation, rotation). */
  forget(keyId: string): void;
  /** Evicts every key of a workspace (workspace deletion). */
  forgetWorkspace(workspaceId: string): void;
  /** Evicts every key of a tenant (its limits changed). */
  forgetTenant(tenantId: string): void;
  /** Evicts everything (a missed notification is possible). */
  forgetAll(): void;
}

export function createKeyAuthenticator(deps: {
  registry: () => Pool;
  pepper: string;
  cacheTtlMs: number;
  now: () => Date;
  maxCacheEntries?: number;
}): KeyAuthenticator {
  const cache = new Map<string, { key: ResolvedKey; until: number }>();
  const maxEntries = deps.maxCacheEntries ?? 10_000;

  async function lookup(hash: string): Promise<ResolvedKey | undefined> {
    const { rows } = await deps.registry().query<KeyRow>(
      `SELECT k.id, k.workspace_id, k.key_hash, k.scopes, k.allowed_cidrs, k.expires_at, k.revoked_at,
              w.tenant_id, w.environment, t.limits
         FROM api_keys k
         JOIN workspaces w ON w.id = k.workspace_id
         JOIN tenants t ON t.id = w.tenant_id
        WHERE k.key_hash = $1`,
      [hash],
    );
    const row = rows[0];
    if (!row || !sameHash(row.key_hash, hash)) return undefined;
    return {
      hash,
      expiresAt: row.expires_at,
      revokedAt: row.revoked_at,
      allows: cidrMatcher(row.allowed_cidrs),
      principal: Object.freeze({
        keyId: row.id,
        workspaceId: row.workspace_id,
        tenantId: row.tenant_id,
        environment: row.environment,
        scopes: Object.freeze([...row.scopes]),
        allowedCidrs: Object.freeze([...row.allowed_cidrs]),
        expiresAt: row.expires_at,
        tenantRequestsPerMinute: row.limits.requestsPerMinute,
        tenantConnectionsPerWorkspace: row.limits.connectionsPerWorkspace,
        tenantEventsPerMonth: row.limits.eventsPerMonth,
        tenantEventPayloadBytes: row.limits.eventPayloadBytes,
      }),
    };
  }

  async function resolve(hash: string): Promise<ResolvedKey | undefined> {
    const now = Date.now();
    const hit = cache.get(hash);
    if (hit && hit.until > now) return hit.key;
    const key = await lookup(hash);
    if (key && deps.cacheTtlMs > 0) {
      if (cache.size >= maxEntries) {
        const oldest = cache.keys().next();
        if (!oldest.done) cache.delete(oldest.value);
      }
      cache.set(hash, { key, until: now + deps.cacheTtlMs });
    }
    return key;
  }

  return {
    async authenticate(presented, ip) {
      checkApiKey(presented);
      const key = await resolve(hashApiKey(deps.pepper, presented));
      if (!key) throw new BulkheadError('api_key_unknown', 'the API key is not recognised');
      const now = deps.now();
      if (key.revokedAt && key.revokedAt <= now) throw new BulkheadError('api_key_revoked', 'the API key has been revoked');
      if (key.expiresAt && key.expiresAt <= now) throw new BulkheadError('api_key_expired', 'the API key has expired');
      if (!key.allows(ip)) throw new BulkheadError('ip_not_allowed', 'the API key may not be used from this address');
      return key.principal;
    },
    forget(keyId) {
      for (const [hash, entry] of cache) if (entry.key.principal.keyId === keyId) cache.delete(hash);
    },
    forgetWorkspace(workspaceId) {
      for (const [hash, entry] of cache) if (entry.key.principal.workspaceId === workspaceId) cache.delete(hash);
    },
    forgetTenant(tenantId) {
      for (const [hash, entry] of cache) if (entry.key.principal.tenantId === tenantId) cache.delete(hash);
    },
    forgetAll() {
      cache.clear();
    },
  };
}
