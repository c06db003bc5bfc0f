/**
 * Two Bulkhead processes on one database (two apps on the same test database), each caching keys
 * and credentials for a minute: a change made through one must reach the other within a second,
 * so only the pushed invalidation can make these pass, never the TTL.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, testSecrets, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import { processGroup } from '../testing/processes.js';
import { listenPostgres } from '../db/pg-listener.js';
import { parseInvalidation } from './invalidation.js';

const LONG_TTL = { keyCacheTtlMs: 60_000 };
const PUSHED_WITHIN_MS = 1_000;

/** Polls `probe` until it returns true; fails with its last observation after `withinMs`. */
async function within(withinMs: number, probe: () => Promise<{ ok: boolean; seen: unknown }>): Promise<void> {
  const deadline = Date.now() + withinMs;
  let last: unknown;
  for (;;) {
    const { ok, seen } = await probe();
    if (ok) return;
    last = seen;
    if (Date.now() > deadline) throw new Error(`not within ${String(withinMs)} ms; last seen: ${JSON.stringify(last)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function twoProcesses(backend: (typeof backends)[number]): Promise<{ a: TestApp; b: TestApp }> {
  const a = await startTestApp(backend, { config: LONG_TTL });
  const b = await startTestApp(backend, { config: LONG_TTL, database: a.database });
  return { a, b };
}

const answer = (t: TestApp, key: string) => t.request({ method: 'GET', url: '/v1/api-keys', token: key });
const refusedWith = (t: TestApp, key: string, code: string) => async () => {
  const res = await answer(t, key);
  const seen = res.statusCode === 200 ? 200 : res.json<{ code: string }>().code;
  return { ok: seen === code, seen };
};

describe('invalidation messages', () => {
  it('parses each kind the triggers send and nothing else', () => {
    expect(parseInvalidation('{"kind" : "api_key", "keyId" : "key_1"}')).toEqual({ kind: 'api_key', keyId: 'key_1' });
    expect(parseInvalidation('{"kind":"workspace","workspaceId":"ws_1"}')).toEqual({ kind: 'workspace', workspaceId: 'ws_1' });
    expect(parseInvalidation('{"kind":"tenant","tenantId":"ten_1"}')).toEqual({ kind: 'tenant', tenantId: 'ten_1' });
    expect(parseInvalidation('{"kind":"connection","workspaceId":"ws_1","connectionId":"conn_1"}')).toEqual({ kind: 'connection', workspaceId: 'ws_1', connectionId: 'conn_1' });
    for (const bad of ['', 'null', '[]', '{"kind":"api_key"}', '{"kind":"api_key","keyId":7}', '{"kind":"other","keyId":"k"}', '{"kind":"connection","workspaceId":"ws_1"}']) {
      expect(parseInvalidation(bad), bad).toBeUndefined();
    }
  });
});

describe('the PostgreSQL listener', () => {
  it('keeps retrying with backoff while the server cannot be reached, never throws, and stops when closed', async () => {
    const events: string[] = [];
    // Port 1 on loopback: refused at once, every time.
    const subscription = listenPostgres('postgres://postgres@127.0.0.1:1/none', 'bulkhead_invalidate', {
      onListening: () => events.push('listening'),
      onNotification: () => events.push('notification'),
      onDisconnected: () => events.push('disconnected'),
    }, { minMs: 10, maxMs: 40 });
    await new Promise((resolve) => setTimeout(resolve, 500));
    await subscription.close();
    const seen = events.length;
    expect(seen).toBeGreaterThanOrEqual(4);
    expect(new Set(events)).toEqual(new Set(['disconnected']));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(events).toHaveLength(seen);
  });
});

describe.each(backends)('changes pushed to every process on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let a: TestApp;
    let b: TestApp;
    beforeAll(async () => {
      ({ a, b } = await twoProcesses(backend));
    });
    afterAll(async () => {
      await b.close();
      await a.close();
    });

    it('a key revoked on one process is refused by another within a second', async () => {
      const { key: manager } = await a.workspaceWithKey(['keys:manage']);
      const minted = await a.request({ method: 'POST', url: '/v1/api-keys', token: manager, json: { name: 'victim', scopes: ['keys:manage'] } });
      const victim = minted.json<{ id: string; key: string }>();
      expect((await answer(b, victim.key)).statusCode).toBe(200);

      expect((await a.request({ method: 'DELETE', url: `/v1/api-keys/${victim.id}`, token: manager })).statusCode).toBe(204);
      await within(PUSHED_WITHIN_MS, refusedWith(b, victim.key, 'api_key_revoked'));
    });

    it('a key rotated with no grace period on one process is refused by another within a second', async () => {
      const { key, keyId } = await a.workspaceWithKey(['keys:manage']);
      expect((await answer(b, key)).statusCode).toBe(200);

      const rotated = await a.request({ method: 'POST', url: `/v1/api-keys/${keyId}/rotate`, token: key, json: { gracePeriodSeconds: 0 } });
      expect(rotated.statusCode).toBe(201);
      await within(PUSHED_WITHIN_MS, refusedWith(b, key, 'api_key_expired'));
      expect((await answer(b, rotated.json<{ key: string }>().key)).statusCode).toBe(200);
    });

    it('a deleted workspace\'s keys stop working on every process within a second', async () => {
      const { key, workspaceId } = await a.workspaceWithKey(['keys:manage']);
      expect((await answer(b, key)).statusCode).toBe(200);

      expect((await a.admin('DELETE', `/v1/workspaces/${workspaceId}`)).statusCode).toBe(204);
      await within(PUSHED_WITHIN_MS, refusedWith(b, key, 'api_key_unknown'));
    });

    it('a tenant\'s new limits reach the keys another process has cached within a second', async () => {
      const { key, tenantId } = await a.workspaceWithKey(['keys:manage']);
      const before = await b.app.core.authenticator.authenticate(key, '127.0.0.1');
      expect(before.tenantRequestsPerMinute).toBeUndefined();

      expect((await a.admin('PATCH', `/v1/tenants/${tenantId}`, { limits: { requestsPerMinute: 7 } })).statusCode).toBe(200);
      await within(PUSHED_WITHIN_MS, async () => {
        const seen = (await b.app.core.authenticator.authenticate(key, '127.0.0.1')).tenantRequestsPerMinute;
        return { ok: seen === 7, seen };
      });
    });

    it('a connection\'s replaced credential, and its deletion, reach another process within a second', async () => {
      const providerKey = `inv-${backend.name}`;
      const provider = await a.admin('POST', '/v1/providers', { key: providerKey, name: 'Invalidation', authType: 'api_key', baseUrls: ['https://api.invalidation.example'], apiKey: { in: 'header', name: 'X-Key' } });
      expect(provider.statusCode, provider.body).toBe(201);
      const { key, workspaceId } = await a.workspaceWithKey(['*']);
      const created = await a.request({ method: 'POST', url: '/v1/connections', token: key, json: { provider: providerKey, name: 'c', credentials: { apiKey: 'first-secret-0000' } } });
      expect(created.statusCode, created.body).toBe(201);
      const connectionId = created.json<{ id: string }>().id;
      const secretOnB = async () => {
        try {
          const { credential } = await b.app.core.connections.use(workspaceId, connectionId);
          return credential.type === 'api_key' ? credential.apiKey : credential.type;
        } catch (error) {
          return (error as { code?: string }).code ?? String(error);
        }
      };
      expect(await secretOnB()).toBe('first-secret-0000');

      const patched = await a.request({ method: 'PATCH', url: `/v1/connections/${connectionId}`, token: key, json: { credentials: { apiKey: 'second-secret-0000' } } });
      expect(patched.statusCode, patched.body).toBe(200);
      await within(PUSHED_WITHIN_MS, async () => {
        const seen = await secretOnB();
        return { ok: seen === 'second-secret-0000', seen };
      });

      expect((await a.request({ method: 'DELETE', url: `/v1/connections/${connectionId}`, token: key })).statusCode).toBe(200);
      await within(PUSHED_WITHIN_MS, async () => {
        const seen = await secretOnB();
        return { ok: seen === 'not_found', seen };
      });
    });
  });
});

const postgres = backends.filter((b) => b.name === 'postgres');

describe.each(postgres)('the listening connection on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let a: TestApp;
    let b: TestApp;
    const group = processGroup();
    beforeAll(async () => {
      ({ a, b } = await twoProcesses(backend));
    });
    afterAll(async () => {
      await group.killAll();
      await b.close();
      await a.close();
    });

    const listeners = async () =>
      (await a.database.db.owner.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'bulkhead-listen' ORDER BY pid")).rows.map((r) => r.pid);

    it('after it is dropped, a process reconnects, forgets what it cached, and hears the next change', async () => {
      const { key: manager } = await a.workspaceWithKey(['keys:manage']);
      const mint = async (name: string) => (await a.request({ method: 'POST', url: '/v1/api-keys', token: manager, json: { name, scopes: ['keys:manage'] } })).json<{ id: string; key: string }>();
      const missed = await mint('missed');
      const later = await mint('later');
      expect((await answer(b, missed.key)).statusCode).toBe(200);
      expect((await answer(b, later.key)).statusCode).toBe(200);

      const before = await listeners();
      expect(before).toHaveLength(2);
      // A revocation whose notification is lost: with the triggers off for this transaction,
      // nothing is sent, and B keeps its cached key as it would while its listener was down.
      await a.database.db.owner.transaction(async (tx) => {
        await tx.query("SET LOCAL session_replication_role = 'replica'");
        await tx.query('UPDATE api_keys SET revoked_at = now() WHERE id = $1', [missed.id]);
      });
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect((await answer(b, missed.key)).statusCode).toBe(200);

      const { rows } = await a.database.db.owner.query<{ terminated: boolean }>('SELECT pg_terminate_backend(pid) AS terminated FROM pg_stat_activity WHERE datname = current_database() AND application_name = \'bulkhead-listen\'');
      expect(rows.map((r) => r.terminated)).toEqual([true, true]);

      // Reconnecting (after a short backoff) flushes the caches: the missed revocation now counts.
      await within(5_000, refusedWith(b, missed.key, 'api_key_revoked'));
      await within(5_000, async () => {
        const seen = await listeners();
        return { ok: seen.length === 2 && seen.every((pid) => !before.includes(pid)), seen };
      });
      expect((await answer(b, later.key)).statusCode).toBe(200);
      expect((await a.request({ method: 'DELETE', url: `/v1/api-keys/${later.id}`, token: manager })).statusCode).toBe(204);
      await within(PUSHED_WITHIN_MS, refusedWith(b, later.key, 'api_key_revoked'));
    });

    it('closing the app ends its listening connection', async () => {
      const c = await startTestApp(backend, { config: LONG_TTL, database: a.database });
      await within(5_000, async () => {
        const seen = await listeners();
        return { ok: seen.length === 3, seen };
      });
      await c.close();
      await within(5_000, async () => {
        const seen = await listeners();
        return { ok: seen.length === 2, seen };
      });
    });

    it('a real `serve --role api` process refuses a key revoked elsewhere within a second, and still exits on SIGTERM', async () => {
      const dataDir = await mkdtemp(path.join(tmpdir(), 'bk-invalidation-'));
      try {
        const api = group.spawn(['serve', '--role', 'api'], {
          DATABASE_URL: a.database.url ?? '',
          BULKHEAD_DB_APP_ROLE: a.database.appRole,
          BULKHEAD_ADMIN_TOKEN: testSecrets.adminToken,
          BULKHEAD_API_KEY_PEPPER: testSecrets.apiKeyPepper,
          BULKHEAD_ROOT_KEYS: testSecrets.rootKeys.map((k) => `${String(k.version)}:${k.key.toString('base64')}`).join(','),
          BULKHEAD_DATA_DIR: dataDir,
          BULKHEAD_KEY_CACHE_TTL_MS: '60000',
          HOST: '127.0.0.1',
          PORT: '0',
          LOG_LEVEL: 'info',
        });
        await api.waitForOutput(/listening for cache invalidations/, 45_000);
        const base = /listening on (http:\/\/\S+)/.exec(api.output())?.[1] ?? '';
        const { key: manager } = await a.workspaceWithKey(['keys:manage']);
        const victim = (await a.request({ method: 'POST', url: '/v1/api-keys', token: manager, json: { name: 'victim', scopes: ['keys:manage'] } })).json<{ id: string; key: string }>();
        const onApi = async () => {
          const res = await fetch(`${base}/v1/api-keys`, { headers: { authorization: `Bearer ${victim.key}` } });
          const seen = res.status === 200 ? 200 : ((await res.json()) as { code: string }).code;
          return { ok: seen === 'api_key_revoked', seen };
        };
        expect((await onApi()).seen).toBe(200);

        expect((await a.request({ method: 'DELETE', url: `/v1/api-keys/${victim.id}`, token: manager })).statusCode).toBe(204);
        await within(PUSHED_WITHIN_MS, onApi);

        // The listening connection must not keep a stopped server alive.
        api.kill('SIGTERM');
        const exit = await Promise.race([api.exited, new Promise((resolve) => setTimeout(() => { resolve('still running after 10 s'); }, 10_000))]);
        expect(exit, api.output().slice(-2000)).toBe(0);
      } finally {
        await rm(dataDir, { recursive: true, force: true });
      }
    }, 90_000);
  });
});
