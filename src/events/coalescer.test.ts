import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';

describe.each(backends)('concurrent single events share commits on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startTestApp(backend, { config: { egressAllowCidrs: ['127.0.0.1/32'] } });
    });
    afterAll(async () => {
      await t.close();
    });

    const post = (key: string, body: unknown) => t.request({ method: 'POST', url: '/v1/events', token: key, json: body });
    const commits = async () => Number((await t.database.db.owner.query<{ n: string }>('SELECT xact_commit::text AS n FROM pg_stat_database WHERE datname = current_database()')).rows[0]?.n ?? 0);

    it('answers every request on its own: accepted, refused, replayed — and commits what was accepted', async () => {
      const { key, workspaceId, tenantId } = await t.workspaceWithKey(['*']);
      await t.admin('PATCH', `/v1/tenants/${tenantId}`, { limits: { eventsPerMonth: 30 } });
      const destination = (await t.request({ method: 'POST', url: '/v1/destinations', token: key, json: { url: 'http://127.0.0.1:9/hook' } })).json<{ id: string }>();
      await t.request({ method: 'POST', url: '/v1/rules', token: key, json: { name: 'all', eventTypes: ['*'], destinationIds: [destination.id] } });
      await post(key, { type: 'warm.up', payload: {} });

      const bodies = [
        ...Array.from({ length: 24 }, (_, i) => ({ type: 'order.created', payload: { i } })),
        ...Array.from({ length: 3 }, () => ({ type: 'Not A Type', payload: {} })),
        { type: 'order.paid', payload: { n: 1 }, idempotencyKey: 'same' },
        { type: 'order.paid', payload: { n: 1 }, idempotencyKey: 'same' },
        { type: 'order.paid', payload: { n: 2 }, idempotencyKey: 'same' },
        ...Array.from({ length: 10 }, (_, i) => ({ type: 'order.late', payload: { i } })),
      ];
      const before = backend.name === 'postgres' ? await commits() : 0;
      const answers = await Promise.all(bodies.map((b) => post(key, b)));
      const after = backend.name === 'postgres' ? await commits() : 0;

      const codes = answers.map((a) => (a.statusCode === 202 ? 'accepted' : a.json<{ code: string }>().code));
      expect(codes.slice(24, 27)).toEqual(['invalid_event_type', 'invalid_event_type', 'invalid_event_type']);
      // The same key: one original, one replay of it, one refusal (its body differs).
      const keyed = answers.slice(27, 30);
      expect(keyed.map((a) => a.statusCode).sort()).toEqual([202, 202, 409]);
      const keyedIds = keyed.filter((a) => a.statusCode === 202).map((a) => a.json<{ id: string }>().id);
      expect(new Set(keyedIds).size).toBe(1);
      // 30 a month, 1 used by the warm-up: 29 new events fit; the replay costs nothing.
      const accepted = answers.filter((a) => a.statusCode === 202).map((a) => a.json<{ id: string; replayed: boolean; deliveries: number }>());
      expect(accepted.filter((a) => !a.replayed)).toHaveLength(29);
      expect(codes.filter((c) => c === 'quota_exceeded')).toHaveLength(6);
      expect(accepted.filter((a) => a.deliveries !== 1)).toEqual([]);

      const { rows } = await t.database.db.owner.query<{ events: number; deliveries: number }>(
        'SELECT (SELECT count(*)::int FROM events WHERE workspace_id = $1) AS events, (SELECT count(*)::int FROM deliveries WHERE workspace_id = $1) AS deliveries',
        [workspaceId],
      );
      expect(rows[0]).toEqual({ events: 30, deliveries: 30 });
      // Every accepted id is on record.
      for (const a of accepted) expect((await t.request({ method: 'GET', url: `/v1/events/${a.id}`, token: key })).statusCode).toBe(200);
      // 40 requests, far fewer commits (PostgreSQL counts them; PGlite runs one connection anyway).
      if (backend.name === 'postgres') expect(after - before).toBeLessThan(20);
    });
  });
});
