import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatApiKey } from '../identity/api-key-format.js';
import { startTestApp, testSecrets, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import { createAuthFailureLimiter, createRateLimiter } from './rate-limit.js';

const pglite = backends[0];
if (!pglite) throw new Error('no PGlite backend');

const redisUrl = process.env['BULKHEAD_TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const redisRequired = process.env['CI'] === 'true' || process.env['BULKHEAD_TEST_REQUIRE_REDIS'] === '1';
const probe = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, connectTimeout: 2000 });
const redisMissing: string | null = await probe.connect().then(
  () => null,
  (error: unknown) => `Redis is not reachable at ${redisUrl} (${(error as Error).message})`,
);
probe.disconnect();
if (redisMissing && redisRequired) throw new Error(`${redisMissing}; the Redis suite is required here`);
if (redisMissing) process.stderr.write(`\n!!! ${redisMissing}: the Redis suites are SKIPPED\n\n`);

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

// Budgets in Redis outlive a test run by up to a minute and are shared with other runs, so every
// address (the limiter's key) is drawn fresh from the documentation range 2001:db8::/32.
const freshAddress = (): string => `2001:db8:${randomBytes(12).toString('hex').match(/.{4}/g)?.join(':') ?? ''}`;
const unknownKey = (): string => formatApiKey('live', randomBytes(32));

describe('the auth-failure limiter', () => {
  it('allows the configured number of failures per address, then answers how long the address stays refused', async () => {
    const limiter = createAuthFailureLimiter(3);
    const address = freshAddress();
    const answers = [];
    for (let i = 0; i < 5; i++) answers.push(await limiter.recordFailure(address));
    expect(answers.slice(0, 3)).toEqual([0, 0, 0]);
    for (const seconds of answers.slice(3)) expect(seconds).toBeGreaterThanOrEqual(1);
    for (const seconds of answers.slice(3)) expect(seconds).toBeLessThanOrEqual(60);
    expect(await limiter.recordFailure(freshAddress())).toBe(0);
  });
});

const failureStores: readonly (readonly [string, string | undefined])[] = [
  ['in memory', undefined],
  ['in Redis', redisUrl],
];

describe.each(failureStores)('failed authentications counted %s (PGlite)', (_label, url) => {
  describe.skipIf(url !== undefined && redisMissing !== null)(`(${url === undefined ? 'this process' : (redisMissing ?? url)})`, () => {
    let t: TestApp;
    let client: Redis | undefined;
    beforeAll(async () => {
      client = url === undefined ? undefined : new Redis(url);
      t = await startTestApp(pglite, { redis: client, config: { authFailuresPerMinute: 60, rateLimits: { perKeyPerMinute: 5, perWorkspacePerMinute: 1000, perTenantPerMinute: 1000 } } });
    });
    afterAll(async () => {
      await t.close();
      client?.disconnect();
    });

    const keys = (token: string | undefined, remoteAddress: string) => t.request({ method: 'GET', url: '/v1/api-keys', token, remoteAddress });
    const tenants = (token: string | undefined, remoteAddress: string) => t.request({ method: 'GET', url: '/v1/tenants', token, remoteAddress });

    /** 60 failures of every kind: unknown keys, malformed keys, no credentials, wrong admin tokens. */
    async function exhaust(address: string): Promise<number[]> {
      const statuses: number[] = [];
      for (let i = 0; i < 15; i++) {
        statuses.push((await keys(unknownKey(), address)).statusCode);
        statuses.push((await keys('bk_live_wrong', address)).statusCode);
        statuses.push((await keys(undefined, address)).statusCode);
        statuses.push((await tenants(`not-the-admin-token-${String(i)}-0123456789abcdef`, address)).statusCode);
      }
      return statuses;
    }

    it('after 60 failures, a valid key and the admin token from that address still get in; invalid credentials get 429 with Retry-After', async () => {
      const { key } = await t.workspaceWithKey(['keys:manage']);
      const attacker = freshAddress();
      expect(new Set(await exhaust(attacker))).toEqual(new Set([401]));

      expect((await keys(key, attacker)).statusCode).toBe(200);
      expect((await tenants(testSecrets.adminToken, attacker)).statusCode).toBe(200);

      for (const refused of [await keys(unknownKey(), attacker), await keys('bk_live_wrong', attacker), await keys(undefined, attacker), await tenants('x'.repeat(40), attacker)]) {
        const body = refused.json<{ code: string; scope: string }>();
        expect([refused.statusCode, body.code, body.scope]).toEqual([429, 'rate_limited', 'auth_failures']);
        expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
        expect(Number(refused.headers['retry-after'])).toBeLessThanOrEqual(60);
      }
      // A success does not clear the address's failures.
      expect((await keys(unknownKey(), attacker)).statusCode).toBe(429);

      // Another address is unaffected.
      const other = freshAddress();
      expect((await keys(unknownKey(), other)).statusCode).toBe(401);
      expect((await keys(key, other)).statusCode).toBe(200);
    });

    it("holds a valid key from a refused address to that key's own budgets", async () => {
      const { key } = await t.workspaceWithKey(['keys:manage']);
      const attacker = freshAddress();
      await exhaust(attacker);
      const answers = [];
      for (let i = 0; i < 6; i++) answers.push(await keys(key, attacker));
      expect(answers.slice(0, 5).map((a) => a.statusCode)).toEqual([200, 200, 200, 200, 200]);
      const spent = answers[5];
      expect([spent?.statusCode, spent?.json<{ scope: string }>().scope]).toEqual([429, 'api_key']);
    });
  });
});

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
