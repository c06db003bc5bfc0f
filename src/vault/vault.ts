/**
 * The vault: envelope encryption with one data key (DEK) per workspace, wrapped by a root key.
 *
 *   seal/open   AES-256-GCM under the scope's current DEK (see envelope.ts for the format);
 *               associated data = scope + table + row id + column.
 *   DEK cache   unwrapped DEKs are kept in memory with a TTL and a size bound and zeroed when
 *               evicted; ring state (current and minimum version) is cached for a shorter TTL.
 *   rotation    a new DEK version for new writes (`rotate`), rewrapping every DEK under the
 *               newest root version (`rewrapRoot`), raising the minimum version (`ratchet`).
 *   shredding   `forget` drops a scope's keys from memory; deleting the wrapped keys (workspace
 *               deletion) makes its ciphertexts unreadable even with the root key.
 */
import { randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { FOREIGN_KEY_VIOLATION, sqlState } from '../db/errors.js';
import type { PlatformTx, WorkspaceTx } from '../db/tenant-tx.js';
import { BulkheadError } from '../errors.js';
import type { Runtime } from '../ids.js';
import { associatedData, openValue, type SealContext, sealValue, sealedKeyVersion, valueAad } from './envelope.js';
import { type KeyStore, type RingState, type WrappedKey, platformKeyStore, workspaceKeyStore, workspaceKeyStoreAsOwner } from './key-store.js';
import type { RootKeyProvider } from './root-keys.js';

export interface VaultOptions {
  readonly rootKeys: RootKeyProvider;
  readonly runtime: Runtime;
  readonly dekCacheTtlMs: number;
  readonly dekCacheMax: number;
  /** How long ring state is trusted; rotation and ratchets reach other processes within it. */
  readonly ringCacheTtlMs: number;
}

/** Seal and open within one key scope (a workspace or the platform), inside its transaction. */
export interface Sealer {
  seal(context: SealContext, plaintext: string | Buffer): Promise<Buffer>;
  open(context: SealContext, sealed: Uint8Array): Promise<Buffer>;
  openText(context: SealContext, sealed: Uint8Array): Promise<string>;
}

export interface Vault {
  workspace(tx: WorkspaceTx): Sealer;
  platform(tx: PlatformTx): Sealer;
  /** Creates a new workspace's first DEK, in the transaction that creates the workspace. */
  createWorkspaceKey(tx: PlatformTx, workspaceId: string): Promise<void>;
  /** A new DEK version in the workspace; new seals use it once the ring cache expires everywhere. */
  rotateWorkspaceKey(tx: WorkspaceTx): Promise<RingState>;
  ratchet(tx: WorkspaceTx, minVersion: number): Promise<RingState>;
  ring(tx: WorkspaceTx): Promise<RingState>;
  /** Rewraps every DEK (all workspaces and the platform) under the newest root version. */
  rewrapRoot(tx: PlatformTx): Promise<{ rewrapped: number; rootVersion: number }>;
  forget(scope: string): void;
  /** The raw decrypt step with a cached DEK, for the benchmark. */
  readonly stats: { dekUnwraps: number };
}

const dekAad = (scope: string, version: number, rootVersion: number): Buffer =>
  associatedData('bulkhead/dek/v1', [scope, String(version), String(rootVersion)]);

export function createVault(options: VaultOptions): Vault {
  const { rootKeys, runtime } = options;
  const deks = new LRUCache<string, Buffer>({
    max: options.dekCacheMax,
    ttl: options.dekCacheTtlMs,
    // Evicted keys are overwritten, so a heap dump after eviction holds no plaintext DEK.
    dispose: (dek) => { dek.fill(0); },
  });
  const rings = new LRUCache<string, RingState>({ max: options.dekCacheMax, ttl: Math.max(1, options.ringCacheTtlMs) });
  const stats = { dekUnwraps: 0 };

  async function newWrappedKey(scope: string, version: number): Promise<{ wrapped: WrappedKey; dek: Buffer }> {
    const dek = randomBytes(32);
    const rootVersion = rootKeys.currentVersion();
    const { wrapped } = await rootKeys.wrap(dek, dekAad(scope, version, rootVersion));
    return { dek, wrapped: { version, rootProvider: rootKeys.name, rootVersion, wrapped } };
  }

  async function ringOf(store: KeyStore): Promise<RingState> {
    const cached = options.ringCacheTtlMs > 0 ? rings.get(store.scope) : undefined;
    if (cached) return cached;
    let state = await store.ring();
    if (!state) {
      // A scope created before the vault existed: give it its first key now.
      const { wrapped } = await newWrappedKey(store.scope, 1);
      try {
        await store.initialise(wrapped, runtime.now());
      } catch (error) {
        // The workspace itself is gone (deleted, keys shredded): there is nothing to create a key for.
        if (sqlState(error) === FOREIGN_KEY_VIOLATION) throw new BulkheadError('workspace_key_missing', 'the workspace has no data key (deleted)', { cause: error });
        throw error;
      }
      state = await store.ring();
      if (!state) throw new BulkheadError('workspace_key_missing', 'the key ring could not be created');
    }
    rings.set(store.scope, state);
    return state;
  }

  async function dekOf(store: KeyStore, version: number): Promise<Buffer> {
    const cacheKey = `${store.scope}:${version}`;
    const cached = deks.get(cacheKey);
    if (cached) return cached;
    const wrapped = await store.key(version);
    if (!wrapped) throw new BulkheadError('workspace_key_missing', `data key version ${version} does not exist (destroyed or never created)`);
    if (wrapped.rootProvider !== rootKeys.name) {
      throw new BulkheadError('root_key_missing', `data key version ${version} is wrapped by root provider "${wrapped.rootProvider}", which is not configured`);
    }
    const dek = await rootKeys.unwrap(wrapped.rootVersion, wrapped.wrapped, dekAad(store.scope, version, wrapped.rootVersion));
    stats.dekUnwraps++;
    deks.set(cacheKey, dek);
    return dek;
  }

  function sealer(store: KeyStore): Sealer {
    const open = async (context: SealContext, sealed: Uint8Array) => {
      const version = sealedKeyVersion(sealed);
      const ring = await ringOf(store);
      if (version < ring.min) {
        throw new BulkheadError('key_version_retired', `sealed under data key version ${version}, below the minimum ${ring.min}`);
      }
      return openValue(await dekOf(store, version), valueAad(store.scope, context), sealed);
    };
    return {
      async seal(context, plaintext) {
        const ring = await ringOf(store);
        const dek = await dekOf(store, ring.current);
        return sealValue(dek, ring.current, valueAad(store.scope, context), typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : plaintext);
      },
      open,
      openText: async (context, sealed) => (await open(context, sealed)).toString('utf8'),
    };
  }

  function forget(scope: string): void {
    rings.delete(scope);
    for (const key of [...deks.keys()]) if (key.startsWith(`${scope}:`)) deks.delete(key);
  }

  return {
    workspace: (tx) => sealer(workspaceKeyStore(tx)),
    platform: (tx) => sealer(platformKeyStore(tx)),

    async createWorkspaceKey(tx, workspaceId) {
      const store = workspaceKeyStoreAsOwner(tx, workspaceId);
      const { wrapped, dek } = await newWrappedKey(workspaceId, 1);
      if (await store.initialise(wrapped, runtime.now())) deks.set(`${workspaceId}:1`, dek);
    },

    async rotateWorkspaceKey(tx) {
      const store = workspaceKeyStore(tx);
      rings.delete(store.scope);
      const ring = await ringOf(store);
      const { wrapped, dek } = await newWrappedKey(store.scope, ring.current + 1);
      await store.addVersion(wrapped, runtime.now());
      deks.set(`${store.scope}:${wrapped.version}`, dek);
      rings.delete(store.scope);
      return { current: wrapped.version, min: ring.min };
    },

    async ratchet(tx, minVersion) {
      const store = workspaceKeyStore(tx);
      rings.delete(store.scope);
      const ring = await ringOf(store);
      if (minVersion < ring.min || minVersion > ring.current) {
        throw new BulkheadError('bad_request', `the minimum version must be between ${ring.min} and ${ring.current}`);
      }
      await store.setMinimum(minVersion, runtime.now());
      rings.delete(store.scope);
      return { current: ring.current, min: minVersion };
    },

    async ring(tx) {
      const store = workspaceKeyStore(tx);
      rings.delete(store.scope);
      return ringOf(store);
    },

    async rewrapRoot(tx) {
      const target = rootKeys.currentVersion();
      let rewrapped = 0;
      const tables = [
        { table: 'workspace_keys', scope: 'workspace_id', where: 'workspace_id = $1 AND version = $2' },
        { table: 'platform_keys', scope: `'platform'`, where: '$1::text IS NOT NULL AND version = $2' },
      ];
      for (const t of tables) {
        const { rows } = await tx.query<{ scope: string; version: number; root_provider: string; root_version: number; wrapped: Uint8Array }>(
          `SELECT ${t.scope} AS scope, version, root_provider, root_version, wrapped FROM ${t.table}
           WHERE root_provider <> $1 OR root_version <> $2 FOR UPDATE`,
          [rootKeys.name, target],
        );
        for (const row of rows) {
          if (row.root_provider !== rootKeys.name) {
            throw new BulkheadError('root_key_missing', `a data key of ${row.scope} is wrapped by root provider "${row.root_provider}", which is not configured`);
          }
          const dek = await rootKeys.unwrap(row.root_version, Buffer.from(row.wrapped), dekAad(row.scope, row.version, row.root_version));
          const { wrapped } = await rootKeys.wrap(dek, dekAad(row.scope, row.version, target));
          dek.fill(0);
          await tx.query(
            `UPDATE ${t.table} SET root_version = $3, wrapped = $4, rewrapped_at = $5 WHERE ${t.where}`,
            [row.scope, row.version, target, wrapped, runtime.now()],
          );
          rewrapped++;
        }
      }
      return { rewrapped, rootVersion: target };
    },

    forget,
    stats,
  };
}
