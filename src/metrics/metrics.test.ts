import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { idPrefixes } from '../ids.js';
import { startTestApp, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import { familyOf, parsePrometheus, type Scrape } from '../testing/prometheus.js';
import { startReceiver } from '../testing/receiver.js';
import { startUpstream, type Upstream } from '../testing/upstream.js';

const dashboard = JSON.parse(readFileSync(new URL('../../docs/grafana-dashboard.json', import.meta.url), 'utf8')) as { panels: { title: string; targets: { expr: string }[] }[] };

describe.each(backends)('/metrics and /v1/usage on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    let receiver: Awaited<ReturnType<typeof startReceiver>>;
    let upstream: Upstream;
    beforeAll(async () => {
      receiver = await startReceiver();
      upstream = await startUpstream();
      t = await startTestApp(backend, { config: { egressAllowCidrs: ['127.0.0.1/32'], retrySchedule: [1000, 1000], deliveryTimeoutMs: 1500, sandboxPoolSize: 1 } });
    });
    afterAll(async () => {
      await t.close();
      await receiver.close();
      await upstream.close();
    });

    /** A scrape past the queue figures' cache (5 s), so it shows what the database holds now. */
    async function scrape(): Promise<Scrape> {
      t.clock.advance(6_000);
      const response = await t.admin('GET', '/metrics');
      expect(response.statusCode).toBe(200);
      return parsePrometheus(response.body);
    }
    const call = (key: string, method: 'GET' | 'POST', url: string, json?: unknown) => t.request({ method, url, token: key, ...(json === undefined ? {} : { json }) });

    it('counts deliveries by state, the lag, attempts by outcome class and claim time, from real deliveries', async () => {
      const before = await scrape();
      expect(before.types.get('bulkhead_deliveries')).toBe('gauge');
      expect(before.types.get('bulkhead_delivery_attempts_total')).toBe('counter');
      expect(before.types.get('bulkhead_delivery_claim_duration_seconds')).toBe('histogram');
      expect(before.value('bulkhead_deliveries', { state: 'pending' })).toBe(0);
      expect(before.value('bulkhead_delivery_lag_seconds')).toBe(0);

      const w = await t.workspaceWithKey(['*']);
      const kinds = ['ok', 'redirect', 'gone', 'fail', 'slow', 'reset'];
      const destinationIds: string[] = [];
      for (const kind of kinds) {
        const created = await call(w.key, 'POST', '/v1/destinations', { url: `${receiver.url}/${w.workspaceId}/${kind}` });
        expect(created.statusCode, created.body).toBe(201);
        destinationIds.push(created.json<{ id: string }>().id);
      }
      expect((await call(w.key, 'POST', '/v1/rules', { name: 'all', eventTypes: ['*'], destinationIds })).statusCode).toBe(201);
      expect((await call(w.key, 'POST', '/v1/events', { type: 'invoice.paid', payload: { n: 1 } })).statusCode).toBe(202);

      // Six deliveries wait; the scrape's clock is 6 s on, so the oldest has waited that long.
      const waiting = await scrape();
      expect(waiting.value('bulkhead_deliveries', { state: 'pending' })).toBe(6);
      expect(waiting.value('bulkhead_delivery_lag_seconds')).toBeGreaterThanOrEqual(6);

      await t.app.engine.runOnce();
      const after = await scrape();
      for (const outcome of ['2xx', '3xx', '4xx', '5xx', 'timeout', 'error']) {
        expect(after.value('bulkhead_delivery_attempts_total', { outcome }) - before.value('bulkhead_delivery_attempts_total', { outcome }), outcome).toBe(1);
      }
      // 410 Gone fails for good and 2xx is delivered: neither is in the queue; the other four retry.
      expect(after.value('bulkhead_deliveries', { state: 'pending' })).toBe(0);
      expect(after.value('bulkhead_deliveries', { state: 'retrying' })).toBe(4);
      expect(after.value('bulkhead_deliveries', { state: 'delivering' })).toBe(0);
      expect(after.value('bulkhead_delivery_claim_duration_seconds_count')).toBeGreaterThan(before.value('bulkhead_delivery_claim_duration_seconds_count'));
      // Six deliveries in one claim: one claim batch of 6, recorded in batches that add up to 6.
      expect(after.value('bulkhead_delivery_batch_size_sum', { step: 'claim' }) - before.value('bulkhead_delivery_batch_size_sum', { step: 'claim' })).toBe(6);
      expect(after.value('bulkhead_delivery_batch_size_sum', { step: 'record' }) - before.value('bulkhead_delivery_batch_size_sum', { step: 'record' })).toBe(6);
      expect(after.value('bulkhead_delivery_record_duration_seconds_count')).toBeGreaterThan(before.value('bulkhead_delivery_record_duration_seconds_count'));
      // The driver counter moved by the claim's, the load's and the records' statements at least.
      expect(after.value('bulkhead_db_statements_total') - before.value('bulkhead_db_statements_total')).toBeGreaterThanOrEqual(8);
      expect(after.value('bulkhead_executions', { status: 'queued' })).toBe(0);
      expect(after.types.get('bulkhead_executions')).toBe('gauge');
    });

    it('caches the queue figures between scrapes, so scrapes cannot load the database', async () => {
      const w = await t.workspaceWithKey(['*']);
      const first = parsePrometheus((await t.admin('GET', '/metrics')).body);
      const d = (await call(w.key, 'POST', '/v1/destinations', { url: `${receiver.url}/${w.workspaceId}/ok` })).json<{ id: string }>();
      await call(w.key, 'POST', '/v1/rules', { name: 'all', eventTypes: ['*'], destinationIds: [d.id] });
      await call(w.key, 'POST', '/v1/events', { type: 'a.b', payload: {} });
      const cached = parsePrometheus((await t.admin('GET', '/metrics')).body);
      expect(cached.value('bulkhead_deliveries', { state: 'pending' })).toBe(first.value('bulkhead_deliveries', { state: 'pending' }));
      expect((await scrape()).value('bulkhead_deliveries', { state: 'pending' })).toBe(first.value('bulkhead_deliveries', { state: 'pending' }) + 1);
      await t.app.engine.runOnce();
    });

    it('shows the sandbox pool\'s queue and busy workers', async () => {
      const spin = 'function transform() { const end = Date.now() + 200; while (Date.now() < end) {} return 1; }';
      const runs = [1, 2, 3].map(() => t.app.core.sandbox.run({ code: spin, input: null }));
      const busy = parsePrometheus((await t.admin('GET', '/metrics')).body);
      // One worker: all three wait or run; the stats accessor and the scrape agree.
      expect(busy.value('bulkhead_sandbox_queue_depth') + busy.value('bulkhead_sandbox_workers', { state: 'busy' })).toBeGreaterThanOrEqual(2);
      for (const result of await Promise.all(runs)) expect(result).toMatchObject({ ok: true, value: 1 });
      const idle = parsePrometheus((await t.admin('GET', '/metrics')).body);
      expect(idle.value('bulkhead_sandbox_queue_depth')).toBe(0);
      expect(idle.value('bulkhead_sandbox_workers', { state: 'busy' })).toBe(0);
      expect(idle.value('bulkhead_sandbox_workers', { state: 'idle' })).toBe(1);
    });

    it('counts relay calls by outcome', async () => {
      const provider = `metrics-${backend.name}`;
      expect((await t.admin('POST', '/v1/providers', { key: provider, name: 'M', authType: 'api_key', baseUrls: [`${upstream.url}/v2`], apiKey: { in: 'header', name: 'Authorization', prefix: 'Bearer ' } })).statusCode).toBe(201);
      const w = await t.workspaceWithKey(['connections:write', 'proxy']);
      const connection = (await call(w.key, 'POST', '/v1/connections', { provider, name: 'm', credentials: { apiKey: 'sk_metrics_0123456789' } })).json<{ id: string }>();
      const before = await scrape();
      expect((await call(w.key, 'GET', `/v1/proxy/${connection.id}/echo`)).statusCode).toBe(200);
      expect((await t.request({ method: 'POST', url: `/v1/proxy/${connection.id}/x/flaky/9`, token: w.key, headers: { 'content-type': 'text/plain' }, payload: 'body' })).statusCode).toBe(503);
      const missing = connection.id.slice(0, -4) + (connection.id.endsWith('aaaa') ? 'bbbb' : 'aaaa');
      expect((await call(w.key, 'GET', `/v1/proxy/${missing}/echo`)).statusCode).toBe(404);
      const after = await scrape();
      expect(after.types.get('bulkhead_relay_requests_total')).toBe('counter');
      for (const outcome of ['ok', 'upstream_error', 'refused']) {
        expect(after.value('bulkhead_relay_requests_total', { outcome }) - before.value('bulkhead_relay_requests_total', { outcome }), outcome).toBe(1);
      }
    });

    it('carries no tenant, workspace or other id in any label value', async () => {
      const text = (await t.admin('GET', '/metrics')).body;
      const scraped = parsePrometheus(text);
      const idLike = new RegExp(`^(${[...new Set(Object.values(idPrefixes))].join('|')})_[0-9a-z]{6,}$`, 'u');
      const values = scraped.samples.flatMap((s) => Object.values(s.labels));
      expect(values.length).toBeGreaterThan(20);
      expect(values.filter((v) => idLike.test(v) || /^(ten|ws)_/u.test(v))).toEqual([]);
      // The tenants and workspaces this file made exist; none of their ids is anywhere in the scrape.
      const { rows } = await t.database.db.owner.query<{ id: string }>('SELECT id FROM workspaces UNION ALL SELECT id FROM tenants');
      expect(rows.length).toBeGreaterThan(0);
      for (const { id } of rows) expect(text).not.toContain(id);
    });

    it('the Grafana dashboard parses and queries only metrics that /metrics serves', async () => {
      const scraped = await scrape();
      const exprs = dashboard.panels.flatMap((p) => p.targets.map((target) => target.expr));
      expect(exprs.length).toBeGreaterThanOrEqual(8);
      const names = new Set(exprs.flatMap((e) => e.match(/bulkhead_[a-z_]+/gu) ?? []));
      expect(names.size).toBeGreaterThanOrEqual(8);
      // The families this issue added are all on the dashboard.
      for (const added of ['bulkhead_deliveries', 'bulkhead_delivery_lag_seconds', 'bulkhead_delivery_attempts_total', 'bulkhead_delivery_claim_duration_seconds_bucket', 'bulkhead_executions', 'bulkhead_sandbox_queue_depth', 'bulkhead_sandbox_workers', 'bulkhead_relay_requests_total']) expect(names).toContain(added);
      for (const name of names) {
        // Declared with its type (a labelled counter has no sample until its first event).
        expect(familyOf(scraped, name), name).toBeDefined();
      }
    });

    it('GET /v1/usage shows the workspace\'s counts against its limits (the tenant plan\'s where set)', async () => {
      const tenant = (await t.admin('POST', '/v1/tenants', { name: 'Usage', slug: `usage-${backend.name}`, limits: { eventsPerMonth: 42, connectionsPerWorkspace: 3 } })).json<{ id: string }>();
      const ws = (await t.admin('POST', `/v1/tenants/${tenant.id}/workspaces`, { name: 'main', environment: 'production' })).json<{ id: string }>();
      const key = (await t.admin('POST', `/v1/workspaces/${ws.id}/api-keys`, { name: 'all', scopes: ['*'] })).json<{ key: string }>().key;
      const reader = (await t.admin('POST', `/v1/workspaces/${ws.id}/api-keys`, { name: 'usage', scopes: ['usage:read'] })).json<{ key: string }>().key;
      const ids: string[] = [];
      for (const kind of ['ok', 'ok2']) ids.push((await call(key, 'POST', '/v1/destinations', { url: `${receiver.url}/${ws.id}/${kind}` })).json<{ id: string }>().id);
      await call(key, 'POST', '/v1/rules', { name: 'all', eventTypes: ['*'], destinationIds: ids });
      for (let i = 0; i < 3; i++) expect((await call(key, 'POST', '/v1/events', { type: 'a.b', payload: { i } })).statusCode).toBe(202);

      const usage = await call(reader, 'GET', '/v1/usage');
      expect(usage.statusCode, usage.body).toBe(200);
      const now = t.clock.now();
      expect(usage.json()).toEqual({
        workspaceId: ws.id,
        period: `${String(now.getUTCFullYear())}-${String(now.getUTCMonth() + 1).padStart(2, '0')}`,
        events: { used: 3, limit: 42 },
        connections: { used: 0, limit: 3 },
        destinations: { used: 2, limit: t.config.destinationsPerWorkspace },
        rules: { used: 1, limit: t.config.rulesPerWorkspace },
        instances: { used: 0, limit: t.config.instancesPerWorkspace },
        inboundSources: { used: 0, limit: 50 },
      });
      // The platform's view of the same workspace, and the server defaults where the plan is silent.
      expect((await t.admin('GET', `/v1/workspaces/${ws.id}/usage`)).json()).toEqual(usage.json());
      const plain = await t.workspaceWithKey(['usage:read']);
      expect((await call(plain.key, 'GET', '/v1/usage')).json()).toMatchObject({ workspaceId: plain.workspaceId, events: { used: 0, limit: t.config.eventsPerMonth }, connections: { limit: t.config.connectionsPerWorkspace } });

      const narrow = await t.workspaceWithKey(['events:read']);
      expect((await call(narrow.key, 'GET', '/v1/usage')).statusCode).toBe(403);
      expect((await call(key, 'GET', `/v1/workspaces/${ws.id}/usage`)).json()).toMatchObject({ code: 'wrong_credential_kind' });
      expect((await t.admin('GET', '/v1/workspaces/ws_00000000000000000000000000/usage')).json()).toMatchObject({ code: 'not_found' });
      expect((await t.admin('GET', '/v1/workspaces/nope/usage')).statusCode).toBe(404);
    });
  });
});
