import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import { createRateLimiter } from './rate-limit.js';

const pglite = backends[0];
if (!pglite) throw new Error('no PGlite backend');

describe('the request limiter', () => {
  it('refuses the request after the per-key budget with the scope and a retry delay', async () => {
    const limiter = createRateLimiter({ perKeyPerMinute: 2, perWorkspacePerMinute: 100, perTenantPerMinute: 100 });
    const subject = { keyId: 'k1', workspaceId: 'w1', tenantId: 't1' };
    expect((await limiter.consume(subject)).allowed).toBe(true);
    const second = await limiter.consume(subject);
    expect(second).toMatchObject({ allowed: true, state: { limit: 2, remaining: 0 } });
    const third = await limiter.consume(subject);
    expect(third).toMatchObject({ allowed: false, scope: 'api_key' });
    expect(third.allowed ? 0 : third.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    // Another key of another tenant is unaffected.
    expect((await limiter.consume({ keyId: 'k2', workspaceId: 'w2', tenantId: 't2' })).allowed).toBe(true);
  });

  it('shares the workspace budget between its keys and the tenant budget between its workspaces', async () => {
    const limiter = createRateLimiter({ perKeyPerMinute: 100, perWorkspacePerMinute: 3, perTenantPerMinute: 5 });
    const outcomes = [];
    for (const keyId of ['a', 'b', 'a', 'b']) outcomes.push(await limiter.consume({ keyId, workspaceId: 'w1', tenantId: 't1' }));
    expect(outcomes.map((o) => (o.allowed ? 'ok' : o.scope))).toEqual(['ok', 'ok', 'ok', 'workspace']);
    const other = [];
    for (let i = 0; i < 3; i++) other.push(await limiter.consume({ keyId: `c${i}`, workspaceId: 'w2', tenantId: 't1' }));
    // w1 spent 3 of the tenant's 5 (its refused request stopped at the workspace budget), so w2 gets 2.
    expect(other.map((o) => (o.allowed ? 'ok' : o.scope))).toEqual(['ok', 'ok', 'tenant']);
  });

  it("honours a tenant's own requestsPerMinute", async () => {
    const limiter = createRateLimiter({ perKeyPerMinute: 100, perWorkspacePerMinute: 100, perTenantPerMinute: 100 });
    const subject = { keyId: 'k', workspaceId: 'w', tenantId: 't', tenantRequestsPerMinute: 1 };
    expect((await limiter.consume(subject)).allowed).toBe(true);
    expect(await limiter.consume(subject)).toMatchObject({ allowed: false, scope: 'tenant' });
  });
});

describe('rate limiting over HTTP (PGlite)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp(pglite, { config: { rateLimits: { perKeyPerMinute: 3, perWorkspacePerMinute: 1000, perTenantPerMinute: 1000 } } });
  });
  afterAll(async () => t.close());

  it('answers 429 rate_limited with Retry-After and RateLimit headers once the key budget is spent', async () => {
    const { key } = await t.workspaceWithKey(['keys:manage']);
    const first = await t.request({ method: 'GET', url: '/v1/api-keys', token: key });
    expect(first.headers).toMatchObject({ 'ratelimit-limit': '3', 'ratelimit-remaining': '2' });
    await t.request({ method: 'GET', url: '/v1/api-keys', token: key });
    await t.request({ method: 'GET', url: '/v1/api-keys', token: key });
    const refused = await t.request({ method: 'GET', url: '/v1/api-keys', token: key });
    expect([refused.statusCode, refused.json<{ code: string }>().code]).toEqual([429, 'rate_limited']);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(refused.headers['ratelimit-remaining']).toBe('0');
    // A key of another tenant still gets through.
    const other = await t.workspaceWithKey(['keys:manage']);
    expect((await t.request({ method: 'GET', url: '/v1/api-keys', token: other.key })).statusCode).toBe(200);
  });
});

describe('failed authentications (PGlite)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp(pglite, { config: { authFailuresPerMinute: 3 } });
  });
  afterAll(async () => t.close());

  it('refuse an address after too many failures, before any lookup, even with valid credentials', async () => {
    const { key } = await t.workspaceWithKey(['keys:manage']);
    const attacker = '198.51.100.66';
    const tries = [];
    for (const token of ['bk_live_wrong', 'not-the-admin-token-at-all-0123456789', key.slice(0, -1) + (key.endsWith('A') ? 'B' : 'A')]) {
      tries.push((await t.request({ method: 'GET', url: '/v1/api-keys', token, remoteAddress: attacker })).statusCode);
    }
    expect(tries).toEqual([401, 401, 401]);
    const blocked = await t.request({ method: 'GET', url: '/v1/api-keys', token: key, remoteAddress: attacker });
    expect([blocked.statusCode, blocked.json<{ code: string }>().code]).toEqual([429, 'rate_limited']);
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    const adminBlocked = await t.request({ method: 'GET', url: '/v1/tenants', token: 'x'.repeat(40), remoteAddress: attacker });
    expect(adminBlocked.statusCode).toBe(429);
    // Another address is unaffected.
    expect((await t.request({ method: 'GET', url: '/v1/api-keys', token: key, remoteAddress: '203.0.113.5' })).statusCode).toBe(200);
  });
});

const redisUrl = process.env['BULKHEAD_TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const redisRequired = process.env['CI'] === 'true' || process.env['BULKHEAD_TEST_REQUIRE_REDIS'] === '1';
const probe = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, connectTimeout: 2000 });
const redisMissing: string | null = await probe.connect().then(
  () => null,
  (error: unknown) => `Redis is not reachable at ${redisUrl} (${(error as Error).message})`,
);
probe.disconnect();
if (redisMissing && redisRequired) throw new Error(`${redisMissing}; the Redis suite is required here`);
if (redisMissing) process.stderr.write(`\n!!! ${redisMissing}: the shared-budget suite is SKIPPED\n\n`);

describe.skipIf(redisMissing !== null)(`two API processes sharing one Redis budget (${redisMissing ?? redisUrl})`, () => {
  let one: TestApp;
  let two: TestApp;
  let clients: Redis[];
  beforeAll(async () => {
    clients = [new Redis(redisUrl), new Redis(redisUrl)];
    const limits = { rateLimits: { perKeyPerMinute: 4, perWorkspacePerMinute: 1000, perTenantPerMinute: 1000 } };
    one = await startTestApp(pglite, { config: limits, redis: clients[0] });
    // The second app uses the first one's database: two API processes in front of one store.
    two = await startTestApp(pglite, { config: limits, redis: clients[1], database: one.database });
  });
  afterAll(async () => {
    await two.close();
    await one.close();
    for (const client of clients) client.disconnect();
  });

  it('spends one budget across both apps', async () => {
    const { key } = await one.workspaceWithKey(['keys:manage']);
    const statuses = [];
    for (const app of [one, two, one, two, one, two]) statuses.push((await app.request({ method: 'GET', url: '/v1/api-keys', token: key })).statusCode);
    expect(statuses).toEqual([200, 200, 200, 200, 429, 429]);
  });
});
