import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../app.js';
import { parseConfig } from '../config.js';
import { databaseRef } from '../db/open.js';
import { createLogger } from '../logging.js';
import { startTestApp, testClock, testSecrets, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import { dereference } from '../testing/openapi.js';

interface ProblemBody {
  type: string;
  title: string;
  status: number;
  code: string;
  detail: string;
  requestId: string;
}

describe.each(backends)('the HTTP edge on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    let tenantId: string;
    beforeAll(async () => {
      t = await startTestApp(backend, { config: { bodyLimitBytes: 4096 } });
      tenantId = (await t.admin('POST', '/v1/tenants', { name: 'Edge', slug: 'edge' })).json<{ id: string }>().id;
    });
    afterAll(async () => t.close());

    const counts = async () => {
      const { rows } = await t.database.db.owner.query<Record<string, number>>(
        `SELECT (SELECT count(*)::int FROM tenants) AS tenants, (SELECT count(*)::int FROM workspaces) AS workspaces,
                (SELECT count(*)::int FROM api_keys) AS keys, (SELECT count(*)::int FROM platform_audit_log) AS platform_audit,
                (SELECT count(*)::int FROM audit_log) AS audit`,
      );
      return rows[0];
    };

    const expectProblem = (res: { statusCode: number; headers: Record<string, unknown>; json: () => unknown }, status: number, code: string) => {
      expect(res.headers['content-type']).toContain('application/problem+json');
      const body = res.json() as ProblemBody;
      expect({ status: res.statusCode, code: body.code }).toEqual({ status, code });
      expect(body).toMatchObject({ type: `urn:bulkhead:error:${code}`, status });
      expect(typeof body.title).toBe('string');
      expect(typeof body.detail).toBe('string');
      expect(body.requestId).toBe(res.headers['x-request-id']);
    };

    it('bad request bodies get 4xx problem+json with stable codes and write nothing', async () => {
      const { key } = await t.workspaceWithKey(['*']);
      const before = await counts();
      const raw = (url: string, payload: string, token = testSecrets.adminToken, contentType = 'application/json') =>
        t.request({ method: 'POST', url, token, payload, headers: { 'content-type': contentType } });

      expectProblem(await raw('/v1/tenants', '{"name": "x", "slug": '), 400, 'malformed_json');
      expectProblem(await raw('/v1/tenants', ''), 400, 'malformed_json');
      expectProblem(await t.admin('POST', '/v1/tenants', { name: 'x', slug: 'ok-slug', extra: true }), 400, 'validation_failed');
      expectProblem(await t.admin('POST', '/v1/tenants', { name: 123, slug: 'typed' }), 400, 'validation_failed');
      expectProblem(await t.admin('POST', '/v1/tenants', { slug: 'no-name' }), 400, 'validation_failed');
      expectProblem(await t.admin('POST', '/v1/tenants', { name: 'x', slug: 'Bad Slug!' }), 400, 'validation_failed');
      expectProblem(await t.admin('POST', '/v1/tenants', [{ name: 'x', slug: 'arr' }]), 400, 'validation_failed');
      expectProblem(await raw('/v1/tenants', 'name=x&slug=y', testSecrets.adminToken, 'application/x-www-form-urlencoded'), 415, 'unsupported_media_type');
      expectProblem(await raw('/v1/tenants', JSON.stringify({ name: 'x'.repeat(5000), slug: 'big' })), 413, 'payload_too_large');
      expectProblem(await raw('/v1/tenants', '{"name":"x","slug":"proto","__proto__":{"admin":true}}'), 400, 'malformed_json');
      expectProblem(await raw('/v1/tenants', '{"name":"x","slug":"ctor","constructor":{"prototype":{"admin":true}}}'), 400, 'malformed_json');
      expectProblem(await t.admin('POST', `/v1/tenants/${tenantId}/workspaces`, { name: 'w', environment: 'PROD; DROP TABLE x' }), 400, 'validation_failed');
      expectProblem(await t.request({ method: 'POST', url: '/v1/api-keys', token: key, json: { name: 'k', scopes: ['everything'] } }), 400, 'validation_failed');
      expectProblem(await t.request({ method: 'POST', url: '/v1/api-keys', token: key, json: { name: 'k', scopes: ['*'], allowedCidrs: ['10.0.0.0/99'] } }), 400, 'validation_failed');
      expectProblem(await t.request({ method: 'POST', url: '/v1/api-keys', token: key, json: { name: 'k', scopes: ['*'], expiresAt: '2001-01-01T00:00:00Z' } }), 400, 'validation_failed');
      expectProblem(await t.request({ method: 'GET', url: '/v1/api-keys?limit=100000', token: key }), 400, 'validation_failed');
      expectProblem(await t.request({ method: 'GET', url: '/v1/api-keys?cursor=bm90LWFuLWlk', token: key }), 400, 'invalid_cursor');
      expect(await counts()).toEqual(before);
    });

    it('unknown routes, hostile ids and other tenants answer 404 problems', async () => {
      expectProblem(await t.admin('GET', '/v1/nope'), 404, 'route_not_found');
      for (const id of ["ten_' OR 1=1 --", 'ten_00000000000000000000000000', '..%2F..%2Fetc', 'ws_00000000000000000000000000']) {
        expectProblem(await t.admin('GET', `/v1/tenants/${encodeURIComponent(id)}`), 404, 'not_found');
        expectProblem(await t.admin('GET', `/v1/workspaces/${encodeURIComponent(id)}`), 404, 'not_found');
      }
    });

    it('echoes a well-formed X-Request-Id and replaces a hostile one', async () => {
      const good = await t.request({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'client-req-12345' } });
      expect(good.headers['x-request-id']).toBe('client-req-12345');
      for (const hostile of ['a'.repeat(500), 'abc\u0000defghij', '<script>alert(1)</script>']) {
        const res = await t.request({ method: 'GET', url: '/healthz', headers: { 'x-request-id': hostile } });
        expect(res.headers['x-request-id']).toMatch(/^req_[A-Za-z0-9_-]{16}$/);
      }
    });

    it('serves an OpenAPI 3.1 document whose request schemas reject unknown properties', async () => {
      // Shared schemas are referenced from components; walk the document with them in place.
      const doc = dereference((await t.request({ method: 'GET', url: '/openapi.json' })).json<{
        openapi: string;
        paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: { additionalProperties?: boolean } }> } }>>;
      }>());
      expect(doc.openapi).toBe('3.1.0');
      for (const path of ['/v1/tenants', '/v1/tenants/{id}/workspaces', '/v1/api-keys', '/v1/api-keys/{id}/rotate', '/v1/audit-log/verify']) {
        expect(Object.keys(doc.paths)).toContain(path);
      }
      const bodies = Object.values(doc.paths).flatMap((ops) => Object.values(ops).filter((op) => typeof op === 'object' && !Array.isArray(op))).flatMap((op) => (op.requestBody ? Object.values(op.requestBody.content) : []));
      expect(bodies.length).toBeGreaterThan(5);
      for (const body of bodies) expect(body.schema.additionalProperties).toBe(false);
    });

    it('answers /healthz and /readyz', async () => {
      expect((await t.request({ method: 'GET', url: '/healthz' })).json()).toEqual({ status: 'ok' });
      expect((await t.request({ method: 'GET', url: '/readyz' })).json()).toEqual({ status: 'ready' });
    });
  });
});

describe('before the database is open', () => {
  it('answers /healthz, and 503 not_ready on /readyz and the API', async () => {
    const config = parseConfig({ LOG_LEVEL: 'silent' });
    const app = await buildApp({ config, secrets: testSecrets, logger: createLogger({ level: 'silent' }), db: databaseRef(), runtime: testClock() });
    try {
      expect((await app.http.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
      const ready = await app.http.inject({ method: 'GET', url: '/readyz' });
      expect([ready.statusCode, ready.json<{ code: string }>().code]).toEqual([503, 'not_ready']);
      const api = await app.http.inject({ method: 'GET', url: '/v1/tenants', headers: { authorization: `Bearer ${testSecrets.adminToken}` } });
      expect([api.statusCode, api.json<{ code: string }>().code]).toEqual([503, 'not_ready']);
    } finally {
      await app.close();
    }
  });
});
