/**
 * Instances over HTTP on both engines: typed config with sealed, write-only secrets; bindings
 * that must be this workspace's; needs_attention computed from the bound connections; schedules
 * that follow the enabled flag; upgrades that carry the config or refuse listing every problem
 * and change nothing; 404 for another workspace's instance; strict bodies.
 *
 * The routes are not in src/app.ts yet, so each suite serves them from a second Fastify server
 * built the way app.ts builds its own, over the same core and database as the test app (which
 * provides tenants, keys, connections, destinations and inbound sources).
 */
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkIsolationInvariants } from '../db/invariants.js';
import type { HttpServer } from '../http/server.js';
import { createCompiler } from '../sandbox/compile.js';
import { loadQuickJS } from '../sandbox/engine.js';
import { startTestApp, type TestApp, testSecrets } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import { startSideServer } from '../testing/side-server.js';
import { createInstanceService, loadInstanceRuntime } from './instances.js';
import { createIntegrationService } from './integrations.js';
import { INSTANCE_BODY_LIMIT, registerInstanceRoutes, registerIntegrationCatalogRoutes, registerIntegrationRoutes } from './routes.js';

const MAX_INSTANCES = 3;
const API_TOKEN = 'tok_canary_5d1f8e2a9c7b4e6f0a3d';
const HOOK_SECRET = 'hook_canary_0e9d8c7b6a5f4e3d2c1b';

interface Api {
  readonly http: HttpServer;
  call(token: string, method: NonNullable<InjectOptions['method']>, url: string, json?: unknown): Promise<LightMyRequestResponse>;
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
    registerInstanceRoutes(http, { withWorkspace: core.withWorkspace, instances, limits: { instances: MAX_INSTANCES } });
  });
  const call: Api['call'] = (token, method, url, json) =>
    http.inject({
      method,
      url,
      headers: { authorization: `Bearer ${token}`, ...(json === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(json === undefined ? {} : { payload: typeof json === 'string' ? json : JSON.stringify(json) }),
    });
  return { http, call, admin: (method, url, json) => call(testSecrets.adminToken, method, url, json) };
}

const steps = [
  { name: 'only-paid', type: 'filter', filter: { status: 'paid' } },
  { name: 'shape', type: 'transform', language: 'typescript', code: 'function transform(event: { amount: number }) {\n  return { cents: event.amount * 100 };\n}' },
  { name: 'send', type: 'deliver', destination: 'out' },
];
const v1 = (name: string) => ({
  name,
  version: '1.0.0',
  config: {
    channel: { type: 'string', required: true, maxLength: 50 },
    retries: { type: 'number', integer: true, minimum: 0, maximum: 10, default: 3 },
    verbose: { type: 'boolean', default: false },
    region: { type: 'enum', values: ['eu', 'us'], default: 'eu' },
    apiToken: { type: 'secret', required: true },
    webhookSecret: { type: 'secret' },
  },
  connections: { crm: { provider: 'stripe' } },
  destinations: { out: {} },
  inboundSources: { hooks: {} },
  triggers: [
    { type: 'event', eventTypes: ['invoice.*', 'customer.created'] },
    { type: 'inbound', source: 'hooks', eventTypes: ['github.push'] },
    { type: 'cron', schedule: '*/15 * * * *' },
    { type: 'cron', schedule: '0 9 * * 1', timezone: 'Europe/Berlin' },
  ],
  steps,
});
// 1.1.0 drops `verbose` and `webhookSecret`, adds an optional field with a default, a destination
// slot that must be bound, and keeps one cron trigger.
const v11 = (name: string) => {
  const { verbose: _v, webhookSecret: _w, ...config } = v1(name).config;
  return {
    ...v1(name),
    version: '1.1.0',
    config: { ...config, greeting: { type: 'string', default: 'hello' } },
    destinations: { out: {}, audit: {} },
    triggers: [{ type: 'event', eventTypes: ['invoice.*', 'customer.created'] }, { type: 'inbound', source: 'hooks' }, { type: 'cron', schedule: '*/30 * * * *' }],
    steps: [...steps, { name: 'copy', type: 'deliver', destination: 'audit' }],
  };
};
// 2.0.0 turns `retries` into a string and adds a required field without a default.
const v2 = (name: string) => {
  const base = v11(name);
  return { ...base, version: '2.0.0', config: { ...base.config, retries: { type: 'string' }, tenantCode: { type: 'string', required: true } } };
};

function expectProblem(response: LightMyRequestResponse, status: number, code: string): Record<string, unknown> {
  expect(response.statusCode, response.body).toBe(status);
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
  const body = response.json<Record<string, unknown>>();
  expect(body).toMatchObject({ status, code });
  return body;
}
const pathsOf = (body: Record<string, unknown>) => (body['problems'] as { path: string }[]).map((p) => p.path).sort();

interface InstanceBody {
  id: string;
  name: string;
  version: string;
  enabled: boolean;
  state: string;
  attention: { kind: string; slot: string; reason: string }[];
  config: Record<string, unknown>;
  secrets: { name: string; set: boolean }[];
  connections: Record<string, string>;
  destinations: Record<string, string>;
  inboundSources: Record<string, string>;
  updatedAt: string;
}

describe.each(backends)('integration instances on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    let api: Api;
    let integrationId: string;
    beforeAll(async () => {
      t = await startTestApp(backend, { config: { egressAllowCidrs: ['127.0.0.1/32'] } });
      api = await serveIntegrations(t);
      const name = `crm-sync-${backend.name}`;
      const created = await api.admin('POST', '/v1/integrations', v1(name));
      expect(created.statusCode, created.body).toBe(201);
      integrationId = created.json<{ id: string }>().id;
      for (const doc of [v11(name), v2(name)]) {
        const published = await api.admin('POST', `/v1/integrations/${integrationId}/versions`, doc);
        expect(published.statusCode, published.body).toBe(201);
      }
    });
    afterAll(async () => {
      await api.http.close();
      await t.close();
    });

    const main = (key: string, method: NonNullable<InjectOptions['method']>, url: string, json?: unknown) => t.request({ method, url, token: key, ...(json === undefined ? {} : { json }) });

    /** A workspace with a key, a Stripe connection, a destination and an inbound source. */
    async function workspace() {
      const w = await t.workspaceWithKey(['*']);
      const unique = Math.random().toString(36).slice(2);
      const connection = await main(w.key, 'POST', '/v1/connections', { provider: 'stripe', name: `stripe-${unique}`, credentials: { apiKey: 'sk_test_0123456789' } });
      expect(connection.statusCode, connection.body).toBe(201);
      const destination = await main(w.key, 'POST', '/v1/destinations', { url: 'http://127.0.0.1:9/hook' });
      expect(destination.statusCode, destination.body).toBe(201);
      const source = await main(w.key, 'POST', '/v1/inbound-sources', { name: `gh-${unique}`, scheme: 'github' });
      expect(source.statusCode, source.body).toBe(201);
      return { ...w, connectionId: connection.json<{ id: string }>().id, destinationId: destination.json<{ id: string }>().id, sourceId: source.json<{ id: string }>().id };
    }
    type Workspace = Awaited<ReturnType<typeof workspace>>;

    const deploy = (w: Workspace, extra: Record<string, unknown> = {}) =>
      api.call(w.key, 'POST', '/v1/instances', {
        name: `sync-${Math.random().toString(36).slice(2)}`,
        integrationId,
        version: '1.0.0',
        config: { channel: '#billing', apiToken: API_TOKEN },
        connections: { crm: w.connectionId },
        destinations: { out: w.destinationId },
        inboundSources: { hooks: w.sourceId },
        ...extra,
      });
    async function deployed(w: Workspace, extra: Record<string, unknown> = {}): Promise<InstanceBody> {
      const response = await deploy(w, extra);
      expect(response.statusCode, response.body).toBe(201);
      return response.json<InstanceBody>();
    }
    const get = async (w: Workspace, id: string) => (await api.call(w.key, 'GET', `/v1/instances/${id}`)).json<InstanceBody>();
    const raw = async (id: string) =>
      (
        await t.database.db.owner.query<{ version: string; config: unknown; secret_config: Uint8Array | null; secret_names: string[]; connections: unknown; destinations: unknown; event_patterns: string[]; inbound_triggers: unknown; updated_at: Date }>(
          'SELECT version, config, secret_config, secret_names, connections, destinations, event_patterns, inbound_triggers, updated_at FROM instances WHERE id = $1',
          [id],
        )
      ).rows[0];
    const schedules = async (id: string) =>
      (await t.database.db.owner.query<{ trigger_index: number; schedule: string; timezone: string; next_fire_at: Date }>('SELECT trigger_index, schedule, timezone, next_fire_at FROM instance_schedules WHERE instance_id = $1 ORDER BY trigger_index', [id])).rows;
    const countInstances = async (workspaceId: string) =>
      (await t.database.db.owner.query<{ n: number }>('SELECT count(*)::int AS n FROM instances WHERE workspace_id = $1', [workspaceId])).rows[0]?.n ?? 0;
    const runtimeOf = (w: Workspace, id: string) => t.app.core.withWorkspace(w.workspaceId, (tx) => loadInstanceRuntime(tx, t.app.core.vault, id));

    it('the instance tables keep every isolation invariant', async () => {
      const violations = await checkIsolationInvariants(t.database.db.owner);
      expect(violations.filter((v) => v.object.startsWith('instance'))).toEqual([]);
    });

    it('deploys with typed config, seals the secret and never returns it, and denormalises routing and schedules', async () => {
      const w = await workspace();
      const before = t.clock.now();
      const instance = await deployed(w, { config: { channel: '#billing', retries: 5, region: 'us', apiToken: API_TOKEN } });
      expect(instance.id).toMatch(/^ist_[0-9a-z]{26}$/);
      expect(instance).toMatchObject({
        version: '1.0.0',
        integrationName: `crm-sync-${backend.name}`,
        enabled: true,
        state: 'active',
        attention: [],
        config: { channel: '#billing', retries: 5, verbose: false, region: 'us' },
        connections: { crm: w.connectionId },
        destinations: { out: w.destinationId },
        inboundSources: { hooks: w.sourceId },
        logPayloads: false,
      });
      expect(instance.secrets).toEqual([{ name: 'apiToken', set: true }, { name: 'webhookSecret', set: false }]);

      for (const body of [JSON.stringify(instance), (await api.call(w.key, 'GET', `/v1/instances/${instance.id}`)).body, (await api.call(w.key, 'GET', '/v1/instances')).body, (await main(w.key, 'GET', '/v1/audit-log')).body]) {
        expect(body).not.toContain(API_TOKEN);
      }
      const row = await raw(instance.id);
      expect(row?.secret_names).toEqual(['apiToken']);
      expect(JSON.stringify(row?.config)).not.toContain(API_TOKEN);
      expect(row?.secret_config).not.toBeNull();
      expect(Buffer.from(row?.secret_config ?? []).toString('latin1')).not.toContain(API_TOKEN.slice(4, 20));
      expect(row?.event_patterns).toEqual(['invoice.*', 'customer.created']);
      expect(row?.inbound_triggers).toEqual([{ sourceId: w.sourceId, eventTypes: ['github.push'], index: 1 }]);

      const rows = await schedules(instance.id);
      expect(rows.map((r) => [r.trigger_index, r.schedule, r.timezone])).toEqual([[2, '*/15 * * * *', 'UTC'], [3, '0 9 * * 1', 'Europe/Berlin']]);
      for (const r of rows) expect(r.next_fire_at.getTime()).toBeGreaterThan(before.getTime());
      expect(rows[0]?.next_fire_at.getUTCMinutes() ?? -1).toSatisfy((m: number) => m % 15 === 0);

      // The runner gets everything, the secret opened and the transform compiled.
      const runtime = await runtimeOf(w, instance.id);
      expect(runtime).toMatchObject({ id: instance.id, enabled: true, integrationId, version: '1.0.0', secrets: { apiToken: API_TOKEN }, config: { channel: '#billing', retries: 5 }, connections: { crm: w.connectionId } });
      expect(runtime.document.steps).toHaveLength(3);
      expect(runtime.compiled['shape']).toContain('function transform(event) {');

      const audit = await t.database.db.owner.query<{ action: string; details: Record<string, unknown> }>('SELECT action, details FROM audit_log WHERE workspace_id = $1 AND target_id = $2', [w.workspaceId, instance.id]);
      expect(audit.rows).toEqual([{ action: 'instance.create', details: { integrationId, version: '1.0.0', enabled: true, secrets: ['apiToken'] } }]);
    });

    it('refuses bad config listing every problem without echoing values, and writes nothing', async () => {
      const w = await workspace();
      const response = await deploy(w, { config: { channel: API_TOKEN.repeat(3), retries: 2.5, verbose: 'yes', region: 'apac', colour: 'red' } });
      const body = expectProblem(response, 400, 'config_invalid');
      expect(pathsOf(body)).toEqual(['/config/apiToken', '/config/channel', '/config/colour', '/config/region', '/config/retries', '/config/verbose']);
      expect(response.body).not.toContain(API_TOKEN);
      expect(pathsOf(expectProblem(await deploy(w, { config: { channel: 'x', retries: 11, apiToken: '' } }), 400, 'config_invalid'))).toEqual(['/config/apiToken', '/config/retries']);
      expect(await countInstances(w.workspaceId)).toBe(0);
      // Config values are primitives: an object is refused at the edge.
      expectProblem(await deploy(w, { config: { channel: { nested: true }, apiToken: API_TOKEN } }), 400, 'validation_failed');
    });

    it('refuses bindings to another workspace\'s resources exactly like missing ones, and writes nothing', async () => {
      const a = await workspace();
      const b = await workspace();
      const openai = await main(a.key, 'POST', '/v1/connections', { provider: 'openai', name: 'llm', credentials: { apiKey: 'sk-test-0123456789' } });
      expect(openai.statusCode, openai.body).toBe(201);

      const foreign = await deploy(a, { connections: { crm: b.connectionId }, destinations: { out: b.destinationId }, inboundSources: { hooks: b.sourceId } });
      const body = expectProblem(foreign, 400, 'binding_invalid');
      expect(body['problems']).toEqual(
        expect.arrayContaining([
          { path: '/connections/crm', message: 'no such connection in this workspace' },
          { path: '/destinations/out', message: 'no such destination in this workspace' },
          { path: '/inboundSources/hooks', message: 'no such inbound source in this workspace' },
        ]),
      );
      // The same answer as for ids that never existed.
      const never = await deploy(a, { connections: { crm: 'con_00000000000000000000000000' }, destinations: { out: 'dst_00000000000000000000000000' }, inboundSources: { hooks: 'nope' } });
      expect(expectProblem(never, 400, 'binding_invalid')['problems']).toEqual(body['problems']);

      const wrong = await deploy(a, { connections: { crm: openai.json<{ id: string }>().id, extra: a.connectionId }, destinations: {}, inboundSources: { hooks: a.sourceId } });
      expect(expectProblem(wrong, 400, 'binding_invalid')['problems']).toEqual(
        expect.arrayContaining([
          { path: '/connections/crm', message: 'needs a stripe connection; this one is openai' },
          { path: '/connections/extra', message: expect.stringContaining('is not a connection slot') as unknown },
          { path: '/destinations/out', message: 'must be bound to a destination of this workspace' },
        ]),
      );
      expect(await countInstances(a.workspaceId)).toBe(0);
      expect((await t.database.db.owner.query('SELECT 1 FROM instance_schedules WHERE workspace_id = $1', [a.workspaceId])).rows).toHaveLength(0);
      expect((await t.database.db.owner.query("SELECT 1 FROM audit_log WHERE workspace_id = $1 AND action LIKE 'instance.%'", [a.workspaceId])).rows).toHaveLength(0);
      expectProblem(await deploy(a, { integrationId: 'itg_00000000000000000000000000' }), 404, 'not_found');
      expectProblem(await deploy(a, { version: '0.9.0' }), 404, 'not_found');
    });

    it('needs attention while a connection slot is unbound, or its connection is not active or gone', async () => {
      const w = await workspace();
      const instance = await deployed(w, { connections: {} });
      expect(instance).toMatchObject({ state: 'needs_attention', attention: [{ kind: 'connection', slot: 'crm', reason: 'unbound' }] });

      const bound = await api.call(w.key, 'PATCH', `/v1/instances/${instance.id}`, { connections: { crm: w.connectionId } });
      expect(bound.statusCode, bound.body).toBe(200);
      expect(bound.json()).toMatchObject({ state: 'active', attention: [] });

      for (const status of ['needs_reauth', 'revoked', 'error'] as const) {
        await t.database.db.owner.query('UPDATE connections SET status = $2 WHERE id = $1', [w.connectionId, status]);
        expect(await get(w, instance.id)).toMatchObject({ state: 'needs_attention', attention: [{ kind: 'connection', slot: 'crm', reason: status }] });
      }
      await t.database.db.owner.query("UPDATE connections SET status = 'active' WHERE id = $1", [w.connectionId]);
      expect((await get(w, instance.id)).state).toBe('active');

      expect((await main(w.key, 'DELETE', `/v1/connections/${w.connectionId}`)).json()).toMatchObject({ deleted: true });
      expect((await main(w.key, 'DELETE', `/v1/destinations/${w.destinationId}`)).statusCode).toBe(204);
      const gone = await get(w, instance.id);
      expect(gone.state).toBe('needs_attention');
      expect(gone.attention).toEqual([{ kind: 'connection', slot: 'crm', reason: 'missing' }, { kind: 'destination', slot: 'out', reason: 'missing' }]);
      expect((await api.call(w.key, 'GET', '/v1/instances')).json<{ data: InstanceBody[] }>().data[0]?.attention).toEqual(gone.attention);

      // Disabled wins over attention in `state`; the reasons stay listed.
      const disabled = (await api.call(w.key, 'PATCH', `/v1/instances/${instance.id}`, { enabled: false })).json<InstanceBody>();
      expect(disabled).toMatchObject({ state: 'disabled', enabled: false });
      expect(disabled.attention).toHaveLength(2);
    });

    it('updates: plain config is replaced, secrets are kept unless replaced or cleared, bindings are merged', async () => {
      const w = await workspace();
      const instance = await deployed(w, { config: { channel: '#a', retries: 7, apiToken: API_TOKEN } });

      const renamed = await api.call(w.key, 'PATCH', `/v1/instances/${instance.id}`, { name: 'renamed', config: { channel: '#b' } });
      expect(renamed.statusCode, renamed.body).toBe(200);
      expect(renamed.json()).toMatchObject({ name: 'renamed', config: { channel: '#b', retries: 3, verbose: false, region: 'eu' } });
      expect((await runtimeOf(w, instance.id)).secrets).toEqual({ apiToken: API_TOKEN });
      const sealedBefore = Buffer.from((await raw(instance.id))?.secret_config ?? []);

      const withHook = await api.call(w.key, 'PATCH', `/v1/instances/${instance.id}`, { config: { channel: '#b', webhookSecret: HOOK_SECRET } });
      expect(withHook.json<InstanceBody>().secrets).toEqual([{ name: 'apiToken', set: true }, { name: 'webhookSecret', set: true }]);
      expect(withHook.body).not.toContain(HOOK_SECRET);
      expect((await runtimeOf(w, instance.id)).secrets).toEqual({ apiToken: API_TOKEN, webhookSecret: HOOK_SECRET });
      const sealedAfter = Buffer.from((await raw(instance.id))?.secret_config ?? []);
      expect(sealedAfter.equals(sealedBefore)).toBe(false);
      expect(sealedAfter.toString('latin1')).not.toContain(HOOK_SECRET.slice(5, 20));

      const cleared = await api.call(w.key, 'PATCH', `/v1/instances/${instance.id}`, { config: { channel: '#b', webhookSecret: null, apiToken: 'tok_rotated_123456' } });
      expect(cleared.json<InstanceBody>().secrets).toEqual([{ name: 'apiToken', set: true }, { name: 'webhookSecret', set: false }]);
      expect((await runtimeOf(w, instance.id)).secrets).toEqual({ apiToken: 'tok_rotated_123456' });
      expect((await raw(instance.id))?.secret_names).toEqual(['apiToken']);

      expect(pathsOf(expectProblem(await api.call(w.key, 'PATCH', `/v1/instances/${instance.id}`, { config: { channel: '#b', apiToken: null } }), 400, 'config_invalid'))).toEqual(['/config/apiToken']);
      expect(pathsOf(expectProblem(await api.call(w.key, 'PATCH', `/v1/instances/${instance.id}`, { destinations: { out: null } }), 400, 'binding_invalid'))).toEqual(['/destinations/out']);
      const unbound = await api.call(w.key, 'PATCH', `/v1/instances/${instance.id}`, { connections: { crm: null }, logPayloads: true });
      expect(unbound.json()).toMatchObject({ connections: {}, logPayloads: true, state: 'needs_attention' });

      const other = await deployed(w);
      expectProblem(await api.call(w.key, 'PATCH', `/v1/instances/${other.id}`, { name: 'renamed' }), 409, 'name_taken');
    });

    it('disabling removes its schedules and enabling recreates them from now', async () => {
      const w = await workspace();
      const instance = await deployed(w, { enabled: false });
      expect(instance.state).toBe('disabled');
      expect(await schedules(instance.id)).toEqual([]);

      expect((await api.call(w.key, 'PATCH', `/v1/instances/${instance.id}`, { enabled: true })).json()).toMatchObject({ enabled: true, state: 'active' });
      expect((await schedules(instance.id)).map((r) => r.trigger_index)).toEqual([2, 3]);
      // A patch that leaves `enabled` alone leaves the schedules alone.
      const before = await schedules(instance.id);
      t.clock.advance(3_600_000);
      await api.call(w.key, 'PATCH', `/v1/instances/${instance.id}`, { name: 'still-on' });
      expect(await schedules(instance.id)).toEqual(before);

      expect((await api.call(w.key, 'PATCH', `/v1/instances/${instance.id}`, { enabled: false })).json()).toMatchObject({ state: 'disabled' });
      expect(await schedules(instance.id)).toEqual([]);
      const reenabled = await api.call(w.key, 'PATCH', `/v1/instances/${instance.id}`, { enabled: true });
      expect(reenabled.statusCode).toBe(200);
      const rows = await schedules(instance.id);
      expect(rows).toHaveLength(2);
      for (const r of rows) expect(r.next_fire_at.getTime()).toBeGreaterThan(t.clock.now().getTime());

      expect((await api.call(w.key, 'DELETE', `/v1/instances/${instance.id}`)).statusCode).toBe(204);
      expect(await schedules(instance.id)).toEqual([]);
      expectProblem(await api.call(w.key, 'GET', `/v1/instances/${instance.id}`), 404, 'not_found');
    });

    it('refuses an upgrade it cannot carry, listing every problem, and changes nothing', async () => {
      const w = await workspace();
      const instance = await deployed(w);
      const rowBefore = await raw(instance.id);
      const schedulesBefore = await schedules(instance.id);

      const body = expectProblem(await api.call(w.key, 'POST', `/v1/instances/${instance.id}/upgrade`, { version: '2.0.0' }), 409, 'config_migration_failed');
      expect(body).toMatchObject({ from: '1.0.0', to: '2.0.0' });
      expect(pathsOf(body)).toEqual(['/config/retries', '/config/tenantCode', '/destinations/audit']);
      expect(body['problems']).toEqual(
        expect.arrayContaining([
          { path: '/config/retries', message: expect.stringContaining('changed type from number to string') as unknown },
          { path: '/config/tenantCode', message: expect.stringContaining('new required field') as unknown },
        ]),
      );
      // A supplied value that is itself wrong is reported too, not guessed around.
      const partly = expectProblem(await api.call(w.key, 'POST', `/v1/instances/${instance.id}/upgrade`, { version: '2.0.0', config: { retries: 3 }, destinations: { audit: w.destinationId } }), 409, 'config_migration_failed');
      expect(pathsOf(partly)).toEqual(['/config/retries', '/config/tenantCode']);

      expect(await raw(instance.id)).toEqual(rowBefore);
      expect(await schedules(instance.id)).toEqual(schedulesBefore);
      expect((await runtimeOf(w, instance.id)).secrets).toEqual({ apiToken: API_TOKEN });

      expect(expectProblem(await api.call(w.key, 'POST', `/v1/instances/${instance.id}/upgrade`, { version: '1.0.0' }), 409, 'version_not_newer')).toMatchObject({ currentVersion: '1.0.0' });
      expectProblem(await api.call(w.key, 'POST', `/v1/instances/${instance.id}/upgrade`, { version: '9.9.9' }), 404, 'not_found');
      expect(await raw(instance.id)).toEqual(rowBefore);
    });

    it('refuses an upgrade binding another workspace\'s resource as binding_invalid, like create and patch, and changes nothing', async () => {
      const a = await workspace();
      const b = await workspace();
      const instance = await deployed(a);
      const rowBefore = await raw(instance.id);
      const foreign = expectProblem(await api.call(a.key, 'POST', `/v1/instances/${instance.id}/upgrade`, { version: '1.1.0', destinations: { audit: b.destinationId } }), 400, 'binding_invalid');
      expect(foreign['problems']).toEqual([{ path: '/destinations/audit', message: 'no such destination in this workspace' }]);
      const never = expectProblem(await api.call(a.key, 'POST', `/v1/instances/${instance.id}/upgrade`, { version: '1.1.0', destinations: { audit: 'dst_00000000000000000000000000' } }), 400, 'binding_invalid');
      expect(never['problems']).toEqual(foreign['problems']);
      expectProblem(await api.call(a.key, 'POST', `/v1/instances/${instance.id}/upgrade`, { version: '1.1.0', connections: { crm: b.connectionId }, destinations: { audit: a.destinationId } }), 400, 'binding_invalid');
      expect(await raw(instance.id)).toEqual(rowBefore);
    });

    it('upgrades: carries config and secrets, binds the new slots, drops what the new version lost and replaces schedules', async () => {
      const w = await workspace();
      const instance = await deployed(w, { config: { channel: '#ops', retries: 4, verbose: true, apiToken: API_TOKEN, webhookSecret: HOOK_SECRET } });

      const upgraded = await api.call(w.key, 'POST', `/v1/instances/${instance.id}/upgrade`, { version: '1.1.0', destinations: { audit: w.destinationId } });
      expect(upgraded.statusCode, upgraded.body).toBe(200);
      const view = upgraded.json<InstanceBody>();
      expect(view).toMatchObject({ version: '1.1.0', state: 'active', destinations: { out: w.destinationId, audit: w.destinationId }, inboundSources: { hooks: w.sourceId } });
      expect(view.config).toEqual({ channel: '#ops', retries: 4, region: 'eu', greeting: 'hello' });
      expect(view.secrets).toEqual([{ name: 'apiToken', set: true }]);
      expect((await runtimeOf(w, instance.id)).secrets).toEqual({ apiToken: API_TOKEN });
      const row = await raw(instance.id);
      expect(row?.inbound_triggers).toEqual([{ sourceId: w.sourceId, eventTypes: null, index: 1 }]);
      expect((await schedules(instance.id)).map((r) => [r.trigger_index, r.schedule])).toEqual([[2, '*/30 * * * *']]);

      const audit = await t.database.db.owner.query<{ details: Record<string, unknown> }>("SELECT details FROM audit_log WHERE workspace_id = $1 AND target_id = $2 AND action = 'instance.upgrade'", [w.workspaceId, instance.id]);
      expect(audit.rows).toEqual([{ details: { from: '1.0.0', to: '1.1.0', droppedFields: ['verbose', 'webhookSecret'], droppedBindings: [] } }]);

      // What could not be carried, supplied with the upgrade.
      const major = await api.call(w.key, 'POST', `/v1/instances/${instance.id}/upgrade`, { version: '2.0.0', config: { retries: 'four', tenantCode: 'acme' } });
      expect(major.statusCode, major.body).toBe(200);
      expect(major.json()).toMatchObject({ version: '2.0.0', config: { channel: '#ops', retries: 'four', tenantCode: 'acme', greeting: 'hello' } });
      expect((await runtimeOf(w, instance.id)).secrets).toEqual({ apiToken: API_TOKEN });
    });

    it('answers 404 for another workspace\'s instance, exactly as for a missing one', async () => {
      const a = await workspace();
      const b = await workspace();
      const instance = await deployed(a);
      const before = await raw(instance.id);
      const missing = 'ist_00000000000000000000000000';
      const attempts: [NonNullable<InjectOptions['method']>, string, unknown][] = [
        ['GET', '', undefined],
        ['PATCH', '', { name: 'stolen' }],
        ['DELETE', '', undefined],
        ['POST', '/upgrade', { version: '1.1.0', destinations: { audit: b.destinationId } }],
      ];
      for (const [method, suffix, json] of attempts) {
        const theirs = expectProblem(await api.call(b.key, method, `/v1/instances/${instance.id}${suffix}`, json), 404, 'not_found');
        const nothing = expectProblem(await api.call(b.key, method, `/v1/instances/${missing}${suffix}`, json), 404, 'not_found');
        expect({ ...theirs, requestId: '' }).toEqual({ ...nothing, requestId: '' });
      }
      expect((await api.call(b.key, 'GET', '/v1/instances')).json()).toEqual({ data: [], nextCursor: null });
      expect(await raw(instance.id)).toEqual(before);
      expect((await get(a, instance.id)).name).toBe(instance.name);
    });

    it('lists with a cursor, holds the per-workspace limit and checks scopes', async () => {
      const w = await workspace();
      const ids: string[] = [];
      for (let i = 0; i < MAX_INSTANCES; i++) ids.push((await deployed(w)).id);
      expectProblem(await deploy(w), 422, 'limit_exceeded');

      const first = (await api.call(w.key, 'GET', '/v1/instances?limit=2')).json<{ data: InstanceBody[]; nextCursor: string }>();
      expect(first.data.map((i) => i.id)).toEqual(ids.slice(0, 2));
      const second = (await api.call(w.key, 'GET', `/v1/instances?limit=2&cursor=${first.nextCursor}`)).json<{ data: InstanceBody[]; nextCursor: string | null }>();
      expect(second).toMatchObject({ nextCursor: null });
      expect(second.data.map((i) => i.id)).toEqual(ids.slice(2));
      expect((await api.call(w.key, 'GET', `/v1/instances?integrationId=${integrationId}&limit=200`)).json<{ data: unknown[] }>().data).toHaveLength(MAX_INSTANCES);
      expectProblem(await api.call(w.key, 'GET', '/v1/instances?cursor=bm90LWFuLWlk'), 400, 'invalid_cursor');

      const reader = await main(w.key, 'POST', '/v1/api-keys', { name: 'reader', scopes: ['integrations:read'] });
      expect(reader.statusCode, reader.body).toBe(201);
      const readKey = reader.json<{ key: string }>().key;
      expect((await api.call(readKey, 'GET', `/v1/instances/${ids[0] ?? ''}`)).statusCode).toBe(200);
      expectProblem(await api.call(readKey, 'PATCH', `/v1/instances/${ids[0] ?? ''}`, { enabled: false }), 403, 'insufficient_scope');
      expectProblem(await api.call(readKey, 'DELETE', `/v1/instances/${ids[0] ?? ''}`), 403, 'insufficient_scope');
    });

    it('refuses malformed, unknown-property, empty and oversized bodies with problem+json', async () => {
      const w = await workspace();
      const instance = await deployed(w);
      expectProblem(await api.call(w.key, 'POST', '/v1/instances', '{"name": "x", '), 400, 'malformed_json');
      expectProblem(await api.call(w.key, 'POST', '/v1/instances', '{"name":"x","integrationId":"itg","version":"1.0.0","__proto__":{"admin":true}}'), 400, 'malformed_json');
      expectProblem(await deploy(w, { colour: 'red' }), 400, 'validation_failed');
      expectProblem(await api.call(w.key, 'PATCH', `/v1/instances/${instance.id}`, {}), 400, 'validation_failed');
      expectProblem(await api.call(w.key, 'PATCH', `/v1/instances/${instance.id}`, { version: '1.1.0' }), 400, 'validation_failed');
      expectProblem(await api.call(w.key, 'POST', `/v1/instances/${instance.id}/upgrade`, { version: '1.1.0', enabled: true }), 400, 'validation_failed');
      const oversized = { config: { channel: 'x'.repeat(INSTANCE_BODY_LIMIT), apiToken: API_TOKEN } };
      expectProblem(await api.call(w.key, 'PATCH', `/v1/instances/${instance.id}`, oversized), 413, 'payload_too_large');
      expectProblem(await deploy(w, oversized), 413, 'payload_too_large');
      expect((await get(w, instance.id)).config).toMatchObject({ channel: '#billing' });
    });
  });
});
