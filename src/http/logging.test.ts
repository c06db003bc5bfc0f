import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../app.js';
import { parseConfig } from '../config.js';
import { databaseRef } from '../db/open.js';
import { createLogger, type Logger } from '../logging.js';
import { testClock, testSecrets } from '../testing/app.js';
import { backends, type TestDatabase } from '../testing/databases.js';

const pglite = backends[0];
if (!pglite) throw new Error('no PGlite backend');

describe('logs', () => {
  const lines: string[] = [];
  let logger: Logger;
  let app: App;
  let database: TestDatabase;

  beforeAll(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        done();
      },
    });
    logger = createLogger({ level: 'trace', destination: sink });
    database = await pglite.open();
    app = await buildApp({ config: { ...parseConfig({}), appRole: database.appRole }, secrets: testSecrets, logger, db: databaseRef(database.db), runtime: testClock() });
  });
  afterAll(async () => {
    await app.close();
    await database.close();
  });

  it('never carry the admin token, an API key or a field named like a secret, and carry the request id', async () => {
    const auth = { authorization: `Bearer ${testSecrets.adminToken}` };
    const tenant = await app.http.inject({ method: 'POST', url: '/v1/tenants', headers: auth, payload: { name: 'Log', slug: 'log' } });
    const tenantId = tenant.json<{ id: string }>().id;
    const ws = await app.http.inject({ method: 'POST', url: `/v1/tenants/${tenantId}/workspaces`, headers: auth, payload: { name: 'w', environment: 'production' } });
    const created = await app.http.inject({ method: 'POST', url: `/v1/workspaces/${ws.json<{ id: string }>().id}/api-keys`, headers: auth, payload: { name: 'k', scopes: ['*'] } });
    const key = created.json<{ key: string }>().key;
    await app.http.inject({ method: 'GET', url: '/v1/api-keys', headers: { authorization: `Bearer ${key}`, 'x-request-id': 'trace-me-123456' } });
    await app.http.inject({ method: 'GET', url: '/v1/api-keys', headers: { authorization: `Bearer ${key}x` } });
    logger.info({ connection: { credentials: { password: 'hunter2-password', apiKey: key }, clientSecret: 'shh-client-secret' } }, 'nested');

    const all = lines.join('\n');
    expect(lines.length).toBeGreaterThan(5);
    for (const secret of [testSecrets.adminToken, key, 'hunter2-password', 'shh-client-secret', testSecrets.apiKeyPepper]) expect(all).not.toContain(secret);
    expect(all).toContain('[redacted]');
    const requestLines = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['msg'] === 'incoming request' || l['msg'] === 'request completed');
    expect(requestLines.length).toBeGreaterThanOrEqual(10);
    for (const line of requestLines) expect(line['requestId']).toEqual(expect.any(String));
    expect(requestLines.some((l) => l['requestId'] === 'trace-me-123456')).toBe(true);
  });
});
