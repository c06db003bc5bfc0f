import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from '../db/types.js';
import { startTestApp, testSecrets, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import { formatApiKey } from './api-key-format.js';
import { createKeyAuthenticator } from './authenticate.js';
import { rememberUnknownKeys } from './unknown-keys.js';

describe.each(backends)('remembering unknown API keys on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startTestApp(backend);
    });
    afterAll(async () => t.close());

    /** The real authenticator on the real database, with its lookups counted (cache off). */
    function counted(options: { ttlMs?: number; max?: number } = {}) {
      let lookups = 0;
      const owner = t.database.db.owner;
      const registry: Pool = {
        query<R extends object>(text: string, params?: readonly unknown[]) {
          lookups++;
          return owner.query<R>(text, params);
        },
        exec: (script) => owner.exec(script),
        transaction: (fn) => owner.transaction(fn),
      };
      const authenticator = rememberUnknownKeys(createKeyAuthenticator({ registry: () => registry, pepper: testSecrets.apiKeyPepper, cacheTtlMs: 0, now: () => new Date() }), options);
      return { authenticator, lookups: () => lookups };
    }

    it('answers a key that matched nothing again without another lookup, and still looks up every valid key', async () => {
      const { key } = await t.workspaceWithKey(['*']);
      const { authenticator, lookups } = counted();
      const unknown = formatApiKey('live', randomBytes(32));
      for (let i = 0; i < 5; i++) await expect(authenticator.authenticate(unknown, '127.0.0.1')).rejects.toMatchObject({ code: 'api_key_unknown' });
      expect(lookups()).toBe(1);
      // Valid keys are never remembered as unknown, and each is looked up (the cache is off here).
      for (let i = 0; i < 3; i++) await expect(authenticator.authenticate(key, '127.0.0.1')).resolves.toMatchObject({ scopes: ['*'] });
      expect(lookups()).toBe(4);
    });

    it('does not remember revoked keys, and forgets unknown ones after its time', async () => {
      const made = await t.workspaceWithKey(['*']);
      const revoked = await t.request({ method: 'DELETE', url: `/v1/api-keys/${made.keyId}`, token: made.key });
      expect(revoked.statusCode).toBeLessThan(300);
      const { authenticator, lookups } = counted({ ttlMs: 50 });
      for (let i = 0; i < 2; i++) await expect(authenticator.authenticate(made.key, '127.0.0.1')).rejects.toMatchObject({ code: 'api_key_revoked' });
      expect(lookups()).toBe(2);
      const unknown = formatApiKey('live', randomBytes(32));
      await expect(authenticator.authenticate(unknown, '127.0.0.1')).rejects.toMatchObject({ code: 'api_key_unknown' });
      await new Promise((resolve) => setTimeout(resolve, 80));
      await expect(authenticator.authenticate(unknown, '127.0.0.1')).rejects.toMatchObject({ code: 'api_key_unknown' });
      expect(lookups()).toBe(4);
    });
  });
});
