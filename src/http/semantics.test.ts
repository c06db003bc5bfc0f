/**
 * HTTP semantics over every route the OpenAPI document lists, on both engines: the credential a
 * route takes (a credential of the other kind is `wrong_credential_kind`, not "invalid"), media
 * types (`415`), methods (`405` with `Allow`), and validation problems that name the value and say
 * what is wrong with it.
 */
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allScopes } from '../identity/scopes.js';
import { startTestApp, testSecrets, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';

interface Problem {
  status: number;
  code: string;
  detail: string;
  requestId: string;
  [extra: string]: unknown;
}

interface Operation {
  security?: Record<string, unknown>[];
  requestBody?: { content: Record<string, unknown> };
}
type Paths = Record<string, Record<string, Operation>>;

function expectProblem(res: LightMyRequestResponse, status: number, code: string, what = ''): Problem {
  expect(res.headers['content-type'], `${what} ${res.body}`).toContain('application/problem+json');
  const body = res.json<Problem>();
  expect({ status: res.statusCode, code: body.code }, `${what} ${res.body}`).toEqual({ status, code });
  expect(body.requestId).toBe(res.headers['x-request-id']);
  return body;
}

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;
/** A path item's keys are its methods and shared ones (`parameters`, `description`). */
const isMethod = (key: string): boolean => (METHODS as readonly string[]).includes(key.toUpperCase());
const concrete = (path: string) => path.replace(/\{\*\}/g, 'any/thing').replace(/\{[^}]+\}/g, 'x_00000000000000000000000000');

describe.each(backends)('HTTP semantics on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    let w: Awaited<ReturnType<TestApp['workspaceWithKey']>>;
    let paths: Paths;
    beforeAll(async () => {
      // Every wrong credential below is a failed authentication; this file sends many from one address.
      t = await startTestApp(backend, { config: { authFailuresPerMinute: 1_000_000 } });
      w = await t.workspaceWithKey(['*']);
      paths = (await t.request({ method: 'GET', url: '/openapi.json' })).json<{ paths: Paths }>().paths;
    });
    afterAll(async () => t.close());

    const operations = () =>
      Object.entries(paths).flatMap(([path, ops]) => Object.entries(ops).filter(([method]) => isMethod(method)).map(([method, op]) => ({ path, method: method.toUpperCase() as (typeof METHODS)[number], op })));
    const kindsOf = (op: Operation) => new Set((op.security ?? []).flatMap((s) => Object.keys(s)));

    describe('credential kinds', () => {
      it('answers 401 wrong_credential_kind, naming the kind the route takes, on every route of one kind given the other', async () => {
        let adminRoutes = 0;
        let keyRoutes = 0;
        for (const { path, method, op } of operations()) {
          const kinds = kindsOf(op);
          if (kinds.size !== 1) continue;
          const url = concrete(path);
          if (kinds.has('adminToken')) {
            adminRoutes++;
            const problem = expectProblem(await t.request({ method, url, token: w.key }), 401, 'wrong_credential_kind', `${method} ${path} with an API key`);
            expect(problem, `${method} ${path}`).toMatchObject({ expected: 'admin_token', got: 'api_key' });
            expect(problem.detail).toContain('admin token');
          } else {
            keyRoutes++;
            const problem = expectProblem(await t.request({ method, url, token: testSecrets.adminToken }), 401, 'wrong_credential_kind', `${method} ${path} with the admin token`);
            expect(problem, `${method} ${path}`).toMatchObject({ expected: 'api_key', got: 'admin_token' });
            expect(problem.detail).toContain('API key');
          }
        }
        expect(adminRoutes).toBeGreaterThanOrEqual(20);
        expect(keyRoutes).toBeGreaterThanOrEqual(50);
      });

      it('still calls a credential of the right kind that does not check out invalid', async () => {
        expectProblem(await t.request({ method: 'GET', url: '/v1/tenants', token: 'bk_admin_not_the_token' }), 401, 'admin_token_invalid');
        expectProblem(await t.request({ method: 'GET', url: '/v1/events', token: 'not-a-key' }), 401, 'api_key_malformed');
        expectProblem(await t.request({ method: 'GET', url: '/v1/events' }), 401, 'unauthenticated');
      });

      it('lets a workspace key read the provider catalog, without the platform OAuth app settings', async () => {
        // The platform configures an OAuth app (client id and sealed secret) for one provider.
        const configured = await t.admin('PUT', '/v1/providers/github/oauth-app', { clientId: 'platform-client-id', clientSecret: 'platform-client-secret', scopes: ['repo'] });
        expect(configured.statusCode, configured.body).toBe(200);
        const asAdmin = await t.admin('GET', '/v1/providers');
        expect(asAdmin.statusCode).toBe(200);
        expect(asAdmin.json<{ data: { key: string; oauthApp?: unknown }[] }>().data.find((p) => p.key === 'github')?.oauthApp).toMatchObject({ clientId: 'platform-client-id', clientSecretSet: true });

        for (const url of ['/v1/providers', '/v1/providers/github']) {
          const res = await t.request({ method: 'GET', url, token: w.key });
          expect(res.statusCode, res.body).toBe(200);
          expect(res.body).not.toContain('platform-client-id');
          expect(res.body).not.toContain('platform-client-secret');
          expect(res.body).not.toContain('oauthApp');
        }
        const list = (await t.request({ method: 'GET', url: '/v1/providers', token: w.key })).json<{ data: { key: string; oauthConfigured: boolean }[] }>().data;
        expect(list.find((p) => p.key === 'github')).toMatchObject({ oauthConfigured: true });
        expect(list.length).toBe(asAdmin.json<{ data: unknown[] }>().data.length);
        // Reading is all: the catalog is still changed with the admin token only.
        const create = await t.request({ method: 'POST', url: '/v1/providers', token: w.key, json: { key: 'mine', name: 'Mine', authType: 'basic', baseUrls: ['https://x.example'] } });
        expect(expectProblem(create, 401, 'wrong_credential_kind')).toMatchObject({ expected: 'admin_token' });
        // A key needs connections:read, as for the connections themselves.
        const narrow = await t.workspaceWithKey(['events:write']);
        expectProblem(await t.request({ method: 'GET', url: '/v1/providers', token: narrow.key }), 403, 'insufficient_scope');
      });
    });

    describe('media types', () => {
      it('answers 415 unsupported_media_type to a text/plain body on every route that takes JSON', async () => {
        let routes = 0;
        for (const { path, method, op } of operations()) {
          if (!op.requestBody?.content['application/json']) continue;
          routes++;
          const token = kindsOf(op).has('adminToken') ? testSecrets.adminToken : w.key;
          const res = await t.request({ method, url: concrete(path), token, payload: '{"name":"x"}', headers: { 'content-type': 'text/plain' } });
          expectProblem(res, 415, 'unsupported_media_type', `${method} ${path}`);
        }
        expect(routes).toBeGreaterThanOrEqual(25);
      });

      it('keeps the content types of the routes that take any (inbound hooks, the relay)', async () => {
        const hook = await t.request({ method: 'POST', url: '/hooks/inb_00000000000000000000000000', payload: 'hello', headers: { 'content-type': 'text/plain' } });
        expect(hook.statusCode, hook.body).not.toBe(415);
        const relay = await t.request({ method: 'POST', url: '/v1/proxy/con_00000000000000000000000000/x', token: w.key, payload: 'hello', headers: { 'content-type': 'text/plain' } });
        expect(relay.statusCode, relay.body).not.toBe(415);
      });
    });

    describe('methods', () => {
      it('answers 405 method_not_allowed with Allow on every documented path for every method it lacks', async () => {
        // A concrete URL can match more than one documented path (`/v1/events/batch` is also `/v1/events/{id}`).
        const templates = Object.entries(paths).map(([path, ops]) => ({ pattern: new RegExp(`^${path.replace(/\{\*\}/g, '.*').replace(/\{[^}]+\}/g, '[^/]+')}$`), methods: Object.keys(ops).filter(isMethod).map((m) => m.toUpperCase()) }));
        let refusals = 0;
        for (const path of Object.keys(paths)) {
          const url = concrete(path);
          const documented = new Set(templates.filter((p) => p.pattern.test(url)).flatMap((p) => p.methods));
          // Fastify answers HEAD wherever there is a GET.
          if (documented.has('GET')) documented.add('HEAD');
          const allow = [...documented].sort();
          for (const method of METHODS) {
            if (documented.has(method)) continue;
            refusals++;
            const res = await t.request({ method, url, token: w.key });
            expect(res.statusCode, `${method} ${path}: ${res.body}`).toBe(405);
            expect(res.headers.allow, `${method} ${path}`).toBe(allow.join(', '));
            if (method !== 'HEAD') expect(expectProblem(res, 405, 'method_not_allowed', `${method} ${path}`)).toMatchObject({ allowed: allow });
          }
        }
        expect(refusals).toBeGreaterThanOrEqual(150);
        const put = await t.request({ method: 'PUT', url: '/v1/events', token: w.key });
        expect([put.statusCode, put.headers.allow]).toEqual([405, 'GET, HEAD, POST']);
      });

      it('still answers 404 route_not_found where no method has a route', async () => {
        expectProblem(await t.request({ method: 'GET', url: '/v1/nowhere', token: w.key }), 404, 'route_not_found');
        expectProblem(await t.request({ method: 'PUT', url: '/v1/events/x/y/z', token: w.key }), 404, 'route_not_found');
      });
    });

    describe('validation problems', () => {
      const post = (url: string, json: unknown, token = w.key) => t.request({ method: 'POST', url, token, json });
      const errorsOf = (problem: Problem) => problem['errors'] as { location: string; pointer: string; message: string }[];

      it('an unknown scope is one entry that names the value and the allowed scopes', async () => {
        const problem = expectProblem(await post('/v1/api-keys', { name: 'k', scopes: ['events:read', '*', 'evnts:write'] }), 400, 'validation_failed');
        const message = `unknown scope "evnts:write"; allowed: ${allScopes.join(', ')}`;
        expect(errorsOf(problem)).toEqual([{ location: 'body', pointer: '/scopes/2', message }]);
        expect(problem.detail).toBe(`body /scopes/2: ${message}`);
      });

      it('each kind of mistake says in words what is wrong, at the pointer of the value', async () => {
        const cases: [string, unknown, string, string, (string | undefined)?][] = [
          ['/v1/tenants', { name: 'x', slug: 'ok-slug', extra: true }, '', 'unknown property "extra"', testSecrets.adminToken],
          ['/v1/api-keys', { name: 'k', scopes: ['*'], allowedCidrs: ['10.0.0.0/8'], foo: 1 }, '', 'unknown property "foo"'],
          ['/v1/tenants', { slug: 'no-name' }, '', 'missing required property "name"', testSecrets.adminToken],
          ['/v1/tenants', { name: 123, slug: 'typed' }, '/name', 'must be a string (got a number)', testSecrets.adminToken],
          ['/v1/tenants', { name: 'x', slug: 'Bad Slug!' }, '/slug', '"Bad Slug!" does not match the pattern', testSecrets.adminToken],
          ['/v1/tenants', [{ name: 'x', slug: 'arr' }], '', 'must be an object (got an array)', testSecrets.adminToken],
          ['/v1/api-keys', { name: 'k', scopes: [] }, '/scopes', 'must have at least 1 item', undefined],
          ['/v1/api-keys', { name: 'k', scopes: ['*', '*'] }, '/scopes', 'must not repeat an item (items 0 and 1 are identical)', undefined],
          ['/v1/api-keys', { name: '', scopes: ['*'] }, '/name', 'must be at least 1 character long', undefined],
          ['/v1/api-keys', { name: 'k', scopes: ['*'], expiresAt: 'tomorrow' }, '/expiresAt', '"tomorrow" is not a date-time', undefined],
        ];
        for (const [url, body, pointer, message, token] of cases) {
          const problem = expectProblem(await post(url, body, token), 400, 'validation_failed', JSON.stringify(body));
          const errors = errorsOf(problem);
          expect(errors, JSON.stringify(body)).toHaveLength(1);
          expect(errors[0]?.pointer, JSON.stringify(body)).toBe(pointer);
          expect(errors[0]?.message, JSON.stringify(body)).toContain(message);
          expect(problem.detail).toBe(`body ${pointer || '/'}: ${errors[0]?.message ?? ''}`);
        }
      });

      it('query strings and path parameters are described the same way', async () => {
        const problem = expectProblem(await t.request({ method: 'GET', url: '/v1/api-keys?limit=100000', token: w.key }), 400, 'validation_failed');
        expect(errorsOf(problem)).toEqual([{ location: 'query', pointer: '/limit', message: 'must be at most 200' }]);
        const status = expectProblem(await t.request({ method: 'GET', url: '/v1/deliveries?status=lost', token: w.key }), 400, 'validation_failed');
        expect(errorsOf(status)[0]).toMatchObject({ pointer: '/status', message: 'unknown delivery status "lost"; allowed: pending, delivering, retrying, delivered, failed, cancelled' });
      });
    });
  });
});
