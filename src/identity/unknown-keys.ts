/**
 * A short memory of presented API keys that matched no key, so the same bad key sent again (a
 * client left running with a deleted key, or one attacker replaying its guesses) is answered
 * `api_key_unknown` without another lookup.
 *
 * Why this is safe: keys are 256 random bits made by the server, so a string that matched no key
 * cannot start matching one later (a deleted key stays deleted). Revoked and expired keys are not
 * remembered here: those are real keys, and their state belongs to the authenticator's cache.
 *
 * What it does not bound, on purpose: a client that sends a fresh well-formed key each time costs
 * one HMAC and one lookup on the unique key-hash index per request, before and after its address
 * passes the auth-failure allowance. Refusing lookups from that address instead would lock out a
 * valid key presented from it that no cache holds yet, which is the lock-out the failure limiter
 * must not cause (docs/SECURITY.md §9). Request floods are for the proxy or load balancer in front.
 */
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { BulkheadError } from '../errors.js';
import type { KeyAuthenticator } from './authenticate.js';

export interface UnknownKeyOptions {
  /** How long a key stays known as unknown; the auth-failure window by default. */
  readonly ttlMs?: number;
  /** Most keys remembered; the oldest are forgotten first (a flood of fresh keys only evicts). */
  readonly max?: number;
}

export function rememberUnknownKeys(authenticator: KeyAuthenticator, options: UnknownKeyOptions = {}): KeyAuthenticator {
  // Digests, not the presented strings: nothing key-shaped is kept in memory.
  const unknown = new LRUCache<string, true>({ max: options.max ?? 10_000, ttl: options.ttlMs ?? 60_000 });
  const digest = (key: string): string => createHash('sha256').update(key, 'utf8').digest('base64url');
  return {
    ...authenticator,
    async authenticate(key, ip) {
      const id = digest(key);
      if (unknown.has(id)) throw new BulkheadError('api_key_unknown', 'the API key is not recognised');
      try {
        return await authenticator.authenticate(key, ip);
      } catch (error) {
        if (error instanceof BulkheadError && error.code === 'api_key_unknown') unknown.set(id, true);
        throw error;
      }
    },
  };
}
