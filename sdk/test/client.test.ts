/**
 * The client against a live server (PGlite, a real listener): typed calls by group, errors as
 * BulkheadApiError with the server's code, bounded retries on 429/503 honouring Retry-After,
 * idempotency keys for event posts that make a retried post land once, and pagination.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, testSecrets, type TestApp } from '../../src/testing/app.js';
import { backends } from '../../src/testing/databases.js';
import { Bulkhead, BulkheadApiError, type ErrorCode } from '../src/index.js';

const pglite = backends.filter((b) => b.name === 'pglite');

async function failure(promise: Promise<unknown>): Promise<BulkheadApiError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof BulkheadApiError) return error;
    throw error;
  }
  throw new Error('expected a BulkheadApiError');
}

describe.each(pglite)('the SDK client against a live server on $name', (backend) => {
  let t: TestApp;
  let base: string;
  let key: string;
  let bulkhead: Bulkhead;
  beforeAll(async () => {
    t = await startTestApp(backend, { config: { rateLimits: { perKeyPerMinute: 1000, perWorkspacePerMinute: 100_000, perTenantPerMinute: 100_000 }, egressAllowCidrs: ['127.0.0.1/32'] } });
    base = await t.app.http.listen({ host: '127.0.0.1', port: 0 });
    key = (await t.workspaceWithKey(['*'])).key;
    bulkhead = new Bulkhead({ baseUrl: base, token: key });
  });
  afterAll(async () => t.close());

  it('calls operations by group with typed path, query and body, and the admin token on admin routes', async () => {
    const admin = new Bulkhead({ baseUrl: `${base}/`, token: testSecrets.adminToken });
    const tenant = await admin.tenancy.createTenant({ body: { name: 'Sdk', slug: 'sdk-client' } });
    expect(await admin.tenancy.getTenant({ id: tenant.id })).toMatchObject({ id: tenant.id, slug: 'sdk-client' });
    await expect(admin.tenancy.deleteTenant({ id: tenant.id })).resolves.toBeUndefined();
    expect((await failure(admin.tenancy.getTenant({ id: tenant.id }))).code).toBe('not_found');

    const accepted = await bulkhead.events.create({ body: { type: 'order.created', payload: { n: 1 } } });
    expect(accepted).toMatchObject({ type: 'order.created', replayed: false });
    const event = await bulkhead.events.get({ id: accepted.id });
    expect(event.payload).toEqual({ n: 1 });
    const listed = await bulkhead.events.list({ query: { type: 'order.created', limit: 10 } });
    expect(listed.data.map((e) => e.id)).toContain(accepted.id);
    expect(await bulkhead.request('getHealth')).toMatchObject({ status: 'ok' });
  });

  it('lets a body with nothing required be left out, and sends it as {}', async () => {
    const destination = await bulkhead.destinations.create({ body: { url: 'http://127.0.0.1:9/sdk' } });
    // rotateDestinationSecret's body ({ overlapSeconds? }) is required by the document but has
    // nothing required in it: the method takes no body, and the server gets `{}`.
    const rotated = await bulkhead.destinations.rotateSecret({ id: destination.id });
    expect(rotated.secret).toMatch(/^whsec_/);
    expect(rotated.secret).not.toBe(destination.secret);
    // A PATCH needs one field at least (minProperties): there the body stays required.
    // @ts-expect-error body is required
    expect((await failure(bulkhead.destinations.update({ id: destination.id }))).code).toBe('validation_failed');
    // and an operation without a body takes none.
    // @ts-expect-error getDestination has no body
    await bulkhead.destinations.get({ id: destination.id, body: {} });
  });

  it('answers errors as BulkheadApiError: the server code, status, detail and request id', async () => {
    const missing = await failure(bulkhead.events.get({ id: 'evt_doesnotexist' }));
    const code: ErrorCode | 'unexpected_response' = missing.code;
    expect({ status: missing.status, code }).toEqual({ status: 404, code: 'not_found' });
    expect(missing.requestId).toMatch(/.+/);
    expect(missing.detail).toMatch(/.+/);

    const invalid = await failure(bulkhead.destinations.create({ body: { url: 'not a url' } }));
    expect(invalid).toMatchObject({ status: 400, code: 'validation_failed' });
    expect(invalid.problem?.['errors']).toEqual(expect.arrayContaining([expect.objectContaining({ pointer: '/url' })]));

    const unauthenticated = await failure(new Bulkhead({ baseUrl: base, token: 'bk_nope' }).events.list());
    expect(unauthenticated.status).toBe(401);
    expect(unauthenticated.code).not.toBe('unexpected_response');
  });

  it('retries a 503 after Retry-After with the same generated idempotency key: the event lands once', async () => {
    const sent: { key: string | null; body: string }[] = [];
    const sleeps: number[] = [];
    let lose = 1;
    // The first answer is lost after the server took the event (a proxy 503 on the way back).
    const flaky: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      sent.push({ key: new Headers(init?.headers).get('idempotency-key'), body: typeof init?.body === 'string' ? init.body : '' });
      if (lose-- > 0) return new Response('{"code":"not_ready","detail":"starting","requestId":"x","type":"t","title":"t","status":503}', { status: 503, headers: { 'retry-after': '1', 'content-type': 'application/problem+json' } });
      return response;
    };
    const client = new Bulkhead({ baseUrl: base, token: key, fetch: flaky, sleep: (ms) => (sleeps.push(ms), Promise.resolve()) });
    const accepted = await client.events.create({ body: { type: 'order.retried', payload: {} } });
    expect(sleeps).toEqual([1000]);
    expect(sent).toHaveLength(2);
    expect(sent[0]?.key).toMatch(/^[0-9a-f-]{36}$/);
    expect(sent[1]?.key).toBe(sent[0]?.key);
    expect(accepted.replayed).toBe(true);
    expect((await bulkhead.events.list({ query: { type: 'order.retried' } })).data).toHaveLength(1);

    // A key given is the key sent; two calls without one are two events.
    lose = 0;
    sent.length = 0;
    await client.events.create({ body: { type: 'order.keyed', payload: {} } }, { idempotencyKey: 'order-77' });
    await client.events.create({ body: { type: 'order.keyed', payload: {} } }, { idempotencyKey: 'order-77' });
    await client.events.create({ body: { type: 'order.keyed', payload: {} } });
    expect(sent.map((s) => s.key).slice(0, 2)).toEqual(['order-77', 'order-77']);
    expect((await bulkhead.events.list({ query: { type: 'order.keyed' } })).data).toHaveLength(2);
  });

  it('gives each event of a batch its own key, fixed across the retry', async () => {
    let lose = 1;
    const bodies: string[] = [];
    const flaky: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      bodies.push(typeof init?.body === 'string' ? init.body : '');
      return lose-- > 0 ? new Response('', { status: 503 }) : response;
    };
    const client = new Bulkhead({ baseUrl: base, token: key, fetch: flaky, sleep: () => Promise.resolve() });
    const result = await client.events.createBatch({ body: { events: [{ type: 'batch.a', payload: {} }, { type: 'batch.a', payload: {}, idempotencyKey: 'mine' }] } });
    expect(result.data.map((e) => e.replayed)).toEqual([true, true]);
    const keys = (JSON.parse(bodies[0] ?? '{}') as { events: { idempotencyKey: string }[] }).events.map((e) => e.idempotencyKey);
    expect(keys[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(keys[1]).toBe('mine');
    expect(bodies[1]).toBe(bodies[0]);
    expect((await bulkhead.events.list({ query: { type: 'batch.a' } })).data).toHaveLength(2);
  });

  it('bounds retries: attempts in all, and a Retry-After past the time budget is not waited for', async () => {
    let calls = 0;
    const busy: typeof fetch = () => (calls++, Promise.resolve(new Response('{"code":"database_unavailable","detail":"down","requestId":"r1"}', { status: 503, headers: { 'retry-after': '0' } })));
    const sleeps: number[] = [];
    const client = new Bulkhead({ baseUrl: base, token: key, fetch: busy, retry: { maxAttempts: 4 }, sleep: (ms) => (sleeps.push(ms), Promise.resolve()) });
    expect(await failure(client.events.list())).toMatchObject({ status: 503, code: 'database_unavailable', requestId: 'r1', retryAfterSeconds: 0 });
    expect(calls).toBe(4);
    expect(sleeps).toEqual([0, 0, 0]);

    // The server's own rate limiter: a key with 2 requests a minute; its Retry-After (tens of
    // seconds) is over a 1 s budget, so the client answers at once with the 429.
    const limited = await startTestApp(backend, { database: t.database, config: { rateLimits: { perKeyPerMinute: 2, perWorkspacePerMinute: 100, perTenantPerMinute: 100 } } });
    try {
      const limitedBase = await limited.app.http.listen({ host: '127.0.0.1', port: 0 });
      const slept: number[] = [];
      const client2 = new Bulkhead({ baseUrl: limitedBase, token: (await limited.workspaceWithKey(['*'])).key, retry: { maxRetryTimeMs: 1000 }, sleep: (ms) => (slept.push(ms), Promise.resolve()) });
      await client2.events.list();
      await client2.events.list();
      const error = await failure(client2.events.list());
      expect(error).toMatchObject({ status: 429, code: 'rate_limited' });
      expect(error.retryAfterSeconds).toBeGreaterThan(1);
      expect(slept).toEqual([]);
    } finally {
      await limited.app.close();
    }
  });

  it('iterates every page of a list with list.all(), following nextCursor', async () => {
    await bulkhead.events.createBatch({ body: { events: Array.from({ length: 5 }, (_, i) => ({ type: 'page.item', payload: { i } })) } });
    const urls: string[] = [];
    const counting: typeof fetch = (input, init) => (urls.push(input instanceof Request ? input.url : input.toString()), fetch(input, init));
    const client = new Bulkhead({ baseUrl: base, token: key, fetch: counting });
    const seen: unknown[] = [];
    for await (const event of client.events.list.all({ query: { type: 'page.item', limit: 2 } })) seen.push(event.payload);
    expect(seen).toHaveLength(5);
    expect(new Set(seen.map((p) => JSON.stringify(p))).size).toBe(5);
    expect(urls).toHaveLength(3);
    expect(urls[1]).toMatch(/cursor=/);
  });
});
