/**
 * API key lifecycle inside one workspace: create (plaintext returned once), list, get, rotate
 * with a grace period, revoke. Every change is audited in the same transaction.
 *
 * When a key acts on keys (`caller`), delegation only narrows (`narrowing.ts`): it sees, rotates
 * and revokes only keys whose scopes it covers (any other key is "not found", like a missing
 * one, so wider keys are not even revealed), and what it mints or receives by rotation is within
 * its own grant. Without a caller (the admin token, the CLI) nothing is narrowed.
 */
import type { ActionContext } from '../audit/context.js';
import { workspaceAudit } from '../audit/store.js';
import { onlyRow } from '../db/rows.js';
import type { WorkspaceTx } from '../db/tenant-tx.js';
import { BulkheadError, notFound } from '../errors.js';
import { idPattern, isId, newId, type Runtime } from '../ids.js';
import { decodeCursor, type Page, toPage } from '../pagination.js';
import { displayPrefix, formatApiKey } from './api-key-format.js';
import { parseCidr } from './cidr.js';
import { hashApiKey } from './key-hash.js';
import { coveredScopes, type Grant, type GrantRequest, narrow, refusalError, unrestricted } from './narrowing.js';
import type { Scope } from './scopes.js';

export interface ApiKeyView {
  readonly id: string;
  readonly workspaceId: string;
  readonly name: string;
  readonly prefix: string;
  readonly scopes: string[];
  readonly allowedCidrs: string[];
  readonly status: 'active' | 'expired' | 'revoked';
  readonly expiresAt: string | null;
  readonly revokedAt: string | null;
  readonly lastUsedAt: string | null;
  readonly rotatedFrom: string | null;
  readonly createdAt: string;
}

export interface CreateApiKeyInput {
  readonly name: string;
  readonly scopes: readonly Scope[];
  readonly allowedCidrs?: readonly string[] | undefined;
  readonly expiresAt?: string | undefined;
}

interface Row {
  id: string;
  workspace_id: string;
  name: string;
  prefix: string;
  scopes: string[];
  allowed_cidrs: string[];
  expires_at: Date | null;
  revoked_at: Date | null;
  last_used_at: Date | null;
  rotated_from: string | null;
  created_at: Date;
}

const COLUMNS = 'id, workspace_id, name, prefix, scopes, allowed_cidrs, expires_at, revoked_at, last_used_at, rotated_from, created_at';
export const MAX_GRACE_SECONDS = 30 * 24 * 3600;

/** The grant of the key acting on keys; undefined for the admin token and the CLI (unrestricted). */
type Caller = Grant | undefined;

export interface ApiKeyService {
  create(tx: WorkspaceTx, ctx: ActionContext, input: CreateApiKeyInput, options: { environment: string; caller?: Caller }): Promise<{ view: ApiKeyView; key: string }>;
  list(tx: WorkspaceTx, options: { cursor?: string | undefined; limit: number; caller?: Caller }): Promise<Page<ApiKeyView>>;
  get(tx: WorkspaceTx, id: string, caller?: Caller): Promise<ApiKeyView>;
  rotate(tx: WorkspaceTx, ctx: ActionContext, id: string, options: { gracePeriodSeconds: number; environment: string; caller?: Caller }): Promise<{ view: ApiKeyView; key: string; previous: ApiKeyView }>;
  revoke(tx: WorkspaceTx, ctx: ActionContext, id: string, caller?: Caller): Promise<ApiKeyView>;
}

export function createApiKeyService(deps: { runtime: Runtime; pepper: string }): ApiKeyService {
  const { runtime } = deps;

  const view = (row: Row): ApiKeyView => {
    const now = runtime.now();
    return {
      id: row.id,
      workspaceId: row.workspace_id,
      name: row.name,
      prefix: row.prefix,
      scopes: row.scopes,
      allowedCidrs: row.allowed_cidrs,
      status: row.revoked_at && row.revoked_at <= now ? 'revoked' : row.expires_at && row.expires_at <= now ? 'expired' : 'active',
      expiresAt: row.expires_at?.toISOString() ?? null,
      revokedAt: row.revoked_at?.toISOString() ?? null,
      lastUsedAt: row.last_used_at?.toISOString() ?? null,
      rotatedFrom: row.rotated_from,
      createdAt: row.created_at.toISOString(),
    };
  };

  // The scopes a caller covers, as a SQL array filter (`scopes <@ $n`); null: no filter.
  const visibleScopes = (caller: Caller): string[] | null => (caller ? coveredScopes(caller.scopes) : null);

  async function find(tx: WorkspaceTx, id: string, caller: Caller, lock = false): Promise<Row> {
    // RLS already confines the query to the transaction's workspace; another workspace's key,
    // like a key wider than the caller, is therefore "not found", exactly like a missing one.
    const row = isId('apiKey', id)
      ? (await tx.query<Row>(`SELECT ${COLUMNS} FROM api_keys WHERE id = $1 AND ($2::text[] IS NULL OR scopes <@ $2::text[])${lock ? ' FOR UPDATE' : ''}`, [id, visibleScopes(caller)])).rows[0]
      : undefined;
    if (!row) throw notFound('API key');
    return row;
  }

  function narrowOrThrow(caller: Caller, request: GrantRequest): Grant {
    const narrowed = narrow(caller ?? unrestricted, request);
    if (!narrowed.ok) throw refusalError(narrowed.refusal);
    return narrowed.grant;
  }

  async function insert(tx: WorkspaceTx, ctx: ActionContext, fields: { name: string; scopes: readonly string[]; allowedCidrs: readonly string[]; expiresAt: Date | null; rotatedFrom: string | null; environment: string }) {
    const key = formatApiKey(fields.environment === 'production' ? 'live' : 'test', runtime.randomBytes(32));
    const id = newId('apiKey', runtime);
    const row = onlyRow(await tx.query<Row>(
      `INSERT INTO api_keys (workspace_id, id, name, prefix, key_hash, scopes, allowed_cidrs, expires_at, rotated_from, created_by, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING ${COLUMNS}`,
      [tx.workspaceId, id, fields.name, displayPrefix(key), hashApiKey(deps.pepper, key), fields.scopes, fields.allowedCidrs, fields.expiresAt, fields.rotatedFrom, `${ctx.actor.type}:${ctx.actor.id}`, runtime.now()],
    ));
    return { row, key };
  }

  return {
    async create(tx, ctx, input, options) {
      const requested = {
        scopes: [...new Set(input.scopes)].sort(),
        allowedCidrs: input.allowedCidrs && [...input.allowedCidrs],
        expiresAt: input.expiresAt === undefined ? undefined : new Date(input.expiresAt),
      };
      requested.allowedCidrs?.forEach(parseCidr);
      if (requested.expiresAt && !(requested.expiresAt > runtime.now())) throw new BulkheadError('validation_failed', 'expiresAt must be in the future');
      // A key hands out only what it holds itself (no escalation through `keys:manage`), and an
      // omitted restriction is the caller's own.
      const { scopes, allowedCidrs, expiresAt } = narrowOrThrow(options.caller, requested);
      const { row, key } = await insert(tx, ctx, { name: input.name, scopes, allowedCidrs, expiresAt, rotatedFrom: null, environment: options.environment });
      await workspaceAudit.append(tx, runtime, { ...ctx, action: 'api_key.create', target: { type: 'api_key', id: row.id }, outcome: 'success', details: { name: row.name, scopes, allowedCidrs, expiresAt: row.expires_at?.toISOString() ?? null } });
      return { view: view(row), key };
    },

    async list(tx, { cursor, limit, caller }) {
      const after = decodeCursor(cursor, new RegExp(idPattern('apiKey')));
      const { rows } = await tx.query<Row>(
        `SELECT ${COLUMNS} FROM api_keys WHERE ($1::text IS NULL OR id > $1) AND ($3::text[] IS NULL OR scopes <@ $3::text[]) ORDER BY id LIMIT $2`,
        [after ?? null, limit + 1, visibleScopes(caller)],
      );
      return toPage(rows, limit, (r) => r.id, view);
    },

    get: async (tx, id, caller) => view(await find(tx, id, caller)),

    async rotate(tx, ctx, id, { gracePeriodSeconds, environment, caller }) {
      // Lock the old key so two concurrent rotations cannot both succeed.
      const old = await find(tx, id, caller, true);
      const current = view(old);
      if (current.status !== 'active') throw new BulkheadError('conflict', `only an active key can be rotated; this one is ${current.status}`);
      // The successor is an exact copy of the old key's grant, handed to the caller: so the caller
      // must be able to mint that grant itself. Its own restrictions are not imposed on the copy
      // (that would silently change what the key can do); a caller bound tighter is refused.
      const grant = narrowOrThrow(caller, { scopes: old.scopes, allowedCidrs: old.allowed_cidrs, expiresAt: old.expires_at });
      const graceEnd = new Date(runtime.now().getTime() + gracePeriodSeconds * 1000);
      const oldExpiry = old.expires_at && old.expires_at < graceEnd ? old.expires_at : graceEnd;
      const updated = onlyRow(await tx.query<Row>(`UPDATE api_keys SET expires_at = $2 WHERE id = $1 RETURNING ${COLUMNS}`, [id, oldExpiry]));
      const { row, key } = await insert(tx, ctx, { name: old.name, ...grant, rotatedFrom: old.id, environment });
      await workspaceAudit.append(tx, runtime, { ...ctx, action: 'api_key.rotate', target: { type: 'api_key', id: old.id }, outcome: 'success', details: { newKeyId: row.id, gracePeriodSeconds, previousKeyExpiresAt: oldExpiry.toISOString() } });
      return { view: view(row), key, previous: view(updated) };
    },

    async revoke(tx, ctx, id, caller) {
      const old = await find(tx, id, caller);
      if (old.revoked_at) return view(old);
      const revoked = onlyRow(await tx.query<Row>(`UPDATE api_keys SET revoked_at = $2 WHERE id = $1 RETURNING ${COLUMNS}`, [id, runtime.now()]));
      await workspaceAudit.append(tx, runtime, { ...ctx, action: 'api_key.revoke', target: { type: 'api_key', id }, outcome: 'success' });
      return view(revoked);
    },
  };
}
