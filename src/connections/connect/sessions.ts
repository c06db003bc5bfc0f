/**
 * Connect sessions: a short-lived, single-use capability the platform mints so its end user can
 * link an account on the hosted page without the platform ever handling the secret. The token
 * is shown once and stored as a SHA-256 hash; the page and the OAuth callback find the session by
 * that hash (a named cross-workspace lookup, like API keys), then work inside its workspace.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { ActionContext } from '../../audit/context.js';
import { workspaceAudit } from '../../audit/store.js';
import type { WithPlatform, WithWorkspace, WorkspaceTx } from '../../db/tenant-tx.js';
import { BulkheadError } from '../../errors.js';
import { newId, type Runtime } from '../../ids.js';

export const SESSION_TTL_MS = 30 * 60_000;
const TOKEN = /^bk_cs_[A-Za-z0-9_-]{43}$/;

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
}

const COLUMNS = 'workspace_id, id, allowed_providers, connection_name, connection_id, end_user, pkce_verifier, oauth_provider, state_nonce, expires_at, used_at';
const hashToken = (token: string) => createHash('sha256').update(token, 'utf8').digest('hex');

export interface CreateSessionInput {
  readonly allowedProviders?: string[] | undefined;
  readonly connectionName?: string | undefined;
  /** Re-authorise this existing connection instead of creating one. */
  readonly connectionId?: string | undefined;
  readonly endUser?: Record<string, unknown> | undefined;
}

export function createConnectSessions(deps: { withWorkspace: WithWorkspace; withPlatform: WithPlatform; runtime: Runtime; publicUrl: () => string }) {
  const { withWorkspace, withPlatform, runtime } = deps;

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
          `INSERT INTO connect_sessions (workspace_id, id, token_hash, allowed_providers, connection_name, connection_id, end_user, expires_at, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9)`,
          [workspaceId, id, hashToken(token), input.allowedProviders ?? null, input.connectionName ?? null, input.connectionId ?? null, JSON.stringify(input.endUser ?? {}), expiresAt, runtime.now()],
        );
        await workspaceAudit.append(tx, runtime, { ...ctx, action: 'connect_session.create', target: { type: 'connect_session', id }, outcome: 'success', details: { allowedProviders: input.allowedProviders ?? null } });
      });
      return { id, token, url: `${deps.publicUrl()}/connect/${token}`, expiresAt: expiresAt.toISOString() };
    },

    /** The live session for a token, or a `connect_session_*` error. */
    async resolve(token: string): Promise<ConnectSessionRow> {
      if (!TOKEN.test(token)) throw new BulkheadError('connect_session_invalid', 'unknown or malformed connect session');
      const found = await withPlatform(async (tx) => (await tx.query<{ workspace_id: string; id: string }>('SELECT workspace_id, id FROM connect_sessions WHERE token_hash = $1', [hashToken(token)])).rows[0]);
      if (!found) throw new BulkheadError('connect_session_invalid', 'unknown or malformed connect session');
      const row = await withWorkspace(found.workspace_id, (tx) => this.find(tx, found.id));
      return check(row, runtime.now());
    },

    async find(tx: WorkspaceTx, id: string, lock = false): Promise<ConnectSessionRow> {
      const row = (await tx.query<ConnectSessionRow>(`SELECT ${COLUMNS} FROM connect_sessions WHERE id = $1${lock ? ' FOR UPDATE' : ''}`, [id])).rows[0];
      if (!row) throw new BulkheadError('connect_session_invalid', 'unknown connect session');
      return row;
    },

    check: (row: ConnectSessionRow) => check(row, runtime.now()),

    /**
     * Takes the session for a credential form submission, so a double submit cannot create two
     * connections. `release` hands it back if creating the connection failed.
     */
    async claim(row: ConnectSessionRow): Promise<void> {
      const claimed = await withWorkspace(row.workspace_id, (tx) =>
        tx.query('UPDATE connect_sessions SET used_at = $2 WHERE id = $1 AND used_at IS NULL AND expires_at > $2', [row.id, runtime.now()]),
      );
      if (claimed.rowCount === 0) throw new BulkheadError('connect_session_invalid', 'this connect session was already used');
    },

    async release(row: ConnectSessionRow): Promise<void> {
      await withWorkspace(row.workspace_id, (tx) => tx.query('UPDATE connect_sessions SET used_at = NULL WHERE id = $1 AND connection_id IS NULL', [row.id]));
    },

    async attach(row: ConnectSessionRow, connectionId: string): Promise<void> {
      await withWorkspace(row.workspace_id, (tx) => tx.query('UPDATE connect_sessions SET connection_id = $2 WHERE id = $1', [row.id, connectionId]));
    },

    async complete(tx: WorkspaceTx, id: string, connectionId: string): Promise<void> {
      await tx.query('UPDATE connect_sessions SET used_at = $2, connection_id = $3, pkce_verifier = NULL, state_nonce = NULL WHERE id = $1', [id, runtime.now(), connectionId]);
    },
  };
}

function check(row: ConnectSessionRow, now: Date): ConnectSessionRow {
  if (row.used_at) throw new BulkheadError('connect_session_invalid', 'this connect session was already used');
  if (row.expires_at <= now) throw new BulkheadError('connect_session_expired', 'this connect session has expired; ask for a new link');
  return row;
}

export type ConnectSessions = ReturnType<typeof createConnectSessions>;
