/**
 * Connections: a workspace's authenticated link to one provider account.
 *
 * Credentials are write-only: sealed with the workspace key on the way in, and only a masked
 * hint ever comes back out. `use()` is how the relay (and later sandboxed steps) get a usable
 * credential: it opens it, refreshes an expiring OAuth token first, and caches the result in this
 * process for a few seconds. Every lifecycle change is audited in the workspace's chain.
 */
import { randomBytes } from 'node:crypto';
import type { ActionContext } from '../audit/context.js';
import { workspaceAudit } from '../audit/store.js';
import { enforceCountLimit } from '../limits/count-limit.js';
import { onUniqueViolation } from '../db/errors.js';
import type { WithWorkspace, WorkspaceTx } from '../db/tenant-tx.js';
import { BulkheadError, notFound } from '../errors.js';
import { emitOperationalEvent } from '../events/operational.js';
import { idPattern, isId, newId, type Runtime } from '../ids.js';
import { decodeCursor, type Page, toPage } from '../pagination.js';
import type { Vault } from '../vault/vault.js';
import { type ConnectionRow, type ConnectionView, CONNECTION_COLUMNS, connectionView, findConnection, openCredential, sealCredential } from './connection-store.js';
import { type Credential, credentialFromInput, hintFor } from './credentials.js';
import { OAuthError, type TokenClient, type TokenSet } from './oauth/token-client.js';
import type { Provider, ProviderService } from './providers.js';

/** Refresh an access token this long before it expires. */
export const REFRESH_MARGIN_MS = 60_000;
const LEASE_MS = 30_000;
const BACKOFF_MS = [30_000, 120_000, 600_000, 1_800_000, 3_600_000];

export interface UsableConnection {
  readonly connection: ConnectionView;
  readonly provider: Provider;
  readonly credential: Credential;
}

export interface ConnectionService {
  create(workspaceId: string, ctx: ActionContext, input: { provider: string; name: string; credentials?: Record<string, unknown> | undefined; metadata?: Record<string, unknown> | undefined }, limits: { maxConnections: number }): Promise<ConnectionView>;
  /** Creates (or re-authorises) an OAuth connection from a completed code flow. */
  saveOAuth(tx: WorkspaceTx, ctx: ActionContext, input: { provider: Provider; name: string; tokens: TokenSet; existingId?: string | undefined }, limits: { maxConnections: number }): Promise<ConnectionView>;
  list(workspaceId: string, options: { cursor?: string | undefined; limit: number; provider?: string | undefined; status?: string | undefined }): Promise<Page<ConnectionView>>;
  get(workspaceId: string, id: string): Promise<ConnectionView>;
  update(workspaceId: string, ctx: ActionContext, id: string, patch: { name?: string | undefined; metadata?: Record<string, unknown> | undefined; credentials?: Record<string, unknown> | undefined }): Promise<ConnectionView>;
  remove(workspaceId: string, ctx: ActionContext, id: string): Promise<{ revokedAtProvider: boolean }>;
  /** A credential ready to inject: refreshed if it expires within the margin. */
  use(workspaceId: string, id: string): Promise<UsableConnection>;
  /** Refreshes an OAuth connection now (single flight across this process and, via a lease, across processes). */
  refresh(workspaceId: string, id: string, options?: { force?: boolean }): Promise<void>;
  forget(workspaceId: string, id?: string): void;
  /** Drops every cached credential (a missed invalidation is possible). */
  forgetAll(): void;
}

export function createConnectionService(deps: {
  withWorkspace: WithWorkspace;
  vault: Vault;
  providers: ProviderService;
  tokens: TokenClient;
  runtime: Runtime;
  cacheTtlMs: number;
}): ConnectionService {
  const { withWorkspace, vault, providers, tokens, runtime } = deps;
  const cache = new Map<string, { value: UsableConnection; until: number }>();
  const inflight = new Map<string, Promise<void>>();
  const cacheKey = (ws: string, id: string) => `${ws}:${id}`;

  const forget = (workspaceId: string, id?: string) => {
    if (id !== undefined) {
      cache.delete(cacheKey(workspaceId, id));
      return;
    }
    for (const key of cache.keys()) if (key.startsWith(`${workspaceId}:`)) cache.delete(key);
  };

  async function mustFind(tx: WorkspaceTx, id: string, lock = false): Promise<ConnectionRow> {
    const row = isId('connection', id) ? await findConnection(tx, id, { lock }) : undefined;
    if (!row) throw notFound('connection');
    return row;
  }

  const checkLimit = (tx: WorkspaceTx, max: number) => enforceCountLimit(tx, 'connections', max, 'connection_limit_exceeded');

  const nameTaken = (name: string) => onUniqueViolation('name_taken', `a connection named "${name}" already exists`);

  async function oauthClient(provider: Provider) {
    if (!provider.oauthApp) throw new BulkheadError('provider_not_configured', `provider ${provider.key} has no OAuth app configured`);
    return { clientId: provider.oauthApp.clientId, clientSecret: await providers.clientSecret(provider.key) };
  }

  const oauthCredential = (t: TokenSet): Extract<Credential, { type: 'oauth2' }> => ({ type: 'oauth2', accessToken: t.accessToken, refreshToken: t.refreshToken, tokenType: t.tokenType, expiresAt: t.expiresAt, scope: t.scope });
  const nextRefresh = (expiresAt: string | undefined) => (expiresAt ? new Date(Date.parse(expiresAt) - REFRESH_MARGIN_MS) : null);

  async function insert(tx: WorkspaceTx, ctx: ActionContext, input: { id: string; provider: Provider; name: string; credential: Credential | undefined; metadata: Record<string, unknown>; scopes: readonly string[] }): Promise<ConnectionRow> {
    const now = runtime.now();
    const sealed = input.credential ? await sealCredential(vault, tx, input.id, input.credential) : null;
    const expiresAt = input.credential?.type === 'oauth2' ? input.credential.expiresAt : undefined;
    const { rows } = await tx
      .query<ConnectionRow>(
        `INSERT INTO connections (workspace_id, id, provider_key, name, auth_type, status, credentials, hint, scopes, metadata, expires_at, next_refresh_at, last_refreshed_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8, $9::jsonb, $10, $11, $12, $13, $13) RETURNING ${CONNECTION_COLUMNS}`,
        [tx.workspaceId, input.id, input.provider.key, input.name, input.provider.authType, sealed, hintFor(input.credential), input.scopes, JSON.stringify(input.metadata), expiresAt ?? null, nextRefresh(expiresAt), input.credential?.type === 'oauth2' ? now : null, now],
      )
      .catch(nameTaken(input.name));
    await workspaceAudit.append(tx, runtime, { ...ctx, action: 'connection.create', target: { type: 'connection', id: input.id }, outcome: 'success', details: { provider: input.provider.key, authType: input.provider.authType } });
    return rows[0] as ConnectionRow;
  }

  /** Marks a connection as needing re-authorisation, with the operational event and audit entry. */
  async function needsReauth(tx: WorkspaceTx, row: ConnectionRow, reason: string): Promise<void> {
    await tx.query(
      `UPDATE connections SET status = 'needs_reauth', status_reason = $2, next_refresh_at = NULL, refresh_lease_owner = NULL, refresh_lease_until = NULL, updated_at = $3 WHERE id = $1`,
      [row.id, reason, runtime.now()],
    );
    await emitOperationalEvent(tx, deps, { type: 'bulkhead.connection.needs_reauth', resource: 'connection', resourceId: row.id, payload: { connectionId: row.id, provider: row.provider_key, name: row.name, reason } });
    await workspaceAudit.append(tx, runtime, { actor: { type: 'system', id: 'oauth-refresher' }, action: 'connection.needs_reauth', target: { type: 'connection', id: row.id }, outcome: 'success', details: { reason } });
  }

  async function refreshOnce(workspaceId: string, id: string, force: boolean): Promise<void> {
    const owner = randomBytes(12).toString('hex');
    for (let wait = 0; ; wait++) {
      // Step 1: take the lease, unless the token is fresh (someone else refreshed) or another holds it.
      const step = await withWorkspace(workspaceId, async (tx) => {
        const row = await mustFind(tx, id, true);
        if (row.status !== 'active') throw new BulkheadError('connection_not_active', `connection is ${row.status}`, { details: { connectionStatus: row.status } });
        const now = runtime.now().getTime();
        const fresh = !force && (!row.expires_at || row.expires_at.getTime() - now > REFRESH_MARGIN_MS);
        if (fresh || (force && wait > 0 && row.last_refreshed_at && now - row.last_refreshed_at.getTime() < LEASE_MS)) return { kind: 'fresh' as const };
        if (row.refresh_lease_until && row.refresh_lease_until.getTime() > now && row.refresh_lease_owner !== owner) return { kind: 'wait' as const };
        await tx.query('UPDATE connections SET refresh_lease_owner = $2, refresh_lease_until = $3 WHERE id = $1', [id, owner, new Date(now + LEASE_MS)]);
        return { kind: 'refresh' as const, row, credential: await openCredential(vault, tx, row) };
      });
      if (step.kind === 'fresh') return;
      if (step.kind === 'wait') {
        if (wait > LEASE_MS / 100) throw new BulkheadError('oauth_refresh_failed', 'timed out waiting for another refresh of this connection');
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      // Step 2: call the token endpoint with no transaction open.
      const provider = await providers.get(step.row.provider_key);
      let outcome: { tokens: TokenSet } | { error: OAuthError };
      try {
        const client = await oauthClient(provider);
        outcome = {
          tokens:
            provider.authType === 'oauth2_client_credentials'
              ? await tokens.clientCredentials(provider, client, provider.oauthApp?.scopes ?? [])
              : step.credential?.type === 'oauth2' && step.credential.refreshToken
                ? await tokens.refresh(provider, client, step.credential.refreshToken)
                : (() => { throw new OAuthError('permanent', 'no_refresh_token', 'the connection has no refresh token'); })(),
        };
      } catch (error) {
        if (!(error instanceof OAuthError)) {
          await withWorkspace(workspaceId, (tx) => tx.query('UPDATE connections SET refresh_lease_owner = NULL, refresh_lease_until = NULL WHERE id = $1 AND refresh_lease_owner = $2', [id, owner]));
          throw error;
        }
        outcome = { error };
      }
      // Step 3: record the result and release the lease.
      await withWorkspace(workspaceId, async (tx) => {
        const row = await mustFind(tx, id, true);
        const now = runtime.now();
        if ('tokens' in outcome) {
          const credential = oauthCredential(outcome.tokens);
          await tx.query(
            `UPDATE connections SET credentials = $2, expires_at = $3, next_refresh_at = $4, last_refreshed_at = $5, refresh_failures = 0, status_reason = NULL,
               refresh_lease_owner = NULL, refresh_lease_until = NULL, updated_at = $5 WHERE id = $1`,
            [id, await sealCredential(vault, tx, id, credential), credential.expiresAt ?? null, nextRefresh(credential.expiresAt), now],
          );
        } else if (outcome.error.kind === 'permanent') {
          await needsReauth(tx, row, outcome.error.oauthError ?? 'refresh_refused');
        } else {
          const failures = row.refresh_failures + 1;
          const delay = BACKOFF_MS[Math.min(failures - 1, BACKOFF_MS.length - 1)] ?? 3_600_000;
          await tx.query(
            'UPDATE connections SET refresh_failures = $2, next_refresh_at = $3, refresh_lease_owner = NULL, refresh_lease_until = NULL, updated_at = $4 WHERE id = $1',
            [id, failures, new Date(now.getTime() + delay), now],
          );
          if (failures === 3) await emitOperationalEvent(tx, deps, { type: 'bulkhead.connection.refresh_failing', resource: 'connection', resourceId: id, payload: { connectionId: id, provider: row.provider_key, failures } });
        }
      });
      forget(workspaceId, id);
      if ('error' in outcome) {
        throw outcome.error.kind === 'permanent'
          ? new BulkheadError('connection_not_active', 'the provider refused the refresh; the connection needs re-authorisation', { details: { connectionStatus: 'needs_reauth' } })
          : new BulkheadError('oauth_refresh_failed', 'the provider\'s token endpoint is unavailable; will retry');
      }
      return;
    }
  }

  const refresh = (workspaceId: string, id: string, options: { force?: boolean } = {}): Promise<void> => {
    const key = cacheKey(workspaceId, id);
    const running = inflight.get(key);
    if (running) return running;
    const started = refreshOnce(workspaceId, id, options.force ?? false).finally(() => inflight.delete(key));
    inflight.set(key, started);
    return started;
  };

  async function load(workspaceId: string, id: string): Promise<{ row: ConnectionRow; credential: Credential | undefined }> {
    return withWorkspace(workspaceId, async (tx) => {
      const row = await mustFind(tx, id);
      return { row, credential: await openCredential(vault, tx, row) };
    });
  }

  return {
    async create(workspaceId, ctx, input, limits) {
      const provider = await providers.get(input.provider).catch(() => {
        throw new BulkheadError('provider_invalid', `unknown provider "${input.provider}"`);
      });
      let credential = credentialFromInput(provider, input.credentials);
      let scopes: readonly string[] = [];
      if (provider.authType === 'oauth2_client_credentials') {
        // Obtain the first token now, so a misconfigured app fails here and not on first use.
        try {
          const tokenSet = await tokens.clientCredentials(provider, await oauthClient(provider), provider.oauthApp?.scopes ?? []);
          credential = oauthCredential(tokenSet);
          scopes = tokenSet.scope?.split(' ') ?? provider.oauthApp?.scopes ?? [];
        } catch (error) {
          if (error instanceof OAuthError) throw new BulkheadError('oauth_exchange_failed', `the token endpoint refused the client credentials (${error.oauthError ?? 'error'})`);
          throw error;
        }
      }
      return withWorkspace(workspaceId, async (tx) => {
        await checkLimit(tx, limits.maxConnections);
        const row = await insert(tx, ctx, { id: newId('connection', runtime), provider, name: input.name, credential, metadata: input.metadata ?? {}, scopes });
        return connectionView(row);
      });
    },

    async saveOAuth(tx, ctx, input, limits) {
      const credential = oauthCredential(input.tokens);
      const scopes = input.tokens.scope?.split(/[ ,]+/).filter((s) => s !== '') ?? input.provider.oauthApp?.scopes ?? [];
      if (input.existingId !== undefined) {
        const row = await mustFind(tx, input.existingId, true);
        if (row.provider_key !== input.provider.key) throw new BulkheadError('conflict', 'the connection belongs to another provider');
        const now = runtime.now();
        const { rows } = await tx.query<ConnectionRow>(
          `UPDATE connections SET credentials = $2, status = 'active', status_reason = NULL, scopes = $3, expires_at = $4, next_refresh_at = $5, last_refreshed_at = $6,
             refresh_failures = 0, updated_at = $6 WHERE id = $1 RETURNING ${CONNECTION_COLUMNS}`,
          [row.id, await sealCredential(vault, tx, row.id, credential), scopes, credential.expiresAt ?? null, nextRefresh(credential.expiresAt), now],
        );
        await workspaceAudit.append(tx, runtime, { ...ctx, action: 'connection.reauthorize', target: { type: 'connection', id: row.id }, outcome: 'success', details: { provider: input.provider.key } });
        forget(tx.workspaceId, row.id);
        return connectionView(rows[0] as ConnectionRow);
      }
      await checkLimit(tx, limits.maxConnections);
      return connectionView(await insert(tx, ctx, { id: newId('connection', runtime), provider: input.provider, name: input.name, credential, metadata: {}, scopes }));
    },

    list: (workspaceId, { cursor, limit, provider, status }) =>
      withWorkspace(workspaceId, async (tx) => {
        const after = decodeCursor(cursor, new RegExp(idPattern('connection')));
        const { rows } = await tx.query<ConnectionRow>(
          `SELECT ${CONNECTION_COLUMNS} FROM connections WHERE ($1::text IS NULL OR id > $1) AND ($2::text IS NULL OR provider_key = $2) AND ($3::text IS NULL OR status = $3)
           ORDER BY id LIMIT $4`,
          [after ?? null, provider ?? null, status ?? null, limit + 1],
        );
        return toPage(rows, limit, (r) => r.id, connectionView);
      }),

    get: (workspaceId, id) => withWorkspace(workspaceId, async (tx) => connectionView(await mustFind(tx, id))),

    async update(workspaceId, ctx, id, patch) {
      const existing = await withWorkspace(workspaceId, (tx) => mustFind(tx, id));
      const provider = await providers.get(existing.provider_key);
      const credential = patch.credentials === undefined ? undefined : credentialFromInput(provider, patch.credentials);
      try {
        return await withWorkspace(workspaceId, async (tx) => {
          const row = await mustFind(tx, id, true);
          const now = runtime.now();
          const sealed = credential ? await sealCredential(vault, tx, id, credential) : null;
          const { rows } = await tx
            .query<ConnectionRow>(
              `UPDATE connections SET name = $2, metadata = $3::jsonb, credentials = COALESCE($4, credentials), hint = CASE WHEN $4::bytea IS NULL THEN hint ELSE $5 END,
                 status = CASE WHEN $4::bytea IS NULL THEN status ELSE 'active' END, status_reason = CASE WHEN $4::bytea IS NULL THEN status_reason ELSE NULL END,
                 expires_at = CASE WHEN $4::bytea IS NULL THEN expires_at ELSE $6 END, updated_at = $7
               WHERE id = $1 RETURNING ${CONNECTION_COLUMNS}`,
              [id, patch.name ?? row.name, JSON.stringify(patch.metadata ?? row.metadata), sealed, hintFor(credential), credential?.type === 'oauth2' ? credential.expiresAt ?? null : null, now],
            )
            .catch(nameTaken(patch.name ?? row.name));
          const fields = Object.keys(patch).sort();
          await workspaceAudit.append(tx, runtime, { ...ctx, action: credential ? 'connection.credentials.replace' : 'connection.update', target: { type: 'connection', id }, outcome: 'success', details: { fields } });
          return connectionView(rows[0] as ConnectionRow);
        });
      } finally {
        forget(workspaceId, id);
      }
    },

    async remove(workspaceId, ctx, id) {
      const { row, credential } = await load(workspaceId, id);
      const provider = await providers.get(row.provider_key).catch(() => undefined);
      let revokedAtProvider = false;
      if (provider?.oauth2?.revokeUrl && credential?.type === 'oauth2' && row.status !== 'revoked') {
        try {
          const client = await oauthClient(provider);
          // Revoking the refresh token ends the whole grant (RFC 7009 §2.1); the access token otherwise.
          revokedAtProvider = credential.refreshToken
            ? await tokens.revoke(provider, client, credential.refreshToken, 'refresh_token')
            : await tokens.revoke(provider, client, credential.accessToken, 'access_token');
        } catch {
          revokedAtProvider = false;
        }
      }
      await withWorkspace(workspaceId, async (tx) => {
        await mustFind(tx, id, true);
        await tx.query('DELETE FROM connections WHERE id = $1', [id]);
        await workspaceAudit.append(tx, runtime, { ...ctx, action: 'connection.delete', target: { type: 'connection', id }, outcome: 'success', details: { provider: row.provider_key, revokedAtProvider } });
      });
      forget(workspaceId, id);
      return { revokedAtProvider };
    },

    async use(workspaceId, id) {
      const key = cacheKey(workspaceId, id);
      const now = runtime.now().getTime();
      const hit = cache.get(key);
      if (hit && hit.until > now) return hit.value;
      let { row, credential } = await load(workspaceId, id);
      if (row.status !== 'active') throw new BulkheadError('connection_not_active', `connection is ${row.status}`, { details: { connectionStatus: row.status } });
      const expiring = row.expires_at !== null && row.expires_at.getTime() - now <= REFRESH_MARGIN_MS;
      if (expiring || (!credential && row.auth_type === 'oauth2_client_credentials')) {
        await refresh(workspaceId, id);
        ({ row, credential } = await load(workspaceId, id));
      }
      if (!credential) throw new BulkheadError('connection_not_active', 'connection has no credential', { details: { connectionStatus: row.status } });
      const value: UsableConnection = { connection: connectionView(row), provider: await providers.get(row.provider_key), credential };
      // Cache only while the token stays comfortably valid.
      const until = Math.min(now + deps.cacheTtlMs, row.expires_at ? row.expires_at.getTime() - REFRESH_MARGIN_MS : Infinity);
      if (deps.cacheTtlMs > 0 && until > now) cache.set(key, { value, until });
      return value;
    },

    refresh,
    forget,
    forgetAll: () => {
      cache.clear();
    },
  };
}
