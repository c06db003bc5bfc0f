/**
 * Connect sessions: a short-lived, single-use capability the platform mints so its end user can
 * link an account on the hosted page without the platform ever handling the secret. The token
 * is shown once and stored as a SHA-256 hash; the page and the OAuth callback find the session by
 * that hash (a named cross-workspace lookup, like API keys), then work inside its workspace.
 *
 * This module owns the session's state machine (no other writes `status`):
 *
 *   pending ──complete──▶ completed   (connection_id set; emits bulkhead.connection.created)
 *      │
 *      └─────fail───────▶ failed      (failure_reason set; emits bulkhead.connection.failed)
 *
 * `expired` is derived on read (pending past expires_at) and never stored, so no job sweeps it and
 * no event is sent for it: the platform knows `expiresAt` from the moment it created the session.
 * Both transitions happen only from a pending, unexpired session, so a replayed or late callback
 * cannot rewrite an outcome. `used_at` is the separate, short claim a credential form submission
 * takes so a double submit cannot create two connections.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { ActionContext } from '../../audit/context.js';
import { workspaceAudit } from '../../audit/store.js';
import type { WithPlatform, WithWorkspace, WorkspaceTx } from '../../db/tenant-tx.js';
import { BulkheadError, notFound } from '../../errors.js';
import { emitOperationalEvent } from '../../events/operational.js';
import { isId, newId, type Runtime } from '../../ids.js';
import type { Branding } from '../../tenancy/branding.js';
import type { Vault } from '../../vault/vault.js';

export const SESSION_TTL_MS = 30 * 60_000;
const TOKEN = /^bk_cs_[A-Za-z0-9_-]{43}$/;

export type SessionStatus = 'pending' | 'completed' | 'expired' | 'failed';

/**
 * Why a session failed: the provider answered the authorization with an error (`provider_error`),
 * the callback's state did not match the authorization in flight (`state_mismatch`), the code
 * exchange was refused (`token_exchange_failed`), or Bulkhead refused the connection itself
 * (`connection_rejected`: limit reached, name taken, client credentials refused).
 */
export type FailureReason = 'provider_error' | 'state_mismatch' | 'token_exchange_failed' | 'connection_rejected';

export interface ConnectSessionRow {
  workspace_id: string;
  id: string;
  allowed_providers: string[] | null;
  connection_name: string | null;
  connection_id: string | null;
  end_user: Record<string, unknown>;
  pkce_verifier: Uint8Array | null;
  oauth_provider: string | null;
  state_nonce: string | null;
  expires_at: Date;
  used_at: Date | null;
  status: 'pending' | 'completed' | 'failed';
  failure_reason: FailureReason | null;
  failure_detail: string | null;
  return_url: string | null;
  created_at: Date;
  finished_at: Date | null;
}

export interface ConnectSessionView {
  readonly id: string;
  readonly status: SessionStatus;
  readonly connectionId: string | null;
  readonly provider: string | null;
  readonly allowedProviders: string[] | null;
  readonly returnUrl: string | null;
  readonly failure: { readonly reason: FailureReason; readonly detail: string } | null;
  readonly expiresAt: string;
  readonly createdAt: string;
  readonly finishedAt: string | null;
}

const COLUMNS =
  'workspace_id, id, allowed_providers, connection_name, connection_id, end_user, pkce_verifier, oauth_provider, state_nonce, expires_at, used_at, status, failure_reason, failure_detail, return_url, created_at, finished_at';
const hashToken = (token: string) => createHash('sha256').update(token, 'utf8').digest('hex');

export interface CreateSessionInput {
  readonly allowedProviders?: string[] | undefined;
  readonly connectionName?: string | undefined;
  /** Re-authorise this existing connection instead of creating one. */
  readonly connectionId?: string | undefined;
  readonly endUser?: Record<string, unknown> | undefined;
  /** Already checked against the return-URL policy (return-url.ts) and normalised. */
  readonly returnUrl?: string | undefined;
}

export const statusOf = (row: Pick<ConnectSessionRow, 'status' | 'expires_at'>, now: Date): SessionStatus =>
  row.status === 'pending' && row.expires_at <= now ? 'expired' : row.status;

/** Where the hosted page sends the end user once the session has an outcome, if the platform asked. */
export function returnTo(row: Pick<ConnectSessionRow, 'id' | 'return_url'>, status: SessionStatus): string | undefined {
  if (row.return_url === null) return undefined;
  const url = new URL(row.return_url);
  url.searchParams.append('session', row.id);
  url.searchParams.append('status', status);
  return url.href;
}

export function createConnectSessions(deps: { withWorkspace: WithWorkspace; withPlatform: WithPlatform; vault: Vault; runtime: Runtime; publicUrl: () => string }) {
  const { withWorkspace, withPlatform, runtime } = deps;

  const view = (row: ConnectSessionRow): ConnectSessionView => ({
    id: row.id,
    status: statusOf(row, runtime.now()),
    connectionId: row.connection_id,
    provider: row.oauth_provider,
    allowedProviders: row.allowed_providers,
    returnUrl: row.return_url,
    failure: row.failure_reason === null ? null : { reason: row.failure_reason, detail: row.failure_detail ?? '' },
    expiresAt: row.expires_at.toISOString(),
    createdAt: row.created_at.toISOString(),
    finishedAt: row.finished_at?.toISOString() ?? null,
  });

  async function find(tx: WorkspaceTx, id: string, lock = false): Promise<ConnectSessionRow> {
    const row = (await tx.query<ConnectSessionRow>(`SELECT ${COLUMNS} FROM connect_sessions WHERE id = $1${lock ? ' FOR UPDATE' : ''}`, [id])).rows[0];
    if (!row) throw new BulkheadError('connect_session_invalid', 'unknown connect session');
    return row;
  }

  /** The session behind a token, whatever its state, with its tenant's branding. */
  async function lookup(token: string): Promise<{ row: ConnectSessionRow; branding: Branding | null }> {
    if (!TOKEN.test(token)) throw new BulkheadError('connect_session_invalid', 'unknown or malformed connect session');
    const found = await withPlatform(async (tx) =>
      (await tx.query<{ workspace_id: string; id: string; branding: Branding | null }>(
        `SELECT cs.workspace_id, cs.id, t.branding FROM connect_sessions cs JOIN workspaces w ON w.id = cs.workspace_id JOIN tenants t ON t.id = w.tenant_id WHERE cs.token_hash = $1`,
        [hashToken(token)],
      )).rows[0],
    );
    if (!found) throw new BulkheadError('connect_session_invalid', 'unknown or malformed connect session');
    return { row: await withWorkspace(found.workspace_id, (tx) => find(tx, found.id)), branding: found.branding };
  }

  return {
    async create(workspaceId: string, ctx: ActionContext, input: CreateSessionInput): Promise<{ id: string; token: string; url: string; expiresAt: string }> {
      const token = `bk_cs_${randomBytes(32).toString('base64url')}`;
      const id = newId('connectSession', runtime);
      const expiresAt = new Date(runtime.now().getTime() + SESSION_TTL_MS);
      await withWorkspace(workspaceId, async (tx) => {
        if (input.connectionId !== undefined) {
          const { rows } = await tx.query('SELECT 1 FROM connections WHERE id = $1', [input.connectionId]);
          if (rows.length === 0) throw new BulkheadError('not_found', 'connection not found');
        }
        await tx.query(
          `INSERT INTO connect_sessions (workspace_id, id, token_hash, allowed_providers, connection_name, connection_id, end_user, expires_at, created_at, return_url)
           VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10)`,
          [workspaceId, id, hashToken(token), input.allowedProviders ?? null, input.connectionName ?? null, input.connectionId ?? null, JSON.stringify(input.endUser ?? {}), expiresAt, runtime.now(), input.returnUrl ?? null],
        );
        await workspaceAudit.append(tx, runtime, { ...ctx, action: 'connect_session.create', target: { type: 'connect_session', id }, outcome: 'success', details: { allowedProviders: input.allowedProviders ?? null, returnUrl: input.returnUrl !== undefined } });
      });
      return { id, token, url: `${deps.publicUrl()}/connect/${token}`, expiresAt: expiresAt.toISOString() };
    },

    /** For the platform: the session's state and outcome. Another workspace's id is not found. */
    view: (workspaceId: string, id: string): Promise<ConnectSessionView> =>
      withWorkspace(workspaceId, async (tx) => {
        const row = isId('connectSession', id) ? (await tx.query<ConnectSessionRow>(`SELECT ${COLUMNS} FROM connect_sessions WHERE id = $1`, [id])).rows[0] : undefined;
        if (!row) throw notFound('connect session');
        return view(row);
      }),

    lookup,

    /** The return URL for the session's current state, if the platform gave one. */
    returnFor: (workspaceId: string, id: string): Promise<string | undefined> =>
      withWorkspace(workspaceId, async (tx) => {
        const row = await find(tx, id);
        return returnTo(row, statusOf(row, runtime.now()));
      }),

    statusOf: (row: ConnectSessionRow) => statusOf(row, runtime.now()),

    /** The live session for a token, or a `connect_session_*` error. */
    async resolve(token: string): Promise<ConnectSessionRow> {
      return check((await lookup(token)).row, runtime.now());
    },

    find,

    check: (row: ConnectSessionRow) => check(row, runtime.now()),

    /** The branding of the tenant a workspace belongs to (pages reached without the token). */
    branding: (workspaceId: string): Promise<Branding | null> =>
      withPlatform(async (tx) => (await tx.query<{ branding: Branding | null }>('SELECT t.branding FROM workspaces w JOIN tenants t ON t.id = w.tenant_id WHERE w.id = $1', [workspaceId])).rows[0]?.branding ?? null),

    /**
     * Takes the session for a credential form submission, so a double submit cannot create two
     * connections. `release` hands it back if the end user can try again (a mistyped key).
     */
    async claim(row: ConnectSessionRow): Promise<void> {
      const claimed = await withWorkspace(row.workspace_id, (tx) =>
        tx.query(`UPDATE connect_sessions SET used_at = $2 WHERE id = $1 AND used_at IS NULL AND status = 'pending' AND expires_at > $2`, [row.id, runtime.now()]),
      );
      if (claimed.rowCount === 0) throw new BulkheadError('connect_session_invalid', 'this connect session was already used');
    },

    async release(row: ConnectSessionRow): Promise<void> {
      await withWorkspace(row.workspace_id, (tx) => tx.query(`UPDATE connect_sessions SET used_at = NULL WHERE id = $1 AND status = 'pending'`, [row.id]));
    },

    /** pending → completed, in the transaction that saved the connection. */
    async complete(tx: WorkspaceTx, id: string, outcome: { connectionId: string; provider: string; reauthorized: boolean }): Promise<void> {
      const now = runtime.now();
      const done = await tx.query(
        `UPDATE connect_sessions SET status = 'completed', used_at = COALESCE(used_at, $2), finished_at = $2, connection_id = $3, oauth_provider = $4, pkce_verifier = NULL, state_nonce = NULL
         WHERE id = $1 AND status = 'pending'`,
        [id, now, outcome.connectionId, outcome.provider],
      );
      if (done.rowCount === 0) throw new BulkheadError('connect_session_invalid', 'this connect session was already used');
      await emitOperationalEvent(tx, deps, {
        type: 'bulkhead.connection.created',
        resource: 'connection',
        resourceId: outcome.connectionId,
        payload: { connectionId: outcome.connectionId, provider: outcome.provider, connectSessionId: id, reauthorized: outcome.reauthorized },
      });
    },

    /**
     * pending → failed, in a transaction of its own (the work that failed has rolled back). A
     * session that already has an outcome, or has expired, is left as it is: returns false.
     */
    async fail(workspaceId: string, id: string, failure: { reason: FailureReason; detail: string; provider?: string | undefined }): Promise<boolean> {
      return withWorkspace(workspaceId, async (tx) => {
        const now = runtime.now();
        const detail = failure.detail.slice(0, 500);
        const failed = await tx.query(
          `UPDATE connect_sessions SET status = 'failed', failure_reason = $3, failure_detail = $4, finished_at = $2, used_at = COALESCE(used_at, $2),
             oauth_provider = COALESCE($5, oauth_provider), pkce_verifier = NULL, state_nonce = NULL
           WHERE id = $1 AND status = 'pending' AND expires_at > $2`,
          [id, now, failure.reason, detail, failure.provider ?? null],
        );
        if (failed.rowCount === 0) return false;
        const row = await find(tx, id);
        await emitOperationalEvent(tx, deps, {
          type: 'bulkhead.connection.failed',
          resource: 'connect_session',
          resourceId: id,
          payload: { connectSessionId: id, provider: row.oauth_provider, reason: failure.reason, detail, connectionId: row.connection_id },
        });
        await workspaceAudit.append(tx, runtime, { actor: { type: 'connect_session', id }, action: 'connect_session.fail', target: { type: 'connect_session', id }, outcome: 'failure', details: { reason: failure.reason } });
        return true;
      });
    },
  };
}

function check(row: ConnectSessionRow, now: Date): ConnectSessionRow {
  if (row.used_at || row.status !== 'pending') throw new BulkheadError('connect_session_invalid', 'this connect session was already used');
  if (row.expires_at <= now) throw new BulkheadError('connect_session_expired', 'this connect session has expired; ask for a new link');
  return row;
}

export type ConnectSessions = ReturnType<typeof createConnectSessions>;
