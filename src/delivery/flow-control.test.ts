import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emitOperationalEvent } from '../events/operational.js';
import { createDeliveryEngine } from './engine.js';
import { startTestApp, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import { startReceiver } from '../testing/receiver.js';

describe.each(backends)('delivery flow control and operational events on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    let receiver: Awaited<ReturnType<typeof startReceiver>>;
    beforeAll(async () => {
      receiver = await startReceiver();
      t = await startTestApp(backend, {
        config: { egressAllowCidrs: ['127.0.0.1/32'], retrySchedule: [1, 1, 1], deliveryTimeoutMs: 500, workerPerDestination: 4, workerConcurrency: 16, circuitFailures: 3, circuitCooldownMs: 1000 },
      });
    });
    afterAll(async () => {
      await t.close();
      await receiver.close();
    });

    const call = (key: string, method: 'GET' | 'POST' | 'PATCH', url: string, json?: unknown) => t.request({ method, url, token: key, ...(json === undefined ? {} : { json }) });
    async function route(path: string, options: Record<string, unknown> = {}, eventTypes = ['*']) {
      const w = await t.workspaceWithKey(['*']);
      const destination = (await call(w.key, 'POST', '/v1/destinations', { url: `${receiver.url}/${w.workspaceId}/${path}`, ...options })).json<{ id: string }>();
      await call(w.key, 'POST', '/v1/rules', { name: 'all', eventTypes, destinationIds: [destination.id] });
      return { ...w, destination };
    }
    const emitMany = (key: string, n: number) => call(key, 'POST', '/v1/events/batch', { events: Array.from({ length: n }, (_, i) => ({ type: 'item.created', payload: { i } })) });
    const statusCounts = async (workspaceId: string) => {
      const { rows } = await t.database.db.owner.query<{ status: string; n: number }>('SELECT status, count(*)::int AS n FROM deliveries WHERE workspace_id = $1 GROUP BY status', [workspaceId]);
      return Object.fromEntries(rows.map((r) => [r.status, r.n])) as Record<string, number>;
    };
    const receivedBy = (workspaceId: string) => receiver.received.filter((r) => r.path.startsWith(`/${workspaceId}/`));

    const secondWorker = (concurrency: number) =>
      createDeliveryEngine({
        withPlatform: t.app.core.withPlatform,
        withWorkspace: t.app.core.withWorkspace,
        vault: t.app.core.vault,
        egress: t.app.core.egress,
        destinations: t.app.core.destinations,
        runtime: t.clock,
        logger: t.app.http.log,
        emit: (tx, alert, options) => emitOperationalEvent(tx, { vault: t.app.core.vault, runtime: t.clock }, alert, options),
        options: { concurrency, perDestination: 4, leaseMs: 60_000, pollMs: 50, timeoutMs: 5000, schedule: [1], disableAfterMs: 86_400_000, keepResponseBytes: 1024, defaultMaxInFlight: 16, circuitFailures: 3, circuitCooldownMs: 1000 },
      });

    it('shares a worker\'s budget one delivery per destination per turn, so a backlog cannot use it up', async () => {
      const busy = await route('ok');
      await emitMany(busy.key, 10);
      const quiet = await Promise.all([route('ok'), route('ok'), route('ok')]);
      for (const q of quiet) await emitMany(q.key, 1);
      const worker = secondWorker(4);
      expect(await worker.runOnce()).toBe(4);
      expect(await statusCounts(busy.workspaceId)).toEqual({ delivered: 1, pending: 9 });
      for (const q of quiet) expect(await statusCounts(q.workspaceId)).toEqual({ delivered: 1 });
      // Alone in line now, the busy destination still gets at most half of this worker (2 of 4).
      expect(await worker.runOnce()).toBe(2);
      expect(await statusCounts(busy.workspaceId)).toEqual({ delivered: 3, pending: 7 });
    });

    it('keeps a destination to its rate limit across claims', async () => {
      const { key, workspaceId, destination } = await route('ok', { rateLimitPerSecond: 2 });
      await emitMany(key, 9);
      const t0 = t.clock.now().getTime();
      await t.app.engine.runOnce();
      expect(receivedBy(workspaceId)).toHaveLength(2); // a full bucket holds one second of the rate
      // Claims in a tight loop: only what the clock refills (2 per second) gets through.
      for (let i = 0; i < 5; i++) await t.app.engine.runOnce();
      const elapsed = (t.clock.now().getTime() - t0) / 1000;
      expect(receivedBy(workspaceId).length).toBeLessThanOrEqual(2 + Math.floor(elapsed * 2));
      // A long pause refills one second's worth, not a minute's.
      t.clock.advance(60_000);
      const before = receivedBy(workspaceId).length;
      await t.app.engine.runOnce();
      expect(receivedBy(workspaceId).length - before).toBe(2);
      // Lifting the limit lets the rest go at once.
      await call(key, 'PATCH', `/v1/destinations/${destination.id}`, { rateLimitPerSecond: null });
      await t.app.engine.runOnce();
      await t.app.engine.runOnce();
      expect(await statusCounts(workspaceId)).toEqual({ delivered: 9 });
    });

    it('caps deliveries in flight to one destination across workers, and a slow destination holds up nobody else', async () => {
      const slow = await route('slow', { maxInFlight: 2 });
      await emitMany(slow.key, 6);
      const fast = await route('ok');
      await emitMany(fast.key, 3);
      // A second worker process, sharing the database (its own owner id and in-flight map).
      const other = secondWorker(16);
      const first = other.runOnce(); // takes 2 slow ones and holds them for ~2 s
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(await statusCounts(slow.workspaceId)).toMatchObject({ delivering: 2, pending: 4 });
      const started = performance.now();
      await t.app.engine.runOnce(); // the cap is full: nothing more for the slow one; the fast one goes
      expect(performance.now() - started).toBeLessThan(1500);
      expect(await statusCounts(slow.workspaceId)).toMatchObject({ delivering: 2, pending: 4 });
      expect(await statusCounts(fast.workspaceId)).toEqual({ delivered: 3 });
      await first;
      expect(await statusCounts(slow.workspaceId)).toMatchObject({ delivered: 2, pending: 4 });
    });

    it('opens the circuit after consecutive failures, probes after the cool-down and closes on success', async () => {
      const { key, workspaceId, destination } = await route('fail');
      await emitMany(key, 6);
      await t.app.engine.runOnce(); // 4 failures: the circuit opens (threshold 3)
      const open = (await call(key, 'GET', `/v1/destinations/${destination.id}`)).json<{ circuit: { state: string; consecutiveFailures: number } }>();
      expect(open.circuit).toMatchObject({ state: 'open', consecutiveFailures: 4 });
      t.clock.advance(1200); // retries are due, but the circuit is open (2 s after 4 failures)
      await t.app.engine.runOnce();
      expect(receivedBy(workspaceId)).toHaveLength(4);
      t.clock.advance(1500);
      await t.app.engine.runOnce(); // half-open: exactly one probe, which fails and re-opens for longer (4 s)
      expect(receivedBy(workspaceId)).toHaveLength(5);
      expect((await call(key, 'GET', `/v1/destinations/${destination.id}`)).json<{ circuit: { state: string } }>().circuit.state).toBe('open');
      await call(key, 'PATCH', `/v1/destinations/${destination.id}`, { url: `${receiver.url}/${workspaceId}/ok` });
      t.clock.advance(4500);
      await t.app.engine.runOnce(); // the probe succeeds and closes the circuit
      expect((await call(key, 'GET', `/v1/destinations/${destination.id}`)).json<{ circuit: unknown }>().circuit).toEqual({ state: 'closed', consecutiveFailures: 0, openUntil: null });
      for (let i = 0; i < 3; i++) await t.app.engine.runOnce();
      expect(await statusCounts(workspaceId)).toEqual({ delivered: 6 });
    });

    it('keeps the start of a huge answer and a trickling one, and counts both as delivered', async () => {
      for (const path of ['huge', 'dribble']) {
        const { key, workspaceId } = await route(path);
        await emitMany(key, 1);
        const started = performance.now();
        await t.app.engine.runOnce();
        expect(performance.now() - started, path).toBeLessThan(2000); // not 5 s of trickle
        expect(await statusCounts(workspaceId), path).toEqual({ delivered: 1 });
        const [delivery] = (await call(key, 'GET', '/v1/deliveries')).json<{ data: { id: string }[] }>().data;
        const detail = (await call(key, 'GET', `/v1/deliveries/${delivery?.id ?? ''}`)).json<{ attempts: { status: number; responseBody: string }[] }>();
        expect(detail.attempts[0]?.status).toBe(200);
        if (path === 'huge') expect(detail.attempts[0]?.responseBody).toBe('x'.repeat(4096));
        else expect(detail.attempts[0]?.responseBody).toMatch(/^\.{0,10}$/);
      }
    });

    it('routes operational events to rules that name the bulkhead namespace, never back to the destination they are about', async () => {
      const w = await t.workspaceWithKey(['*']);
      const create = async (path: string) => (await call(w.key, 'POST', '/v1/destinations', { url: `${receiver.url}/${w.workspaceId}/${path}` })).json<{ id: string }>().id;
      const gone = await create('gone');
      const alerts = await create('ok');
      const failingAlerts = await create('fail');
      await call(w.key, 'POST', '/v1/rules', { name: 'everything', eventTypes: ['*'], destinationIds: [gone] });
      await call(w.key, 'POST', '/v1/rules', { name: 'alerts', eventTypes: ['bulkhead.*'], destinationIds: [alerts, failingAlerts, gone] });
      // The platform cannot forge Bulkhead's own events.
      const forged = await call(w.key, 'POST', '/v1/events', { type: 'bulkhead.destination.disabled', payload: {} });
      expect([forged.statusCode, forged.json<{ code: string }>().code]).toEqual([400, 'invalid_event_type']);

      await call(w.key, 'POST', '/v1/events', { type: 'invoice.paid', payload: { n: 1 } });
      // Until the failing alert endpoint has exhausted every delivery (its circuit opens on the way).
      const open = async () => (await t.database.db.owner.query<{ n: number }>("SELECT count(*)::int AS n FROM deliveries WHERE workspace_id = $1 AND status NOT IN ('delivered', 'failed')", [w.workspaceId])).rows[0]?.n;
      for (let i = 0; i < 40 && (i < 3 || (await open()) !== 0); i++) {
        await t.app.engine.runOnce();
        t.clock.advance(40_000);
      }
      expect(await open()).toBe(0);
      const { rows: events } = await t.database.db.owner.query<{ type: string; id: string }>('SELECT type, id FROM events WHERE workspace_id = $1 ORDER BY id', [w.workspaceId]);
      const types = events.map((e) => e.type).sort();
      // 410 from `gone`: failing, disabled and exhausted; the failing alert endpoint's own failures are recorded, not routed again.
      expect(types).toEqual(['bulkhead.delivery.exhausted', 'bulkhead.delivery.failing', 'bulkhead.destination.disabled', 'invoice.paid']);
      const { rows: deliveries } = await t.database.db.owner.query<{ type: string; destination_id: string; status: string }>(
        'SELECT e.type, d.destination_id, d.status FROM deliveries d JOIN events e ON e.workspace_id = d.workspace_id AND e.id = d.event_id WHERE d.workspace_id = $1',
        [w.workspaceId],
      );
      const to = (destination: string) => deliveries.filter((d) => d.destination_id === destination).map((d) => d.type).sort();
      expect(to(gone)).toEqual(['invoice.paid']);
      expect(to(alerts)).toEqual(['bulkhead.delivery.exhausted', 'bulkhead.delivery.failing', 'bulkhead.destination.disabled']);
      expect(to(failingAlerts)).toEqual(['bulkhead.delivery.exhausted', 'bulkhead.delivery.failing', 'bulkhead.destination.disabled']);
      expect(deliveries.filter((d) => d.destination_id === failingAlerts).every((d) => d.status === 'failed')).toBe(true);
      const alert = receivedBy(w.workspaceId).find((r) => r.path.endsWith('/ok') && r.body.includes('bulkhead.destination.disabled'));
      expect(JSON.parse(alert?.body ?? '{}')).toMatchObject({ type: 'bulkhead.destination.disabled', data: { destinationId: gone, reason: 'gone' } });
      // Everything is also listed as operational events, the unrouted ones included.
      const listed = (await call(w.key, 'GET', '/v1/operational-events')).json<{ data: { type: string }[] }>().data.map((e) => e.type);
      expect(listed.filter((type) => type === 'bulkhead.delivery.exhausted').length).toBeGreaterThanOrEqual(3);
    });
  });
});
