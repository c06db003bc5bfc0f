/**
 * Integration templates over HTTP on both engines: publishing with the admin token, every
 * template problem at once, transform syntax errors with their position (the real QuickJS
 * compiler), immutable and strictly increasing versions, and the read-only catalog a workspace
 * key sees (no steps).
 *
 * The routes are not in src/app.ts yet, so each suite serves them from a second Fastify server
 * built the way app.ts builds its own, over the same core and database as the test app (which
 * provides tenants, workspaces and keys).
 */
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpServer } from '../http/server.js';
import { createCompiler } from '../sandbox/compile.js';
import { loadQuickJS } from '../sandbox/engine.js';
import { startTestApp, type TestApp, testSecrets } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import { startSideServer } from '../testing/side-server.js';
import { createInstanceService } from './instances.js';
import { createIntegrationService } from './integrations.js';
import { registerInstanceRoutes, registerIntegrationCatalogRoutes, registerIntegrationRoutes } from './routes.js';

interface Api {
  readonly http: HttpServer;
  call(token: string, method: NonNullable<InjectOptions['method']>, url: string, json?: unknown, headers?: Record<string, string>): Promise<LightMyRequestResponse>;
  admin(method: NonNullable<InjectOptions['method']>, url: string, json?: unknown): Promise<LightMyRequestResponse>;
}

async function serveIntegrations(t: TestApp): Promise<Api> {
  const { core } = t.app;
  const compile = createCompiler(loadQuickJS, { maxSourceBytes: 256 * 1024 });
  const integrations = createIntegrationService({ withPlatform: core.withPlatform, runtime: t.clock, compile });
  const instances = createInstanceService({ vault: core.vault, runtime: t.clock });
  const http = await startSideServer(t, (http) => {
    registerIntegrationRoutes(http, { integrations });
    registerIntegrationCatalogRoutes(http, { withWorkspace: core.withWorkspace, integrations });
    registerInstanceRoutes(http, { withWorkspace: core.withWorkspace, instances, limits: { instances: 100 } });
  });
  const call: Api['call'] = (token, method, url, json, headers = {}) =>
    http.inject({
      method,
      url,
      headers: { authorization: `Bearer ${token}`, ...(json === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      ...(json === undefined ? {} : { payload: typeof json === 'string' ? json : JSON.stringify(json) }),
    });
  return { http, call, admin: (method, url, json) => call(testSecrets.adminToken, method, url, json) };
}

let counter = 0;
const uniqueName = (base: string) => `${base}-${Date.now().toString(36)}-${String(counter++)}`;

function template(name: string, templateVersion: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name,
    version: templateVersion,
    description: `sync ${templateVersion}`,
    config: { channel: { type: 'string', required: true }, apiToken: { type: 'secret', required: true } },
    connections: { crm: { provider: 'stripe', description: 'the CRM account' } },
    destinations: { out: {} },
    triggers: [{ type: 'event', eventTypes: ['invoice.*'] }, { type: 'cron', schedule: '*/15 * * * *' }],
    steps: [
      { name: 'only-paid', type: 'filter', filter: { status: 'paid' } },
      { name: 'shape', type: 'transform', language: 'typescript', code: 'interface Ev { amount: number }\nfunction transform(event: Ev) {\n  return { cents: event.amount * 100 };\n}' },
      { name: 'send', type: 'deliver', destination: 'out' },
    ],
    ...extra,
  };
}

function expectProblem(response: LightMyRequestResponse, status: number, code: string): Record<string, unknown> {
  expect(response.statusCode, response.body).toBe(status);
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
  const body = response.json<Record<string, unknown>>();
  expect(body).toMatchObject({ status, code });
  return body;
}

describe.each(backends)('integration templates on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    let api: Api;
    beforeAll(async () => {
      t = await startTestApp(backend);
      api = await serveIntegrations(t);
    });
    afterAll(async () => {
      await api.http.close();
      await t.close();
    });

    const countIntegrations = async (name: string) =>
      (await t.database.db.owner.query<{ n: number }>('SELECT count(*)::int AS n FROM integrations WHERE name = $1', [name])).rows[0]?.n ?? 0;

    it('publishes a template, lists it, reads its version and stores the compiled transform', async () => {
      const name = uniqueName('crm-sync');
      const created = await api.admin('POST', '/v1/integrations', template(name, '1.0.0'));
      expect(created.statusCode, created.body).toBe(201);
      const integration = created.json<{ id: string; name: string; latestVersion: string; versions: { version: string; createdAt: string }[]; description: string }>();
      expect(integration.id).toMatch(/^itg_[0-9a-z]{26}$/);
      expect(integration).toMatchObject({ name, latestVersion: '1.0.0', description: 'sync 1.0.0' });
      expect(integration.versions.map((v) => v.version)).toEqual(['1.0.0']);

      const listed = await api.admin('GET', '/v1/integrations?limit=200');
      expect(listed.json<{ data: { id: string }[] }>().data.map((i) => i.id)).toContain(integration.id);
      expect((await api.admin('GET', `/v1/integrations/${integration.id}`)).json()).toEqual(integration);

      const read = await api.admin('GET', `/v1/integrations/${integration.id}/versions/1.0.0`);
      expect(read.statusCode, read.body).toBe(200);
      expect(read.json()).toMatchObject({ integrationId: integration.id, name, version: '1.0.0', document: template(name, '1.0.0') });

      // What the runner executes: the transform with its TypeScript types removed, keyed by step.
      const { rows } = await t.database.db.owner.query<{ compiled: Record<string, string> }>('SELECT compiled FROM integration_versions WHERE integration_id = $1', [integration.id]);
      expect(Object.keys(rows[0]?.compiled ?? {})).toEqual(['shape']);
      expect(rows[0]?.compiled['shape']).toContain('function transform(event) {');
      expect(rows[0]?.compiled['shape']).not.toContain('interface');

      // The platform audit chain records who published what.
      const audit = await t.database.db.owner.query<{ action: string; details: Record<string, unknown> }>("SELECT action, details FROM platform_audit_log WHERE target_id = $1 ORDER BY seq", [integration.id]);
      expect(audit.rows).toEqual([{ action: 'integration.create', details: { name, version: '1.0.0' } }]);
    });

    it('serves the JSON Schema of a template document', async () => {
      const schema = await api.admin('GET', '/v1/integrations/schema');
      expect(schema.statusCode).toBe(200);
      expect(schema.json()).toMatchObject({ $id: 'urn:bulkhead:schema:integration-template:1', required: ['name', 'version', 'triggers', 'steps'] });
      // The routes' own schemas make a valid OpenAPI document.
      const openapi = await api.http.inject({ method: 'GET', url: '/openapi.json' });
      expect(openapi.statusCode).toBe(200);
      expect(Object.keys(openapi.json<{ paths: Record<string, unknown> }>().paths)).toEqual(
        expect.arrayContaining(['/v1/integrations', '/v1/integrations/{id}/versions/{version}', '/v1/integration-catalog/{id}/versions/{version}', '/v1/instances/{id}/upgrade']),
      );
    });

    it('refuses an invalid template with every problem and its JSON pointer, and writes nothing', async () => {
      const name = uniqueName('broken');
      const bad = template(name, '1.0', {
        triggers: [{ type: 'cron', schedule: '61 * * * *' }, { type: 'inbound', source: 'nowhere' }],
        steps: [{ name: 'send', type: 'deliver', destination: 'missing' }, { name: 'send', type: 'filter', filter: { $where: 'x' } }],
      });
      const body = expectProblem(await api.admin('POST', '/v1/integrations', bad), 400, 'template_invalid');
      const paths = (body['problems'] as { path: string }[]).map((p) => p.path);
      expect(paths).toEqual(expect.arrayContaining(['/version', '/triggers/0/schedule', '/triggers/1/source', '/steps/0/destination', '/steps/1/name', '/steps/1/filter']));
      expect(await countIntegrations(name)).toBe(0);

      // An unknown top-level member, or not an object at all: the route's own schema answers.
      expectProblem(await api.admin('POST', '/v1/integrations', { ...template(name, '1.0.0'), colour: 'red' }), 400, 'validation_failed');
      expectProblem(await api.admin('POST', '/v1/integrations', [template(name, '1.0.0')]), 400, 'validation_failed');
      expectProblem(await api.admin('POST', '/v1/integrations', '{"name": "x", '), 400, 'malformed_json');
    });

    it('reports a transform syntax error with its step, line and column, and writes nothing', async () => {
      const name = uniqueName('syntax');
      const js = template(name, '1.0.0', { steps: [{ name: 'broken-js', type: 'transform', language: 'javascript', code: 'let a = 1;\n  let x = ;' }] });
      const body = expectProblem(await api.admin('POST', '/v1/integrations', js), 400, 'transform_syntax_error');
      expect(body).toMatchObject({ step: 'broken-js', line: 2, column: 11 });
      expect(body['detail']).toContain('(line 2, column 11)');
      expect(body['detail']).toContain('broken-js');

      const ts = template(name, '1.0.0', {
        steps: [
          { name: 'fine', type: 'transform', language: 'javascript', code: 'function transform(e) { return e; }' },
          { name: 'broken-ts', type: 'transform', language: 'typescript', code: 'let a: number = 1;\nfunction f(x: string {\n}' },
        ],
      });
      expect(expectProblem(await api.admin('POST', '/v1/integrations', ts), 400, 'transform_syntax_error')).toMatchObject({ step: 'broken-ts', line: 2, column: 22 });
      expect(await countIntegrations(name)).toBe(0);

      // The same check guards every later version.
      const ok = (await api.admin('POST', '/v1/integrations', template(name, '1.0.0'))).json<{ id: string }>();
      expect(expectProblem(await api.admin('POST', `/v1/integrations/${ok.id}/versions`, { ...js, version: '1.1.0' }), 400, 'transform_syntax_error')).toMatchObject({ step: 'broken-js' });
      expect((await api.admin('GET', `/v1/integrations/${ok.id}`)).json<{ versions: unknown[] }>().versions).toHaveLength(1);
    });

    it('keeps names unique', async () => {
      const name = uniqueName('unique');
      expect((await api.admin('POST', '/v1/integrations', template(name, '1.0.0'))).statusCode).toBe(201);
      expectProblem(await api.admin('POST', '/v1/integrations', template(name, '2.0.0')), 409, 'name_taken');
      expect(await countIntegrations(name)).toBe(1);
    });

    it('publishes only strictly newer versions and never changes a published one', async () => {
      const name = uniqueName('versions');
      const { id } = (await api.admin('POST', '/v1/integrations', template(name, '1.0.0'))).json<{ id: string }>();
      const publish = (doc: Record<string, unknown>) => api.admin('POST', `/v1/integrations/${id}/versions`, doc);

      const next = await publish(template(name, '1.2.0', { description: 'second' }));
      expect(next.statusCode, next.body).toBe(201);
      expect(next.json()).toMatchObject({ integrationId: id, version: '1.2.0', document: { description: 'second' } });

      // Same version with other content, the same precedence under build metadata, an older one.
      const changed = template(name, '1.2.0', { description: 'tampered' });
      expect(expectProblem(await publish(changed), 409, 'version_exists')).toMatchObject({ version: '1.2.0' });
      expectProblem(await publish(template(name, '1.2.0+build.7')), 409, 'version_exists');
      expectProblem(await publish(template(name, '1.0.0')), 409, 'version_exists');
      expect(expectProblem(await publish(template(name, '1.1.9')), 409, 'version_not_newer')).toMatchObject({ latestVersion: '1.2.0' });
      expectProblem(await publish(template(name, '1.2.0-rc.1')), 409, 'version_not_newer');
      // A version belongs to its integration's name.
      expect(expectProblem(await publish(template(`${name}-other`, '2.0.0')), 400, 'template_invalid')['problems']).toEqual([{ path: '/name', message: expect.stringContaining(name) as unknown }]);

      const stored = await api.admin('GET', `/v1/integrations/${id}/versions/1.2.0`);
      expect(stored.json()).toMatchObject({ document: { description: 'second' } });
      const summary = (await api.admin('GET', `/v1/integrations/${id}`)).json<{ latestVersion: string; description: string; versions: { version: string }[] }>();
      expect(summary).toMatchObject({ latestVersion: '1.2.0', description: 'second' });
      expect(summary.versions.map((v) => v.version)).toEqual(['1.0.0', '1.2.0']);

      // No route changes or removes a version: the path has GET only.
      for (const method of ['PUT', 'PATCH', 'DELETE'] as const) {
        const response = await api.admin(method, `/v1/integrations/${id}/versions/1.2.0`, method === 'DELETE' ? undefined : changed);
        expect([response.statusCode, response.headers.allow]).toEqual([405, 'GET, HEAD']);
      }
      expect((await api.admin('DELETE', `/v1/integrations/${id}`)).statusCode).toBe(405);
      expectProblem(await api.admin('GET', `/v1/integrations/${id}/versions/9.9.9`), 404, 'not_found');
      expectProblem(await api.admin('GET', '/v1/integrations/itg_00000000000000000000000000'), 404, 'not_found');
      expectProblem(await api.admin('POST', '/v1/integrations/itg_00000000000000000000000000/versions', template(name, '3.0.0')), 404, 'not_found');
    });

    it('is the admin\'s to write: a workspace key reads the catalog (without steps) and nothing else', async () => {
      const name = uniqueName('catalog');
      const { id } = (await api.admin('POST', '/v1/integrations', template(name, '1.0.0'))).json<{ id: string }>();
      const { key } = await t.workspaceWithKey(['integrations:read']);

      expectProblem(await api.call(key, 'POST', '/v1/integrations', template(uniqueName('by-key'), '1.0.0')), 401, 'wrong_credential_kind');
      expectProblem(await api.call(key, 'GET', '/v1/integrations'), 401, 'wrong_credential_kind');
      expectProblem(await api.call(key, 'POST', `/v1/integrations/${id}/versions`, template(name, '2.0.0')), 401, 'wrong_credential_kind');

      const list = await api.call(key, 'GET', '/v1/integration-catalog?limit=200');
      expect(list.statusCode, list.body).toBe(200);
      expect(list.json<{ data: { id: string; latestVersion: string }[] }>().data).toContainEqual(expect.objectContaining({ id, latestVersion: '1.0.0' }));
      expect((await api.call(key, 'GET', `/v1/integration-catalog/${id}`)).json()).toMatchObject({ id, name });

      const manifest = await api.call(key, 'GET', `/v1/integration-catalog/${id}/versions/1.0.0`);
      expect(manifest.statusCode, manifest.body).toBe(200);
      expect(manifest.json()).toEqual({
        integrationId: id,
        name,
        version: '1.0.0',
        description: 'sync 1.0.0',
        config: { channel: { type: 'string', required: true }, apiToken: { type: 'secret', required: true } },
        connections: { crm: { provider: 'stripe', description: 'the CRM account' } },
        destinations: { out: {} },
        inboundSources: {},
        triggers: [{ type: 'event', eventTypes: ['invoice.*'] }, { type: 'cron', schedule: '*/15 * * * *' }],
        createdAt: expect.any(String) as unknown,
      });
      expect(manifest.body).not.toContain('transform');

      const { key: noScope } = await t.workspaceWithKey(['events:read']);
      expectProblem(await api.call(noScope, 'GET', '/v1/integration-catalog'), 403, 'insufficient_scope');
    });

    it('refuses an oversized template body before parsing it', async () => {
      const huge = template(uniqueName('huge'), '1.0.0', { description: 'x'.repeat(t.config.bodyLimitBytes) });
      expectProblem(await api.admin('POST', '/v1/integrations', huge), 413, 'payload_too_large');
    });
  });
});
