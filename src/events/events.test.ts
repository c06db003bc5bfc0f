import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';

describe.each(backends)('events, destinations and rules on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startTestApp(backend, { config: { egressAllowCidrs: ['127.0.0.1/32'] } });
    });
    afterAll(async () => t.close());

    const call = (key: string, method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, json?: unknown, headers?: Record<string, string>) =>
      t.request({ method, url, token: key, ...(json === undefined ? {} : { json }), ...(headers ? { headers } : {}) });

    async function setup(scopes = ['*']) {
      const w = await t.workspaceWithKey(scopes);
      const destination = await call(w.key, 'POST', '/v1/destinations', { type: 'webhook', url: 'http://127.0.0.1:9/hook', description: 'test', headers: { 'x-team': 'billing' } });
      expect(destination.statusCode, destination.body).toBe(201);
      const d = destination.json<{ id: string; secret: string }>();
      return { ...w, destinationId: d.id, secret: d.secret };
    }
    const countDeliveries = async (workspaceId: string) =>
      (await t.database.db.owner.query<{ n: number }>('SELECT count(*)::int AS n FROM deliveries WHERE workspace_id = $1', [workspaceId])).rows[0]?.n;

    it('creates destinations with a Standard Webhooks secret, sealed at rest, and rotates it with an overlap', async () => {
      const { key, destinationId, secret, workspaceId } = await setup();
      expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
      expect(Buffer.from(secret.slice(6), 'base64').length).toBe(32);
      const { rows } = await t.database.db.owner.query<{ secret: Uint8Array }>('SELECT secret FROM destination_secrets WHERE workspace_id = $1', [workspaceId]);
      expect(Buffer.from(rows[0]?.secret ?? []).toString('latin1')).not.toContain(secret.slice(6, 30));
      expect((await call(key, 'GET', `/v1/destinations/${destinationId}`)).body).not.toContain(secret);
      expect((await call(key, 'GET', `/v1/destinations/${destinationId}/secret`)).json()).toEqual({ secret, previous: [] });

      const rotated = (await call(key, 'POST', `/v1/destinations/${destinationId}/rotate-secret`, { overlapSeconds: 3600 })).json<{ secret: string; previousExpiresAt: string }>();
      expect(rotated.secret).not.toBe(secret);
      const both = (await call(key, 'GET', `/v1/destinations/${destinationId}/secret`)).json<{ secret: string; previous: { secret: string }[] }>();
      expect(both.secret).toBe(rotated.secret);
      expect(both.previous.map((p) => p.secret)).toEqual([secret]);
      t.clock.advance(3601_000);
      expect((await call(key, 'GET', `/v1/destinations/${destinationId}/secret`)).json()).toEqual({ secret: rotated.secret, previous: [] });
    });

    it('refuses hostile URLs, reserved headers and another workspace\'s destinations', async () => {
      const { key } = await t.workspaceWithKey(['*']);
      for (const url of ['http://169.254.169.254/latest', 'http://10.0.0.1/x', 'http://[::1]/x', 'http://2130706434/x']) {
        const refused = await call(key, 'POST', '/v1/destinations', { url });
        expect(refused.statusCode, url).toBe(422);
        expect(refused.json()).toMatchObject({ code: 'egress_blocked' });
      }
      expect((await call(key, 'POST', '/v1/destinations', { url: 'ftp://x.example/' })).json()).toMatchObject({ code: 'validation_failed' });
      for (const name of ['authorization', 'Webhook-Signature', 'host', 'content-length', 'x-forwarded-for']) {
        expect((await call(key, 'POST', '/v1/destinations', { url: 'http://127.0.0.1:9/h', headers: { [name]: 'x' } })).json(), name).toMatchObject({ code: 'validation_failed' });
      }
      const other = await setup();
      expect((await call(key, 'GET', `/v1/destinations/${other.destinationId}`)).statusCode).toBe(404);
      expect((await call(key, 'POST', '/v1/rules', { name: 'steal', eventTypes: ['*'], destinationIds: [other.destinationId] })).json()).toMatchObject({ code: 'not_found' });
    });

    it('validates rules: patterns and filters are checked, every problem listed', async () => {
      const { key, destinationId } = await setup();
      const bad = await call(key, 'POST', '/v1/rules', { name: 'bad', eventTypes: ['Invoice.*', 'a..b'], filter: { $where: 'x', amount: { $regex: '.' } }, destinationIds: [destinationId] });
      expect(bad.statusCode).toBe(400);
      expect(bad.json<{ problems: string[] }>().problems).toHaveLength(4);
      expect((await call(key, 'POST', '/v1/rules', { name: 'ok', eventTypes: ['invoice.*'], destinationIds: [destinationId] })).statusCode).toBe(201);
      expect((await call(key, 'POST', '/v1/rules', { name: 'ok', eventTypes: ['invoice.*'], destinationIds: [destinationId] })).json()).toMatchObject({ code: 'name_taken' });
    });

    it('commits the event with one delivery per matching destination before answering 202', async () => {
      const { key, destinationId, workspaceId } = await setup();
      const second = (await call(key, 'POST', '/v1/destinations', { url: 'http://127.0.0.1:9/second', eventTypes: ['invoice.paid'] })).json<{ id: string }>().id;
      const disabled = (await call(key, 'POST', '/v1/destinations', { url: 'http://127.0.0.1:9/off', enabled: false })).json<{ id: string }>().id;
      await call(key, 'POST', '/v1/rules', { name: 'invoices', eventTypes: ['invoice.*'], destinationIds: [destinationId, second, disabled] });
      await call(key, 'POST', '/v1/rules', { name: 'big', eventTypes: ['invoice.*'], filter: { amount: { $gte: 1000 } }, destinationIds: [destinationId] });
      await call(key, 'POST', '/v1/rules', { name: 'eu customers', eventTypes: ['customer.created'], resource: 'customer', filter: { 'address.country': { $in: ['DE', 'FR'] } }, destinationIds: [destinationId] });

      const paid = await call(key, 'POST', '/v1/events', { type: 'invoice.paid', resource: 'invoice', resourceId: 'in_1', payload: { amount: 5000 } });
      expect(paid.statusCode, paid.body).toBe(202);
      expect(paid.json()).toMatchObject({ type: 'invoice.paid', deliveries: 2, replayed: false });
      const failed = await call(key, 'POST', '/v1/events', { type: 'invoice.payment.failed', payload: { amount: 10 } });
      expect(failed.json()).toMatchObject({ deliveries: 1 });
      expect((await call(key, 'POST', '/v1/events', { type: 'customer.created', resource: 'customer', payload: { address: { country: 'US' } } })).json()).toMatchObject({ deliveries: 0 });
      expect((await call(key, 'POST', '/v1/events', { type: 'customer.created', resource: 'customer', payload: { address: { country: 'FR' } } })).json()).toMatchObject({ deliveries: 1 });
      expect((await call(key, 'POST', '/v1/events', { type: 'customer.created', payload: { address: { country: 'FR' } } })).json()).toMatchObject({ deliveries: 0 });
      expect(await countDeliveries(workspaceId)).toBe(4);

      const id = paid.json<{ id: string }>().id;
      const event = (await call(key, 'GET', `/v1/events/${id}`)).json<{ payload: unknown; deliveries: { status: string; destinationId: string }[] }>();
      expect(event.payload).toEqual({ amount: 5000 });
      expect(event.deliveries.map((d) => d.destinationId).sort()).toEqual([destinationId, second].sort());
      expect(event.deliveries.every((d) => d.status === 'pending')).toBe(true);
      const listed = (await call(key, 'GET', `/v1/deliveries?eventId=${id}&status=pending`)).json<{ data: { eventId: string; attemptsThisRound: number }[] }>().data;
      expect(listed).toHaveLength(2);
      expect(listed[0]).toMatchObject({ eventId: id, attemptsThisRound: 0 });
      expect((await call(key, 'GET', '/v1/events?type=invoice.paid')).json<{ data: unknown[] }>().data).toHaveLength(1);
      const { rows } = await t.database.db.owner.query<{ payload: Uint8Array }>('SELECT payload FROM events WHERE id = $1', [id]);
      expect(Buffer.from(rows[0]?.payload ?? []).toString('latin1')).not.toContain('5000');
    });

    it('returns the original event for a repeated idempotency key, refuses it with another body, and forgets it after 24 hours', async () => {
      const { key, destinationId, workspaceId } = await setup();
      await call(key, 'POST', '/v1/rules', { name: 'all', eventTypes: ['*'], destinationIds: [destinationId] });
      const first = await call(key, 'POST', '/v1/events', { type: 'order.created', payload: { n: 1 }, idempotencyKey: 'order-1' });
      const again = await call(key, 'POST', '/v1/events', { type: 'order.created', payload: { n: 1 } }, { 'idempotency-key': 'order-1' });
      expect(again.statusCode).toBe(202);
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.json()).toMatchObject({ id: first.json<{ id: string }>().id, replayed: true, deliveries: 1 });
      expect(await countDeliveries(workspaceId)).toBe(1);
      const changed = await call(key, 'POST', '/v1/events', { type: 'order.created', payload: { n: 2 }, idempotencyKey: 'order-1' });
      expect(changed.statusCode).toBe(409);
      expect(changed.json()).toMatchObject({ code: 'idempotency_key_reused' });
      // Concurrent repeats still make one event.
      const burst = await Promise.all(Array.from({ length: 8 }, () => call(key, 'POST', '/v1/events', { type: 'order.created', payload: { n: 3 }, idempotencyKey: 'order-3' })));
      expect(new Set(burst.map((r) => r.json<{ id: string }>().id)).size).toBe(1);
      t.clock.advance(24 * 3600_000 + 1000);
      const later = await call(key, 'POST', '/v1/events', { type: 'order.created', payload: { n: 2 }, idempotencyKey: 'order-1' });
      expect(later.json()).toMatchObject({ replayed: false });
      expect(later.json<{ id: string }>().id).not.toBe(first.json<{ id: string }>().id);
    });

    it('refuses bad events with stable codes and writes nothing, a batch all or nothing', async () => {
      const { key, workspaceId, tenantId } = await setup();
      expect((await call(key, 'POST', '/v1/events', { type: 'Bad Type', payload: {} })).json()).toMatchObject({ code: 'invalid_event_type' });
      expect((await call(key, 'POST', '/v1/events', { type: 'x', payload: {}, extra: 1 })).json()).toMatchObject({ code: 'validation_failed' });
      expect((await call(key, 'POST', '/v1/events/batch', { events: Array.from({ length: 501 }, () => ({ type: 'x', payload: {} })) })).statusCode).toBe(400);
      const batch = await call(key, 'POST', '/v1/events/batch', { events: [{ type: 'ok.one', payload: {} }, { type: 'NOT OK', payload: {} }] });
      expect(batch.json()).toMatchObject({ code: 'invalid_event_type' });
      const count = async () => (await t.database.db.owner.query<{ n: number }>('SELECT count(*)::int AS n FROM events WHERE workspace_id = $1', [workspaceId])).rows[0]?.n;
      expect(await count()).toBe(0);
      expect((await call(key, 'POST', '/v1/events/batch', { events: [{ type: 'ok.one', payload: {} }, { type: 'ok.two', payload: {} }] })).json<{ data: unknown[] }>().data).toHaveLength(2);

      await t.admin('PATCH', `/v1/tenants/${tenantId}`, { limits: { eventPayloadBytes: 1024, eventsPerMonth: 3 } });
      t.app.core.authenticator.forgetWorkspace(workspaceId);
      const big = await call(key, 'POST', '/v1/events', { type: 'x', payload: { blob: 'x'.repeat(2000) } });
      expect(big.statusCode).toBe(413);
      expect(big.json()).toMatchObject({ code: 'payload_too_large', limit: 1024 });
      expect((await call(key, 'POST', '/v1/events', { type: 'x', payload: {} })).statusCode).toBe(202);
      const over = await call(key, 'POST', '/v1/events', { type: 'x', payload: {} });
      expect(over.statusCode).toBe(429);
      expect(over.json()).toMatchObject({ code: 'quota_exceeded', limit: 3 });
      expect(await count()).toBe(3);
    });

    it('answers 404 for another workspace\'s events and deliveries', async () => {
      const a = await setup();
      const b = await setup();
      await call(a.key, 'POST', '/v1/rules', { name: 'all', eventTypes: ['*'], destinationIds: [a.destinationId] });
      const id = (await call(a.key, 'POST', '/v1/events', { type: 'x', payload: {} })).json<{ id: string }>().id;
      const delivery = (await call(a.key, 'GET', `/v1/deliveries?eventId=${id}`)).json<{ data: { id: string }[] }>().data[0]?.id ?? '';
      expect((await call(b.key, 'GET', `/v1/events/${id}`)).statusCode).toBe(404);
      expect((await call(b.key, 'GET', `/v1/deliveries/${delivery}`)).statusCode).toBe(404);
      expect((await call(b.key, 'GET', `/v1/deliveries?eventId=${id}`)).json()).toEqual({ data: [], nextCursor: null });
      expect((await call(a.key, 'GET', `/v1/deliveries/${delivery}`)).statusCode).toBe(200);
    });
  });
});
