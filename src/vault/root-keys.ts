/**
 * Root keys wrap workspace data keys; nothing else is ever encrypted with them. Callers see only
 * `RootKeyProvider`, so an external KMS (OpenBao/Vault Transit, AWS KMS) is another
 * implementation of these three members and no caller changes. The local provider keeps
 * versioned 256-bit keys from BULKHEAD_ROOT_KEYS or the data folder's secrets file.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { RootKey } from '../config.js';
import { BulkheadError } from '../errors.js';

export interface RootKeyProvider {
  /** Stored next to each wrapped key, so a ring can span providers during a migration. */
  readonly name: string;
  /** The version new wraps use. */
  currentVersion(): number;
  /** The versions this provider can still unwrap. */
  versions(): readonly number[];
  wrap(dek: Buffer, associatedData: Buffer): Promise<{ rootVersion: number; wrapped: Buffer }>;
  unwrap(rootVersion: number, wrapped: Buffer, associatedData: Buffer): Promise<Buffer>;
}

const NONCE_BYTES = 12;
const TAG_BYTES = 16;

export function createLocalRootKeyProvider(keys: readonly RootKey[]): RootKeyProvider {
  if (keys.length === 0) throw new Error('at least one root key is required');
  const byVersion = new Map(keys.map((k) => [k.version, k.key]));
  const current = Math.max(...byVersion.keys());

  return {
    name: 'local',
    currentVersion: () => current,
    versions: () => [...byVersion.keys()].sort((a, b) => a - b),

    wrap(dek, associatedData) {
      const key = byVersion.get(current) as Buffer;
      const nonce = randomBytes(NONCE_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, nonce);
      cipher.setAAD(associatedData);
      const wrapped = Buffer.concat([nonce, cipher.update(dek), cipher.final(), cipher.getAuthTag()]);
      return Promise.resolve({ rootVersion: current, wrapped });
    },

    unwrap(rootVersion, wrapped, associatedData) {
      const key = byVersion.get(rootVersion);
      if (!key) {
        return Promise.reject(new BulkheadError('root_key_missing', `root key version ${rootVersion} is not configured; add it back to BULKHEAD_ROOT_KEYS or run \`bulkhead keys rotate-root\` before removing it`));
      }
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, wrapped.subarray(0, NONCE_BYTES));
        decipher.setAAD(associatedData);
        decipher.setAuthTag(wrapped.subarray(wrapped.length - TAG_BYTES));
        return Promise.resolve(Buffer.concat([decipher.update(wrapped.subarray(NONCE_BYTES, wrapped.length - TAG_BYTES)), decipher.final()]));
      } catch (error) {
        return Promise.reject(new BulkheadError('ciphertext_invalid', 'a wrapped workspace key failed authentication', { cause: error }));
      }
    },
  };
}
