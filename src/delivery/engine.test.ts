import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import { startReceiver } from '../testing/receiver.js';

describe.each(backends)('the delivery engine on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    let receiver: Awaited<ReturnType<typeof startReceiver>>;
    beforeAll(async () => {
      receiver = await startReceiver();
      t = await startTestApp(backend, { config: { egressAllowCidrs: ['127.0.0.1/32'], retrySchedule: [1, 1, 1], deliveryTimeoutMs: 500, workerPerDestination: 4, workerConcurrency: 16 } });
    });
    afterAll(async () => {
      await t.close();
      await receiver.close();
    });

    const call = (key: string, method: 'GET' | 'POST', url: string, json?: unknown) => t.request({ method, url, token: key, ...(json === undefined ? {} : { json }) });

    async function route(path: string) {
      const w = await t.workspaceWithKey(['*']);
      const destination = (await call(w.key, 'POST', '/v1/destinations', { url: `${receiver.url}/${w.workspaceId}/${path}`, headers: { 'x-team': 'billing' } })).json<{ id: string; secret: string }>();
      await call(w.key, 'POST', '/v1/rules', { name: 'all', eventTypes: ['*'], destinationIds: [destination.id] });
      return { ...w, destination };
    }
    const emit = async (key: string, payload: unknown = { amount: 1 }) => (await call(key, 'POST', '/v1/events', { type: 'invoice.paid', payload })).json<{ id: string }>().id;
    const deliveriesOf = async (key: string, eventId: string) =>
      (await call(key, 'GET', `/v1/deliveries?eventId=${eventId}`)).json<{ data: { id: string; status: string; attemptsThisRound: number; attemptsTotal: number; lastStatus: number | null; lastError: string | null }[] }>().data;
    /** Runs the engine until nothing is due, advancing the clock past each retry. */
    async function drain(rounds = 10) {
      for (let i = 0; i < rounds; i++) {
        await t.app.engine.runOnce();
        t.clock.advance(1500);
      }
    }

    it('delivers signed with Standard Webhooks: the official verifier accepts it, webhook-id is the delivery id', async () => {
      const { key, destination, workspaceId } = await route('ok');
      const eventId = await emit(key, { amount: 42, note: 'ü' });
      expect(await t.app.engine.runOnce()).toBeGreaterThanOrEqual(1);
      const [delivery] = await deliveriesOf(key, eventId);
      expect(delivery).toMatchObject({ status: 'delivered', attemptsThisRound: 1, lastStatus: 200 });
      const got = receiver.received.filter((r) => r.path.startsWith(`/${workspaceId}/`));
      expect(got).toHaveLength(1);
      const headers = got[0]?.headers ?? {};
      expect(headers['webhook-id']).toBe(delivery?.id);
      expect(headers['x-team']).toBe('billing');
      const verified = new Webhook(destination.secret).verify(got[0]?.body ?? '', { 'webhook-id': String(headers['webhook-id']), 'webhook-timestamp': String(headers['webhook-timestamp']), 'webhook-signature': String(headers['webhook-signature']) });
      expect(verified).toMatchObject({ type: 'invoice.paid', data: { amount: 42, note: 'ü' } });
    });

    it('retries failures on the schedule with the same webhook-id, then fails with an operational event', async () => {
      const { key, workspaceId } = await route('fail');
      const eventId = await emit(key);
      await t.app.engine.runOnce();
      expect((await deliveriesOf(key, eventId))[0]).toMatchObject({ status: 'retrying', attemptsThisRound: 1, lastStatus: 500 });
      await t.app.engine.runOnce(); // not due yet: nothing happens
      expect((await deliveriesOf(key, eventId))[0]).toMatchObject({ attemptsThisRound: 1 });
      await drain();
      const [delivery] = await deliveriesOf(key, eventId);
      expect(delivery).toMatchObject({ status: 'failed', attemptsThisRound: 4, attemptsTotal: 4 });
      const got = receiver.received.filter((r) => r.path.startsWith(`/${workspaceId}/`));
      expect(got).toHaveLength(4);
      expect(new Set(got.map((r) => r.headers['webhook-id']))).toEqual(new Set([delivery?.id]));
      const events = (await call(key, 'GET', '/v1/operational-events')).json<{ data: { type: string; resourceId: string }[] }>().data;
      expect(events).toEqual(expect.arrayContaining([expect.objectContaining({ type: 'bulkhead.delivery.exhausted', resourceId: delivery?.id }), expect.objectContaining({ type: 'bulkhead.delivery.failing' })]));
      expect(events.filter((e) => e.type === 'bulkhead.delivery.failing')).toHaveLength(1);
      const { rows } = await t.database.db.owner.query<{ n: number }>('SELECT count(*)::int AS n FROM delivery_attempts WHERE delivery_id = $1', [delivery?.id]);
      expect(rows[0]?.n).toBe(4);
      const detail = (await call(key, 'GET', `/v1/deliveries/${delivery?.id ?? ''}`)).json<{ attempts: { attempt: number; status: number; responseBody: string }[] }>();
      expect(detail.attempts.map((a) => [a.attempt, a.status, a.responseBody])).toEqual([1, 2, 3, 4].map((n) => [n, 500, 'receiver exploded']));

      // A manual retry re-queues it (same webhook-id); recover re-queues a window of failures.
      const retried = await call(key, 'POST', `/v1/deliveries/${delivery?.id ?? ''}/retry`);
      expect(retried.statusCode).toBe(202);
      expect(retried.json()).toMatchObject({ status: 'pending', attemptsThisRound: 0, attemptsTotal: 4 });
      expect((await call(key, 'POST', `/v1/deliveries/${delivery?.id ?? ''}/retry`)).statusCode).toBe(409);
      await t.app.engine.runOnce();
      expect(receiver.received.filter((r) => r.path.startsWith(`/${workspaceId}/`)).at(-1)?.headers['webhook-id']).toBe(delivery?.id);
      await drain();
      // The second round failed its 4 attempts too: this round's count starts again, the total does not.
      const afterRetry = (await call(key, 'GET', `/v1/deliveries/${delivery?.id ?? ''}`)).json<{ status: string; attemptsThisRound: number; attemptsTotal: number; attempts: { attempt: number }[] }>();
      expect(afterRetry).toMatchObject({ status: 'failed', attemptsThisRound: 4, attemptsTotal: 8 });
      expect(afterRetry.attempts.map((a) => a.attempt)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      expect((await deliveriesOf(key, eventId))[0]).toMatchObject({ attemptsThisRound: 4, attemptsTotal: 8 });
      const destinationId = (await call(key, 'GET', '/v1/destinations')).json<{ data: { id: string }[] }>().data[0]?.id ?? '';
      expect((await deliveriesOf(key, eventId))[0]).toMatchObject({ status: 'failed' });
      const recovered = await call(key, 'POST', `/v1/destinations/${destinationId}/recover`, { since: new Date(0).toISOString() });
      expect(recovered.json()).toEqual({ requeued: 1 });
      expect((await deliveriesOf(key, eventId))[0]).toMatchObject({ status: 'pending' });
    });

    it('treats timeouts, resets and redirects as failures, and 410 Gone disables the destination', async () => {
      for (const [path, error] of [['slow', 'egress_timeout'], ['reset', 'egress_failed'], ['redirect', null]] as const) {
        const { key } = await route(path);
        const eventId = await emit(key);
        await t.app.engine.runOnce();
        const [delivery] = await deliveriesOf(key, eventId);
        expect(delivery, path).toMatchObject({ status: 'retrying', attemptsThisRound: 1, lastError: error });
        if (path === 'redirect') expect(delivery?.lastStatus).toBe(302);
      }
      const { key, destination } = await route('gone');
      const eventId = await emit(key);
      await t.app.engine.runOnce();
      expect((await deliveriesOf(key, eventId))[0]).toMatchObject({ status: 'failed', attemptsThisRound: 1, lastStatus: 410 });
      expect((await call(key, 'GET', `/v1/destinations/${destination.id}`)).json()).toMatchObject({ enabled: false, disabledReason: expect.stringContaining('410') as string });
      const types = (await call(key, 'GET', '/v1/operational-events')).json<{ data: { type: string }[] }>().data.map((e) => e.type);
      expect(types).toEqual(expect.arrayContaining(['bulkhead.destination.disabled', 'bulkhead.delivery.exhausted']));
      // A disabled destination gets no new deliveries.
      expect((await call(key, 'POST', '/v1/events', { type: 'x', payload: {} })).json()).toMatchObject({ deliveries: 0 });
    });

    it('reports a failing destination, disables it after the window, and reports recovery', async () => {
      const failing = await route('fail');
      const eventId = await emit(failing.key);
      await t.app.engine.runOnce();
      t.clock.advance(5 * 86_400_000 + 1000); // past BULKHEAD_DESTINATION_DISABLE_AFTER_MS (5 days)
      await t.app.engine.runOnce();
      expect((await deliveriesOf(failing.key, eventId))[0]).toMatchObject({ attemptsThisRound: 2 });
      expect((await call(failing.key, 'GET', `/v1/destinations/${failing.destination.id}`)).json()).toMatchObject({ enabled: false, disabledReason: 'failing continuously' });
      const types = (await call(failing.key, 'GET', '/v1/operational-events')).json<{ data: { type: string }[] }>().data.map((e) => e.type);
      expect(types).toEqual(expect.arrayContaining(['bulkhead.delivery.failing', 'bulkhead.destination.disabled']));

      const flaky = await route('fail');
      const second = await emit(flaky.key);
      await t.app.engine.runOnce();
      // The receiver is fixed: point the destination at a working path.
      await t.request({ method: 'PATCH', url: `/v1/destinations/${flaky.destination.id}`, token: flaky.key, json: { url: `${receiver.url}/${flaky.workspaceId}/ok` } });
      t.clock.advance(1500);
      await t.app.engine.runOnce();
      expect((await deliveriesOf(flaky.key, second))[0]).toMatchObject({ status: 'delivered', attemptsThisRound: 2 });
      const after = (await call(flaky.key, 'GET', '/v1/operational-events')).json<{ data: { type: string }[] }>().data.map((e) => e.type);
      expect(after).toEqual(expect.arrayContaining(['bulkhead.delivery.failing', 'bulkhead.destination.recovered']));
    });

    it('honours a longer Retry-After', async () => {
      const { key } = await route('busy');
      const eventId = await emit(key);
      const before = t.clock.now().getTime();
      await t.app.engine.runOnce();
      const { rows } = await t.database.db.owner.query<{ next_attempt_at: Date }>('SELECT next_attempt_at FROM deliveries WHERE event_id = $1', [eventId]);
      expect((rows[0]?.next_attempt_at.getTime() ?? 0) - before).toBeGreaterThanOrEqual(119_000);
    });

    it('serves a quiet workspace in the first claim while another has a backlog', async () => {
      const noisy = await route('ok');
      await call(noisy.key, 'POST', '/v1/events/batch', { events: Array.from({ length: 200 }, (_, i) => ({ type: 'bulk.item', payload: { i } })) });
      const quiet = await route('ok');
      t.clock.advance(1); // the quiet event is the newest of all
      const eventId = await emit(quiet.key);
      await t.app.engine.runOnce();
      expect((await deliveriesOf(quiet.key, eventId))[0]).toMatchObject({ status: 'delivered' });
      const { rows } = await t.database.db.owner.query<{ n: number }>("SELECT count(*)::int AS n FROM deliveries WHERE workspace_id = $1 AND status = 'delivered'", [noisy.workspaceId]);
      expect(rows[0]?.n).toBeLessThanOrEqual(4); // one claim takes at most perDestination from the backlog
      for (let i = 0; i < 80 && (await t.app.engine.runOnce()) > 0; i++);
      const done = await t.database.db.owner.query<{ n: number }>("SELECT count(*)::int AS n FROM deliveries WHERE workspace_id = $1 AND status = 'delivered'", [noisy.workspaceId]);
      expect(done.rows[0]?.n).toBe(200);
    });

    it('delivers in order per resourceId when the destination asks for it', async () => {
      const w = await t.workspaceWithKey(['*']);
      const destination = (await call(w.key, 'POST', '/v1/destinations', { url: `${receiver.url}/${w.workspaceId}/fail`, ordered: true })).json<{ id: string }>();
      await call(w.key, 'POST', '/v1/rules', { name: 'all', eventTypes: ['*'], destinationIds: [destination.id] });
      const first = (await call(w.key, 'POST', '/v1/events', { type: 'order.updated', resourceId: 'ord_1', payload: { v: 1 } })).json<{ id: string }>().id;
      const second = (await call(w.key, 'POST', '/v1/events', { type: 'order.updated', resourceId: 'ord_1', payload: { v: 2 } })).json<{ id: string }>().id;
      const other = (await call(w.key, 'POST', '/v1/events', { type: 'order.updated', resourceId: 'ord_2', payload: { v: 1 } })).json<{ id: string }>().id;
      await t.app.engine.runOnce();
      expect((await deliveriesOf(w.key, first))[0]).toMatchObject({ status: 'retrying', attemptsThisRound: 1 });
      expect((await deliveriesOf(w.key, second))[0]).toMatchObject({ status: 'pending', attemptsThisRound: 0 });
      expect((await deliveriesOf(w.key, other))[0]).toMatchObject({ attemptsThisRound: 1 });
      // The second waits until the first is finished (here: failed after its last attempt).
      for (let i = 0; i < 3; i++) {
        t.clock.advance(1500);
        await t.app.engine.runOnce();
        expect((await deliveriesOf(w.key, second))[0]?.attemptsThisRound).toBe(0);
      }
      expect((await deliveriesOf(w.key, first))[0]).toMatchObject({ status: 'failed', attemptsThisRound: 4 });
      t.clock.advance(1500);
      await t.app.engine.runOnce();
      expect((await deliveriesOf(w.key, second))[0]).toMatchObject({ attemptsThisRound: 1 });
      const bodies = receiver.received.filter((r) => r.path.startsWith(`/${w.workspaceId}/`)).map((r) => (JSON.parse(r.body) as { data: { v: number } }).data.v);
      expect(bodies.lastIndexOf(1)).toBeLessThan(bodies.indexOf(2));
    });

    it('records a batch under the lease guard: an attempt whose lease another worker took is not on record, nor counted in health', async () => {
      const { key, workspaceId, destination } = await route('slow'); // answers after 2 s: each attempt times out at 500 ms
      const [first, second] = [await emit(key), await emit(key)];
      const [lost] = await deliveriesOf(key, first);
      const running = t.app.engine.runOnce();
      // Both are in flight; another worker takes the first one's lease meanwhile.
      for (let i = 0; i < 100 && receiver.received.filter((r) => r.path.startsWith(`/${workspaceId}/`)).length < 2; i++) await new Promise((r) => setTimeout(r, 20));
      await t.database.db.owner.query("UPDATE deliveries SET lease_owner = 'wrk_other' WHERE id = $1", [lost?.id]);
      await running;
      const { rows } = await t.database.db.owner.query<{ delivery_id: string; error: string }>('SELECT delivery_id, error FROM delivery_attempts WHERE workspace_id = $1', [workspaceId]);
      const [kept] = await deliveriesOf(key, second);
      expect(rows).toEqual([{ delivery_id: kept?.id, error: 'egress_timeout' }]);
      expect(kept).toMatchObject({ status: 'retrying', attemptsThisRound: 1 });
      expect((await deliveriesOf(key, first))[0]).toMatchObject({ status: 'delivering', attemptsTotal: 0 });
      const dst = (await call(key, 'GET', `/v1/destinations/${destination.id}`)).json<{ circuit: { consecutiveFailures: number } }>();
      expect(dst.circuit.consecutiveFailures).toBe(1);
    });

    it('re-claims a crashed worker\'s delivery when its lease expires', async () => {
      const { key } = await route('ok');
      const eventId = await emit(key);
      const [delivery] = await deliveriesOf(key, eventId);
      await t.database.db.owner.query("UPDATE deliveries SET status = 'delivering', lease_owner = 'wrk_dead', lease_until = $2 WHERE id = $1", [delivery?.id, new Date(t.clock.now().getTime() + 60_000)]);
      await t.app.engine.runOnce();
      expect((await deliveriesOf(key, eventId))[0]).toMatchObject({ status: 'delivering' });
      t.clock.advance(61_000);
      await t.app.engine.runOnce();
      expect((await deliveriesOf(key, eventId))[0]).toMatchObject({ status: 'delivered', attemptsThisRound: 1 });
    });
  });
});
