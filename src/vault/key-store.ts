/**
 * Where wrapped data keys live. A key scope is a workspace (rows under RLS, read inside that
 * workspace's transaction) or the platform (owner-only tables). Both expose the same operations,
 * so the vault never branches on which it serves.
 */
import type { PlatformTx, WorkspaceTx } from '../db/tenant-tx.js';
import type { Queryable } from '../db/types.js';

export const PLATFORM_SCOPE = 'platform';

export interface RingState {
  readonly current: number;
  readonly min: number;
}

export interface WrappedKey {
  readonly version: number;
  readonly rootProvider: string;
  readonly rootVersion: number;
  readonly wrapped: Buffer;
}

export interface KeyStore {
  /** `ws_…` or `platform`: part of every associated-data string. */
  readonly scope: string;
  ring(): Promise<RingState | undefined>;
  /** Creates version 1 and the ring if there is none; false when another transaction won the race. */
  initialise(key: WrappedKey, now: Date): Promise<boolean>;
  key(version: number): Promise<WrappedKey | undefined>;
  /** Adds `key` as the new current version. */
  addVersion(key: WrappedKey, now: Date): Promise<void>;
  setMinimum(min: number, now: Date): Promise<void>;
}

interface KeyRow {
  version: number;
  root_provider: string;
  root_version: number;
  wrapped: Uint8Array;
}

const toKey = (r: KeyRow): WrappedKey => ({ version: r.version, rootProvider: r.root_provider, rootVersion: r.root_version, wrapped: Buffer.from(r.wrapped) });

export function workspaceKeyStore(tx: WorkspaceTx): KeyStore {
  return keyStore(tx, tx.workspaceId, {
    ringWhere: 'workspace_id = $1',
    keyWhere: 'workspace_id = $1',
    ringTable: 'workspace_key_rings',
    keyTable: 'workspace_keys',
    scopeColumns: ['workspace_id'],
    scopeValues: [tx.workspaceId],
  });
}

export function platformKeyStore(tx: PlatformTx): KeyStore {
  return keyStore(tx, PLATFORM_SCOPE, {
    ringWhere: 'singleton AND $1::text IS NOT NULL',
    keyWhere: '$1::text IS NOT NULL',
    ringTable: 'platform_key_ring',
    keyTable: 'platform_keys',
    scopeColumns: [],
    scopeValues: [],
  });
}

/** A workspace's store inside the owner's transaction: only for creating its first key with the workspace. */
export function workspaceKeyStoreAsOwner(tx: PlatformTx, workspaceId: string): KeyStore {
  return keyStore(tx, workspaceId, {
    ringWhere: 'workspace_id = $1',
    keyWhere: 'workspace_id = $1',
    ringTable: 'workspace_key_rings',
    keyTable: 'workspace_keys',
    scopeColumns: ['workspace_id'],
    scopeValues: [workspaceId],
  });
}

interface Tables {
  readonly ringTable: string;
  readonly keyTable: string;
  /** Condition on the ring/key tables with $1 = scope. */
  readonly ringWhere: string;
  readonly keyWhere: string;
  readonly scopeColumns: readonly string[];
  readonly scopeValues: readonly string[];
}

function keyStore(tx: Queryable, scope: string, t: Tables): KeyStore {
  const extraColumns = t.scopeColumns.map((c) => `${c}, `).join('');
  const extraParams = (offset: number) => t.scopeValues.map((_, i) => `$${offset + i}, `).join('');
  const n = t.scopeValues.length;

  return {
    scope,
    async ring() {
      const { rows } = await tx.query<{ current_version: number; min_decrypt_version: number }>(
        `SELECT current_version, min_decrypt_version FROM ${t.ringTable} WHERE ${t.ringWhere}`,
        [scope],
      );
      const row = rows[0];
      return row ? { current: row.current_version, min: row.min_decrypt_version } : undefined;
    },
    async initialise(key, now) {
      const inserted = await tx.query(
        `INSERT INTO ${t.ringTable} (${extraColumns}current_version, min_decrypt_version, updated_at)
         VALUES (${extraParams(1)}1, 1, $${n + 1}) ON CONFLICT DO NOTHING`,
        [...t.scopeValues, now],
      );
      if (inserted.rowCount === 0) return false;
      await tx.query(
        `INSERT INTO ${t.keyTable} (${extraColumns}version, root_provider, root_version, wrapped, created_at)
         VALUES (${extraParams(1)}$${n + 1}, $${n + 2}, $${n + 3}, $${n + 4}, $${n + 5})`,
        [...t.scopeValues, key.version, key.rootProvider, key.rootVersion, key.wrapped, now],
      );
      return true;
    },
    async key(version) {
      const { rows } = await tx.query<KeyRow>(
        `SELECT version, root_provider, root_version, wrapped FROM ${t.keyTable} WHERE ${t.keyWhere} AND version = $2`,
        [scope, version],
      );
      return rows[0] ? toKey(rows[0]) : undefined;
    },
    async addVersion(key, now) {
      await tx.query(
        `INSERT INTO ${t.keyTable} (${extraColumns}version, root_provider, root_version, wrapped, created_at)
         VALUES (${extraParams(1)}$${n + 1}, $${n + 2}, $${n + 3}, $${n + 4}, $${n + 5})`,
        [...t.scopeValues, key.version, key.rootProvider, key.rootVersion, key.wrapped, now],
      );
      await tx.query(`UPDATE ${t.ringTable} SET current_version = $2, updated_at = $3 WHERE ${t.ringWhere}`, [scope, key.version, now]);
    },
    async setMinimum(min, now) {
      await tx.query(`UPDATE ${t.ringTable} SET min_decrypt_version = $2, updated_at = $3 WHERE ${t.ringWhere}`, [scope, min, now]);
    },
  };
}
