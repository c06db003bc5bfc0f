/**
 * Bad input at the edge, on both engines: text with NUL or unpaired surrogates, JSON nested too
 * deep, numbers a double cannot carry, encoded bodies, and the router's own refusals — each a
 * 4xx problem+json with a stable code, never a 500, and nothing written.
 */
import { gzipSync } from 'node:zlib';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isErrorCode } from '../errors.js';
import { acmeHmac, signers } from '../inbound/testing.js';
import { startTestApp, testSecrets, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import { dereference } from '../testing/openapi.js';
import { MAX_JSON_DEPTH } from './json.js';

interface Problem {
  status: number;
  code: string;
  requestId: string;
  location?: string;
  pointer?: string;
}

function expectProblem(res: LightMyRequestResponse, status: number, code: string): Problem {
  expect(res.headers['content-type'], res.body).toContain('application/problem+json');
  const body = res.json<Problem>();
  expect({ status: res.statusCode, code: body.code }, res.body).toEqual({ status, code });
  expect(body.status).toBe(status);
  expect(body.requestId).toBe(res.headers['x-request-id']);
  return body;
}

const deep = (depth: number, leaf = '1') => `${'['.repeat(depth)}${leaf}${']'.repeat(depth)}`;

interface SchemaNode { type?: string | string[]; properties?: Record<string, SchemaNode>; items?: SchemaNode; additionalProperties?: boolean | SchemaNode; patternProperties?: Record<string, SchemaNode>; anyOf?: SchemaNode[]; oneOf?: SchemaNode[] }

/** Every place a string can sit in a body schema, as the path of keys to it (records get a key "k", arrays index 0). */
function stringPaths(schema: SchemaNode, at: (string | number)[] = [], seen = 0): (string | number)[][] {
  if (seen > 8) return [];
  const types = Array.isArray(schema.type) ? schema.type : schema.type === undefined ? [] : [schema.type];
  const out: (string | number)[][] = types.includes('string') ? [at] : [];
  for (const [name, child] of Object.entries(schema.properties ?? {})) out.push(...stringPaths(child, [...at, name], seen + 1));
  if (typeof schema.additionalProperties === 'object') out.push(...stringPaths(schema.additionalProperties, [...at, 'k'], seen + 1));
  for (const child of Object.values(schema.patternProperties ?? {})) out.push(...stringPaths(child, [...at, 'k'], seen + 1));
  if (schema.items) out.push(...stringPaths(schema.items, [...at, 0], seen + 1));
  for (const child of [...(schema.anyOf ?? []), ...(schema.oneOf ?? [])]) out.push(...stringPaths(child, at, seen + 1));
  return out;
}

function place(path: (string | number)[], value: unknown): unknown {
  return path.reduceRight<unknown>((inner, key) => (typeof key === 'number' ? [inner] : { [key]: inner }), value);
}

describe.each(backends)('bad input at the edge on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    let w: Awaited<ReturnType<TestApp['workspaceWithKey']>>;
    beforeAll(async () => {
      t = await startTestApp(backend, { config: { bodyLimitBytes: 64 * 1024 } });
      w = await t.workspaceWithKey(['*']);
    });
    afterAll(async () => t.close());

    const counts = async () =>
      (await t.database.db.owner.query<Record<string, number>>(
        `SELECT (SELECT count(*)::int FROM tenants) AS tenants, (SELECT count(*)::int FROM workspaces) AS workspaces, (SELECT count(*)::int FROM api_keys) AS keys,
                (SELECT count(*)::int FROM providers) AS providers, (SELECT count(*)::int FROM events) AS events, (SELECT count(*)::int FROM rules) AS rules,
                (SELECT count(*)::int FROM connections) AS connections`,
      )).rows[0];
    const raw = (method: 'POST' | 'PATCH' | 'PUT', url: string, payload: string, token: string = w.key, headers: Record<string, string> = {}) =>
      t.request({ method, url, token, payload, headers: { 'content-type': 'application/json', ...headers } });

    it('refuses NUL and unpaired surrogates in text that used to reach PostgreSQL, naming the value, and writes nothing', async () => {
      const before = await counts();
      const cases: [string, string, string, string][] = [
        ['/v1/tenants', '{"name":"a\\u0000b","slug":"nul-tenant"}', testSecrets.adminToken, '/name'],
        [`/v1/tenants/${w.tenantId}/workspaces`, '{"name":"w\\u0000","environment":"production"}', testSecrets.adminToken, '/name'],
        [`/v1/workspaces/${w.workspaceId}/api-keys`, '{"name":"k\\u0000","scopes":["*"]}', testSecrets.adminToken, '/name'],
        ['/v1/providers', '{"key":"lone-surrogate","name":"Acme \\ud800","authType":"basic","baseUrls":["https://x.example"]}', testSecrets.adminToken, '/name'],
        ['/v1/api-keys', '{"name":"\\udc00key","scopes":["*"]}', w.key, '/name'],
      ];
      for (const [url, body, token, pointer] of cases) {
        expect(expectProblem(await raw('POST', url, body, token), 400, 'text_invalid'), `${url} ${body}`).toMatchObject({ location: 'body', pointer });
      }
      expect(await counts()).toEqual(before);
    });

    it('refuses NUL in query strings and path parameters', async () => {
      expect(expectProblem(await t.request({ method: 'GET', url: '/v1/events?type=order%00created', token: w.key }), 400, 'text_invalid')).toMatchObject({ location: 'query', pointer: '/type' });
      expect(expectProblem(await t.request({ method: 'GET', url: '/v1/api-keys?cursor=%00', token: w.key }), 400, 'text_invalid')).toMatchObject({ location: 'query', pointer: '/cursor' });
      expect(expectProblem(await t.request({ method: 'GET', url: '/v1/api-keys/key%00', token: w.key }), 400, 'text_invalid')).toMatchObject({ location: 'params', pointer: '/id' });
      expect(expectProblem(await t.admin('GET', '/v1/providers/acme%00'), 400, 'text_invalid')).toMatchObject({ location: 'params' });
    });

    it('refuses NUL and unpaired surrogates in every string field of every JSON body the API documents', async () => {
      const doc = dereference((await t.request({ method: 'GET', url: '/openapi.json' })).json<{
        paths: Record<string, Record<string, { security?: Record<string, unknown>[]; requestBody?: { content: Record<string, { schema: SchemaNode }> } }>>;
      }>());
      let fields = 0;
      for (const [path, operations] of Object.entries(doc.paths)) {
        for (const [method, operation] of Object.entries(operations)) {
          if (method === 'parameters' || method === 'description') continue;
          const schema = operation.requestBody?.content['application/json']?.schema;
          if (!schema) continue;
          const url = path.replace(/\{[^}]+\}/g, 'x_00000000000000000000000000');
          const token = operation.security?.some((s) => 'adminToken' in s) ? testSecrets.adminToken : w.key;
          for (const at of stringPaths(schema)) {
            fields++;
            const pointer = at.map((p) => `/${String(p)}`).join('');
            for (const bad of ['x\u0000y', 'x\ud800']) {
              const res = await raw(method.toUpperCase() as 'POST', url, JSON.stringify(place(at, bad)), token);
              expect(expectProblem(res, 400, 'text_invalid'), `${method} ${path} ${pointer}`).toMatchObject({ location: 'body', pointer });
            }
          }
        }
      }
      // Tenants, workspaces, keys, providers, connections, connect sessions, destinations, rules, instances, inbound sources, ...
      expect(fields).toBeGreaterThanOrEqual(29);
    });

    it(`refuses JSON nested deeper than ${String(MAX_JSON_DEPTH)} in events, batches, rule filters and connection metadata, and accepts it up to the limit`, async () => {
      const before = await counts();
      const tooDeep = deep(5000);
      const cases: [string, string, string][] = [
        ['/v1/events', `{"type":"deep.one","payload":${tooDeep}}`, '/payload'],
        ['/v1/events/batch', `{"events":[{"type":"deep.one","payload":${tooDeep}}]}`, '/events/0/payload'],
        ['/v1/rules', `{"name":"deep","eventTypes":["*"],"destinationIds":[],"filter":{"a":${tooDeep}}}`, '/filter/a'],
        ['/v1/connections', `{"provider":"stripe","name":"deep","credentials":{"apiKey":"sk_test_1"},"metadata":{"a":${tooDeep}}}`, '/metadata/a'],
      ];
      for (const [url, body, prefix] of cases) {
        const problem = expectProblem(await raw('POST', url, body), 400, 'json_too_deep');
        expect(problem.pointer?.startsWith(prefix), `${url}: ${problem.pointer ?? ''}`).toBe(true);
      }
      expect(await counts()).toEqual(before);
      // The limit counts containers: the payload sits one level down in the body.
      const fits = await raw('POST', '/v1/events', `{"type":"deep.fits","payload":${deep(MAX_JSON_DEPTH - 1)}}`);
      expect(fits.statusCode, fits.body).toBe(202);
      expectProblem(await raw('POST', '/v1/events', `{"type":"deep.over","payload":${deep(MAX_JSON_DEPTH)}}`), 400, 'json_too_deep');
    });

    it('refuses event numbers JSON cannot carry instead of storing null or another integer', async () => {
      const before = await counts();
      for (const [literal, pointer] of [['1e309', '/payload/n'], ['-1e309', '/payload/n'], ['18446744073709551616', '/payload/n'], ['9007199254740993', '/payload/n'], ['1e-400', '/payload/n']] as const) {
        expect(expectProblem(await raw('POST', '/v1/events', `{"type":"num.big","payload":{"n":${literal}}}`), 400, 'number_out_of_range'), literal).toMatchObject({ pointer });
      }
      expect(await counts()).toEqual(before);
      const ok = await raw('POST', '/v1/events', '{"type":"num.ok","payload":{"a":9007199254740991,"b":-9007199254740991,"c":1.5e300,"d":1e21,"e":0.1}}');
      expect(ok.statusCode, ok.body).toBe(202);
      const stored = await t.request({ method: 'GET', url: `/v1/events/${ok.json<{ id: string }>().id}`, token: w.key });
      expect(stored.json<{ payload: unknown }>().payload).toEqual({ a: 9007199254740991, b: -9007199254740991, c: 1.5e300, d: 1e21, e: 0.1 });
    });

    it('a signed inbound body the parser refuses is kept as the text that was signed, never a 500', async () => {
      const source = await t.request({ method: 'POST', url: '/v1/inbound-sources', token: w.key, json: { name: 'deep', scheme: 'hmac', hmac: acmeHmac, eventType: 'acme.{body:kind}' } });
      expect(source.statusCode, source.body).toBe(201);
      const { id, secret } = source.json<{ id: string; secret: string }>();
      for (const body of [`{"kind":"deep","a":${deep(5000)}}`, '{"kind":"nul","a":"\\u0000"}', '{"kind":"big","n":18446744073709551616}']) {
        const res = await t.request({ method: 'POST', url: `/hooks/${id}`, payload: body, headers: { 'content-type': 'application/json', ...signers.hmac(secret, body, t.clock.now()) } });
        expect(res.statusCode, res.body).toBe(202);
        const event = (await t.request({ method: 'GET', url: `/v1/events/${res.json<{ eventId: string }>().eventId}`, token: w.key })).json<{ type: string; payload: unknown }>();
        expect(event).toEqual(expect.objectContaining({ type: 'acme.unknown', payload: { contentType: 'application/json', text: body } }));
      }
    });

    it('refuses a Content-Encoding other than identity with 415, on the API and on /hooks', async () => {
      const before = await counts();
      const gzipped = gzipSync(JSON.stringify({ name: 'gz', slug: 'gz-tenant' }));
      expectProblem(await t.request({ method: 'POST', url: '/v1/tenants', token: testSecrets.adminToken, payload: '{"name":"gz","slug":"gz-tenant"}', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' } }), 415, 'unsupported_encoding');
      expectProblem(await t.request({ method: 'POST', url: '/v1/tenants', token: testSecrets.adminToken, payload: gzipped, headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' } }), 415, 'unsupported_encoding');
      expectProblem(await t.request({ method: 'POST', url: '/hooks/inb_00000000000000000000000000', payload: '{}', headers: { 'content-type': 'application/json', 'content-encoding': 'br' } }), 415, 'unsupported_encoding');
      expect(await counts()).toEqual(before);
      const identity = await t.request({ method: 'POST', url: '/v1/tenants', token: testSecrets.adminToken, payload: '{"name":"id","slug":"identity-tenant"}', headers: { 'content-type': 'application/json', 'content-encoding': 'identity' } });
      expect(identity.statusCode, identity.body).toBe(201);
    });

    it('answers every framework refusal a request can trigger as problem+json with a code from the union', async () => {
      const admin = { authorization: `Bearer ${testSecrets.adminToken}` };
      const cases: [string, Parameters<TestApp['request']>[0], number][] = [
        ['path parameter over 200 characters (FST_ERR_MAX_PARAM_LENGTH)', { method: 'GET', url: `/v1/tenants/${'a'.repeat(300)}`, headers: admin }, 414],
        ['bad percent-encoding in the path (FST_ERR_BAD_URL)', { method: 'GET', url: '/v1/tenants/%E0%A4%A', headers: admin }, 400],
        ['unsupported media type (FST_ERR_CTP_INVALID_MEDIA_TYPE)', { method: 'POST', url: '/v1/tenants', headers: { ...admin, 'content-type': 'application/xml' }, payload: '<x/>' }, 415],
        ['content-length larger than the body (FST_ERR_CTP_INVALID_CONTENT_LENGTH)', { method: 'POST', url: '/v1/tenants', headers: { ...admin, 'content-type': 'application/json', 'content-length': '100' }, payload: '{}' }, 400],
        ['empty JSON body (FST_ERR_CTP_EMPTY_JSON_BODY)', { method: 'POST', url: '/v1/tenants', headers: { ...admin, 'content-type': 'application/json' }, payload: '' }, 400],
        ['invalid JSON (FST_ERR_CTP_INVALID_JSON_BODY)', { method: 'POST', url: '/v1/tenants', headers: { ...admin, 'content-type': 'application/json' }, payload: '{"name":' }, 400],
        ['body over the limit (FST_ERR_CTP_BODY_TOO_LARGE)', { method: 'POST', url: '/v1/tenants', headers: { ...admin, 'content-type': 'application/json' }, payload: JSON.stringify({ name: 'x'.repeat(70_000) }) }, 413],
        ['an unknown route (404 handler)', { method: 'GET', url: '/v1/nowhere', headers: admin }, 404],
        ['an unknown method on a known path', { method: 'PUT', url: '/v1/tenants', headers: admin }, 405],
        ['a Content-Encoding the server does not decode', { method: 'POST', url: '/v1/tenants', headers: { ...admin, 'content-type': 'application/json', 'content-encoding': 'deflate' }, payload: '{}' }, 415],
        ['schema validation (FST_ERR_VALIDATION)', { method: 'POST', url: '/v1/tenants', headers: { ...admin, 'content-type': 'application/json' }, payload: '{}' }, 400],
      ];
      for (const [what, request, status] of cases) {
        const res = await t.request(request);
        expect(res.statusCode, `${what}: ${res.body}`).toBe(status);
        expect(res.headers['content-type'], what).toContain('application/problem+json');
        const body = res.json<Problem>();
        expect(isErrorCode(body.code), `${what}: ${body.code}`).toBe(true);
        expect(body.status, what).toBe(status);
        expect(body.requestId, what).toBe(res.headers['x-request-id']);
      }
    });
  });
});
