/**
 * End to end: one integration template, deployed to two workspaces with different configs and
 * connections. One event in each must reach each tenant's (local, fake) third-party API with
 * that tenant's credential and nobody else's, and leave two complete execution logs.
 */
import { createHmac } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cronJob } from './scheduler.js';
import { startTestApp, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import { startReceiver } from '../testing/receiver.js';
import { startUpstream, type Upstream } from '../testing/upstream.js';

interface Execution {
  id: string;
  status: string;
  instanceId: string | null;
  trigger: string;
  resumeStep: number;
  retryOf: string | null;
  scheduledFor: string | null;
  error: { step: string | null; code: string; message: string } | null;
  steps: { name: string; type: string; outcome: string; metadata: Record<string, unknown>; logs: string[] }[];
}

const LOOKUP = `interface Contact { email: string; name: string }
function transform(event: { payload: Contact }, ctx: any) {
  ctx.log('looking up', event.payload.email);
  return ctx.connections.crm.request({ method: 'GET', path: '/echo', query: { email: event.payload.email } }).then((found: any) => ({
    email: event.payload.email,
    name: event.payload.name,
    owner: ctx.config.owner,
    region: ctx.config.region,
    lookupStatus: found.status,
  }));
}`;

const template = (version: string, pushPath: string, extraConfig: Record<string, unknown> = {}) => ({
  name: 'contact-sync-e2e',
  version,
  description: 'Looks a contact up in the tenant CRM, pushes it there, and tells the tenant.',
  config: {
    owner: { type: 'string', required: true },
    region: { type: 'enum', values: ['eu', 'us'], default: 'eu' },
    apiVersion: { type: 'secret', required: true },
    ...extraConfig,
  },
  connections: { crm: { provider: 'PROVIDER', scopes: [] } },
  destinations: { alerts: { description: 'tenant webhook' } },
  triggers: [{ type: 'event', eventTypes: ['contact.created'] }],
  steps: [
    { name: 'has-email', type: 'filter', filter: { email: { $exists: true } } },
    { name: 'lookup', type: 'transform', language: 'typescript', code: LOOKUP },
    { name: 'push', type: 'connection', connection: 'crm', method: 'POST', path: pushPath, query: { v: '{{secrets.apiVersion}}' } },
    { name: 'notify', type: 'deliver', destination: 'alerts', eventType: 'crm.contact.synced' },
  ],
});

describe.each(backends)('integration templates end to end on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    let upstream: Upstream;
    let receiver: Awaited<ReturnType<typeof startReceiver>>;
    const provider = `crm-e2e-${backend.name}`;
    let integrationId = '';
    beforeAll(async () => {
      upstream = await startUpstream();
      receiver = await startReceiver();
      t = await startTestApp(backend, { config: { egressAllowCidrs: ['127.0.0.1/32'], sandboxPoolSize: 2, sandboxCpuMs: 500, sandboxWallMs: 3000, executionLeaseMs: 10_000 } });
      const created = await t.admin('POST', '/v1/providers', { key: provider, name: 'CRM', authType: 'api_key', baseUrls: [upstream.url], apiKey: { in: 'header', name: 'Authorization', prefix: 'Bearer ' } });
      expect(created.statusCode, created.body).toBe(201);
      const published = await t.admin('POST', '/v1/integrations', JSON.parse(JSON.stringify(template('1.0.0', '/contacts')).replace('PROVIDER', provider)));
      expect(published.statusCode, published.body).toBe(201);
      integrationId = published.json<{ id: string }>().id;
    });
    afterAll(async () => {
      await t.close();
      await upstream.close();
      await receiver.close();
    });

    const call = (key: string, method: 'GET' | 'POST' | 'PATCH', url: string, json?: unknown) => t.request({ method, url, token: key, ...(json === undefined ? {} : { json }) });
    async function work() {
      while ((await t.app.runner.runOnce()) > 0);
      while ((await t.app.engine.runOnce()) > 0);
    }
    async function tenant(label: string, credential: string, config: Record<string, unknown>) {
      const w = await t.workspaceWithKey(['*']);
      const connection = await call(w.key, 'POST', '/v1/connections', { provider, name: 'crm', credentials: { apiKey: credential } });
      expect(connection.statusCode, connection.body).toBe(201);
      const destination = (await call(w.key, 'POST', '/v1/destinations', { url: `${receiver.url}/${w.workspaceId}/${label}/ok` })).json<{ id: string; secret: string }>();
      const instance = await call(w.key, 'POST', '/v1/instances', {
        name: 'sync',
        integrationId,
        version: '1.0.0',
        config,
        connections: { crm: connection.json<{ id: string }>().id },
        destinations: { alerts: destination.id },
      });
      expect(instance.statusCode, instance.body).toBe(201);
      return { ...w, destination, connectionId: connection.json<{ id: string }>().id, instance: instance.json<{ id: string; state: string; config: Record<string, unknown> }>() };
    }
    const executionsOf = async (key: string, instanceId: string) => (await call(key, 'GET', `/v1/executions?instanceId=${instanceId}`)).json<{ data: Execution[] }>().data;

    it('runs each tenant\'s deployment with its own config and credential, and logs every step', async () => {
      const a = await tenant('a', 'sk-tenant-a-0001', { owner: 'ann@a.example', region: 'eu', apiVersion: 'secret-v-a' });
      const b = await tenant('b', 'sk-tenant-b-0002', { owner: 'bob@b.example', region: 'us', apiVersion: 'secret-v-b' });
      expect(a.instance.state).toBe('active');
      expect(JSON.stringify(a.instance)).not.toContain('secret-v-a');
      const before = upstream.requests.length;
      expect((await call(a.key, 'POST', '/v1/events', { type: 'contact.created', payload: { email: 'x@a.example', name: 'Xa' } })).json()).toMatchObject({ executions: 1 });
      expect((await call(b.key, 'POST', '/v1/events', { type: 'contact.created', payload: { email: 'y@b.example', name: 'Yb' } })).json()).toMatchObject({ executions: 1 });
      await work();

      const calls = upstream.requests.slice(before);
      expect(calls, JSON.stringify([await executionsOf(a.key, a.instance.id), await executionsOf(b.key, b.instance.id)])).toHaveLength(4); // a lookup and a push per tenant
      for (const [who, email, credential, other, region, version] of [
        ['a', 'x@a.example', 'sk-tenant-a-0001', 'sk-tenant-b-0002', 'eu', 'secret-v-a'],
        ['b', 'y@b.example', 'sk-tenant-b-0002', 'sk-tenant-a-0001', 'us', 'secret-v-b'],
      ] as const) {
        const lookup = calls.find((c) => c.method === 'GET' && c.url.includes(encodeURIComponent(email)));
        const push = calls.find((c) => c.method === 'POST' && c.body.includes(email));
        expect(lookup, `${who} lookup`).toBeDefined();
        expect(push, `${who} push`).toBeDefined();
        for (const request of [lookup, push]) {
          expect(request?.headers.authorization).toBe(`Bearer ${credential}`);
          expect(JSON.stringify(request)).not.toContain(other);
        }
        expect(push?.url).toBe(`/contacts?v=${version}`);
        expect(JSON.parse(push?.body ?? '{}')).toMatchObject({ email, region, lookupStatus: 200 });
      }

      for (const [w, label, owner] of [[a, 'a', 'ann@a.example'], [b, 'b', 'bob@b.example']] as const) {
        const executions = await executionsOf(w.key, w.instance.id);
        expect(executions).toHaveLength(1);
        const [execution] = executions;
        expect(execution).toMatchObject({ status: 'succeeded', trigger: 'event', error: null });
        expect(execution?.steps.map((s) => [s.name, s.type, s.outcome])).toEqual([
          ['has-email', 'filter', 'ok'],
          ['lookup', 'transform', 'ok'],
          ['push', 'connection', 'ok'],
          ['notify', 'deliver', 'ok'],
        ]);
        expect(execution?.steps[1]?.logs).toEqual([`looking up ${label === 'a' ? 'x@a.example' : 'y@b.example'}`]);
        expect(execution?.steps[1]?.metadata).toMatchObject({ hostCalls: 1 });
        expect(execution?.steps[2]?.metadata).toMatchObject({ statuses: [200] });
        // Never a credential or a secret config value in the log.
        const detail = (await call(w.key, 'GET', `/v1/executions/${execution?.id ?? ''}`)).body;
        expect(detail).not.toMatch(/sk-tenant|secret-v-/u);
        const got = receiver.received.filter((r) => r.path.startsWith(`/${w.workspaceId}/${label}/`));
        expect(got).toHaveLength(1);
        const headers = got[0]?.headers ?? {};
        const verified = new Webhook(w.destination.secret).verify(got[0]?.body ?? '', { 'webhook-id': String(headers['webhook-id']), 'webhook-timestamp': String(headers['webhook-timestamp']), 'webhook-signature': String(headers['webhook-signature']) });
        expect(verified).toMatchObject({ type: 'crm.contact.synced', data: { owner } });
      }
      // Neither tenant sees the other's executions.
      expect(await executionsOf(a.key, b.instance.id)).toHaveLength(0);
    });

    it('tenant code cannot reach another instance\'s config or connection', async () => {
      const victim = await tenant('victim', 'sk-victim-9999', { owner: 'v@v.example', apiVersion: 'secret-v-victim' });
      const attacker = await t.workspaceWithKey(['*']);
      const connection = (await call(attacker.key, 'POST', '/v1/connections', { provider, name: 'crm', credentials: { apiKey: 'sk-attacker-1111' } })).json<{ id: string }>();
      const destination = (await call(attacker.key, 'POST', '/v1/destinations', { url: `${receiver.url}/${attacker.workspaceId}/attacker/ok` })).json<{ id: string }>();
      const probe = `function transform(event, ctx) {
  const found = [];
  for (const name of Object.getOwnPropertyNames(globalThis)) found.push(name);
  const tries = [];
  // Naming the victim's connection id, or a slot that is not granted, gets nowhere.
  tries.push(ctx.connections.crm.request({ method: 'GET', path: '/echo', query: { who: 'me' }, connectionId: '${victim.connectionId}' }).then((r) => r.body.headers.authorization));
  return Promise.all(tries).then((r) => ({ auth: r[0], config: JSON.stringify(ctx.config), globals: found.join(',') }));
}`;
      const document = { ...template('1.0.0', '/contacts'), name: `probe-${backend.name}`, steps: [{ name: 'probe', type: 'transform', language: 'javascript', code: probe }, { name: 'out', type: 'deliver', destination: 'alerts' }] };
      const published = await t.admin('POST', '/v1/integrations', JSON.parse(JSON.stringify(document).replace('PROVIDER', provider)));
      expect(published.statusCode, published.body).toBe(201);
      const instance = (await call(attacker.key, 'POST', '/v1/instances', { name: 'probe', integrationId: published.json<{ id: string }>().id, version: '1.0.0', config: { owner: 'evil@x.example', apiVersion: 'x' }, connections: { crm: connection.id }, destinations: { alerts: destination.id } })).json<{ id: string }>();
      // Binding the victim's connection from another workspace is refused outright.
      const stolen = await call(attacker.key, 'POST', '/v1/instances', { name: 'steal', integrationId: published.json<{ id: string }>().id, version: '1.0.0', config: { owner: 'e@x.example', apiVersion: 'x' }, connections: { crm: victim.connectionId }, destinations: { alerts: destination.id } });
      expect(stolen.statusCode).toBe(400);
      await call(attacker.key, 'POST', '/v1/events', { type: 'contact.created', payload: { email: 'e@x.example' } });
      await work();
      const [execution] = await executionsOf(attacker.key, instance.id);
      expect(execution?.status, JSON.stringify(execution)).toBe('succeeded');
      const got = receiver.received.find((r) => r.path.startsWith(`/${attacker.workspaceId}/attacker/`));
      const data = (JSON.parse(got?.body ?? '{}') as { data: { auth: string; config: string; globals: string } }).data;
      // The provider saw the attacker's own credential; the code saw it scrubbed by the relay.
      expect(upstream.requests.find((r) => r.url.includes('who=me'))?.headers.authorization).toBe('Bearer sk-attacker-1111');
      expect(data.auth).toBe('Bearer [redacted]');
      expect(data.config).not.toMatch(/victim|secret-v|apiVersion/u);
      expect(data.globals).not.toMatch(/process|require|fetch|SharedArrayBuffer/u);
      expect(JSON.stringify(upstream.requests)).not.toMatch(/sk-victim-9999.*who=me|who=me.*sk-victim-9999/u);

      // Reaching for a slot the template does not grant fails the execution as capability_denied
      // (sticky: caught or not, the attempt is what the log must show), and nothing leaves.
      const sneaky = { ...document, name: `sneaky-${backend.name}`, steps: [{ name: 'sneak', type: 'transform', language: 'javascript', code: 'function transform(e, ctx) { return ctx.connections.victim.request({ path: "/echo" }).catch(() => "caught"); }' }, { name: 'out', type: 'deliver', destination: 'alerts' }] };
      const sneakyPublished = await t.admin('POST', '/v1/integrations', JSON.parse(JSON.stringify(sneaky).replace('PROVIDER', provider)));
      expect(sneakyPublished.statusCode, sneakyPublished.body).toBe(201);
      const sneakyInstance = (await call(attacker.key, 'POST', '/v1/instances', { name: 'sneak', integrationId: sneakyPublished.json<{ id: string }>().id, version: '1.0.0', config: { owner: 'e@x.example', apiVersion: 'x' }, connections: { crm: connection.id }, destinations: { alerts: destination.id } })).json<{ id: string }>();
      expect((await call(attacker.key, 'PATCH', `/v1/instances/${instance.id}`, { enabled: false })).statusCode).toBe(200);
      const requestsBefore = upstream.requests.length;
      await call(attacker.key, 'POST', '/v1/events', { type: 'contact.created', payload: { email: 'f@x.example' } });
      await work();
      const [sneaked] = await executionsOf(attacker.key, sneakyInstance.id);
      expect(sneaked).toMatchObject({ status: 'failed', error: { step: 'sneak', code: 'capability_denied' } });
      expect(upstream.requests.length).toBe(requestsBefore);
    });

    it('upgrades report config migration problems, and a failed execution retries from its failed step', async () => {
      const w = await tenant('retry', 'sk-retry-5555', { owner: 'r@r.example', apiVersion: 'v9' });
      const next = JSON.parse(JSON.stringify(template('1.1.0', '/{{config.region}}/flaky/1', { team: { type: 'string', required: true } })).replace('PROVIDER', provider)) as unknown;
      expect((await t.admin('POST', `/v1/integrations/${integrationId}/versions`, next)).statusCode).toBe(201);
      const refused = await call(w.key, 'POST', `/v1/instances/${w.instance.id}/upgrade`, { version: '1.1.0' });
      expect(refused.statusCode).toBe(409);
      expect(refused.json<{ code: string }>().code).toBe('config_migration_failed');
      expect(refused.body).toContain('team');
      const upgraded = await call(w.key, 'POST', `/v1/instances/${w.instance.id}/upgrade`, { version: '1.1.0', config: { team: 'growth' } });
      expect(upgraded.statusCode, upgraded.body).toBe(200);
      expect(upgraded.json()).toMatchObject({ version: '1.1.0', config: { owner: 'r@r.example', team: 'growth' } });

      const lookupsBefore = upstream.requests.filter((r) => r.method === 'GET').length;
      await call(w.key, 'POST', '/v1/events', { type: 'contact.created', payload: { email: 'z@r.example', name: 'Z' } });
      await work();
      const [failed] = await executionsOf(w.key, w.instance.id);
      expect(failed).toMatchObject({ status: 'failed', resumeStep: 2, error: { step: 'push', code: 'connection_failed' } });
      expect(failed?.error?.message).toContain('503');
      // A workspace-key rotation re-seals what an execution keeps (resume state, delivered payloads,
      // instance secrets): the ratchet refuses while anything is still under the old key.
      const core = t.app.core;
      await core.withWorkspace(w.workspaceId, (tx) => core.vault.rotateWorkspaceKey(tx));
      const early = await core.resealer.ratchet(w.workspaceId, 2).then(() => undefined, (error: unknown) => error as { details?: { remaining?: Record<string, number> } });
      expect(early?.details?.remaining).toMatchObject({ 'executions.resume_state': 1, 'instances.secret_config': 1 });
      await core.resealer.resealWorkspace(w.workspaceId);
      expect(await core.resealer.ratchet(w.workspaceId, 2)).toEqual({ current: 2, min: 2 });
      const retried = await call(w.key, 'POST', `/v1/executions/${failed?.id ?? ''}/retry`);
      expect(retried.statusCode, retried.body).toBe(202);
      await work();
      const [latest] = await executionsOf(w.key, w.instance.id);
      expect(latest).toMatchObject({ status: 'succeeded', trigger: 'retry', retryOf: failed?.id });
      // Resumed at the failed step: the transform (and its lookup call) did not run again.
      expect(latest?.steps.map((s) => s.name)).toEqual(['push', 'notify']);
      expect(upstream.requests.filter((r) => r.method === 'GET').length).toBe(lookupsBefore + 1);
      expect(upstream.requests.filter((r) => r.url === '/eu/flaky/1?v=v9')).toHaveLength(2);
    });

    it('marks an instance needs_attention when its connection needs re-authorisation or is gone', async () => {
      const w = await tenant('attention', 'sk-att-7777', { owner: 'a@t.example', apiVersion: 'v1' });
      const removed = await t.request({ method: 'DELETE', url: `/v1/connections/${w.connectionId}`, token: w.key });
      expect(removed.statusCode).toBeLessThan(300);
      const view = (await call(w.key, 'GET', `/v1/instances/${w.instance.id}`)).json<{ state: string; attention: { slot: string; reason: string }[] }>();
      expect(view.state).toBe('needs_attention');
      expect(view.attention).toEqual([expect.objectContaining({ slot: 'crm', reason: 'missing' })]);
    });

    it('runs on events from the bound inbound source only, of the trigger\'s types', async () => {
      const w = await t.workspaceWithKey(['*']);
      const destination = (await call(w.key, 'POST', '/v1/destinations', { url: `${receiver.url}/${w.workspaceId}/inbound/ok` })).json<{ id: string }>();
      const source = (await call(w.key, 'POST', '/v1/inbound-sources', { name: 'gh', scheme: 'github' })).json<{ id: string; secret: string }>();
      const other = (await call(w.key, 'POST', '/v1/inbound-sources', { name: 'gh2', scheme: 'github' })).json<{ id: string; secret: string }>();
      const document = {
        name: `inbound-${backend.name}`, version: '1.0.0', description: 'pushes',
        inboundSources: { gh: {} }, destinations: { out: {} },
        triggers: [{ type: 'inbound', source: 'gh', eventTypes: ['github.push'] }],
        steps: [{ name: 'shape', type: 'transform', language: 'javascript', code: 'function transform(e) { return { ref: e.payload.ref, via: e.trigger, source: e.resourceId }; }' }, { name: 'send', type: 'deliver', destination: 'out' }],
      };
      const published = await t.admin('POST', '/v1/integrations', document);
      expect(published.statusCode, published.body).toBe(201);
      const instance = await call(w.key, 'POST', '/v1/instances', { name: 'gh', integrationId: published.json<{ id: string }>().id, version: '1.0.0', inboundSources: { gh: source.id }, destinations: { out: destination.id } });
      expect(instance.statusCode, instance.body).toBe(201);
      const hook = async (to: { id: string; secret: string }, kind: string, ref: string) => {
        const body = JSON.stringify({ ref });
        const signature = `sha256=${createHmac('sha256', to.secret).update(body).digest('hex')}`;
        const response = await t.request({ method: 'POST', url: `/hooks/${to.id}`, payload: body, headers: { 'content-type': 'application/json', 'x-github-event': kind, 'x-hub-signature-256': signature } });
        expect(response.statusCode, response.body).toBe(202);
      };
      await hook(source, 'push', 'refs/heads/main');
      await hook(source, 'issues', 'not-a-push');
      await hook(other, 'push', 'refs/heads/other-source');
      await work();
      const executions = await executionsOf(w.key, instance.json<{ id: string }>().id);
      expect(executions.map((e) => [e.trigger, e.status])).toEqual([['inbound', 'succeeded']]);
      const got = receiver.received.filter((r) => r.path.startsWith(`/${w.workspaceId}/inbound/`)).map((r) => (JSON.parse(r.body) as { type: string; data: unknown }));
      expect(got).toHaveLength(1);
      expect(got[0]).toMatchObject({ type: 'github.push', data: { ref: 'refs/heads/main', via: 'inbound', source: source.id } });
    });

    it('fires a cron trigger once per scheduled time across concurrent schedulers, and once after downtime', async () => {
      const w = await t.workspaceWithKey(['*']);
      const destination = (await call(w.key, 'POST', '/v1/destinations', { url: `${receiver.url}/${w.workspaceId}/cron/ok` })).json<{ id: string }>();
      const document = { name: `cron-${backend.name}`, version: '1.0.0', description: 'tick', destinations: { alerts: {} }, triggers: [{ type: 'cron', schedule: '* * * * *' }], steps: [{ name: 'shape', type: 'transform', language: 'javascript', code: 'function transform(e) { return { at: e.scheduledFor }; }' }, { name: 'out', type: 'deliver', destination: 'alerts', eventType: 'report.tick' }] };
      const published = await t.admin('POST', '/v1/integrations', document);
      expect(published.statusCode, published.body).toBe(201);
      const instance = (await call(w.key, 'POST', '/v1/instances', { name: 'ticker', integrationId: published.json<{ id: string }>().id, version: '1.0.0', destinations: { alerts: destination.id } })).json<{ id: string }>();
      const schedulers = [1, 2, 3].map(() => cronJob({ withPlatform: t.app.core.withPlatform, withWorkspace: t.app.core.withWorkspace, runtime: t.clock, intervalMs: 1000 }));
      t.clock.advance(61_000);
      await Promise.all(schedulers.map((s) => s.run()));
      await Promise.all(schedulers.map((s) => s.run()));
      let executions = await executionsOf(w.key, instance.id);
      expect(executions).toHaveLength(1);
      expect(executions[0]).toMatchObject({ trigger: 'cron', status: 'queued' });
      // Ten minutes down: one execution for the latest missed slot, not ten.
      t.clock.advance(10 * 60_000);
      await Promise.all(schedulers.map((s) => s.run()));
      executions = await executionsOf(w.key, instance.id);
      expect(executions).toHaveLength(2);
      await work();
      const got = receiver.received.filter((r) => r.path.startsWith(`/${w.workspaceId}/cron/`));
      expect(got).toHaveLength(2);
      const slots = got.map((r) => (JSON.parse(r.body) as { type: string; data: { at: string } })).map((b) => [b.type, new Date(b.data.at).getUTCSeconds()]);
      expect(slots).toEqual([['report.tick', 0], ['report.tick', 0]]);
    });
  });
});
