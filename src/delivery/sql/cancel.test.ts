import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../../testing/app.js';
import { backends } from '../../testing/databases.js';
import { startReceiver } from '../../testing/receiver.js';

describe.each(backends)('cancelling a deleted destination\'s deliveries on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    let receiver: Awaited<ReturnType<typeof startReceiver>>;
    beforeAll(async () => {
      receiver = await startReceiver();
      t = await startTestApp(backend, { config: { egressAllowCidrs: ['127.0.0.1/32'], retrySchedule: [1], deliveryTimeoutMs: 500 } });
    });
    afterAll(async () => {
      await t.close();
      await receiver.close();
    });

    it('cancels the queued ones (pending, retrying), leaves finished and in-flight ones, and keeps them readable', async () => {
      const { key, workspaceId } = await t.workspaceWithKey(['*']);
      const call = (method: 'GET' | 'POST' | 'DELETE', url: string, json?: unknown) => t.request({ method, url, token: key, ...(json === undefined ? {} : { json }) });
      const destination = (await call('POST', '/v1/destinations', { url: `${receiver.url}/${workspaceId}/ok` })).json<{ id: string }>();
      const rule = (await call('POST', '/v1/rules', { name: 'all', eventTypes: ['*'], destinationIds: [destination.id] })).json<{ id: string }>();
      const emit = async () => (await call('POST', '/v1/events', { type: 'invoice.paid', payload: {} })).json<{ id: string }>().id;
      const deliveryOf = async (eventId: string) => {
        const [delivery] = (await call('GET', `/v1/deliveries?eventId=${eventId}`)).json<{ data: { id: string; status: string }[] }>().data;
        if (!delivery) throw new Error(`no delivery for ${eventId}`);
        return delivery;
      };

      const delivered = await emit();
      await t.app.engine.runOnce();
      expect(await deliveryOf(delivered)).toMatchObject({ status: 'delivered' });
      const [pending, retrying, delivering] = [await emit(), await emit(), await emit()];
      await t.database.db.owner.query("UPDATE deliveries SET status = 'retrying', attempt_count = 1 WHERE id = $1", [(await deliveryOf(retrying)).id]);
      await t.database.db.owner.query("UPDATE deliveries SET status = 'delivering', lease_owner = 'wrk_other', lease_until = $2 WHERE id = $1", [(await deliveryOf(delivering)).id, new Date(t.clock.now().getTime() + 60_000)]);

      expect((await call('DELETE', `/v1/rules/${rule.id}`)).statusCode).toBe(204);
      expect((await call('DELETE', `/v1/destinations/${destination.id}`)).statusCode).toBe(204);

      expect(await deliveryOf(delivered)).toMatchObject({ status: 'delivered' });
      expect(await deliveryOf(pending)).toMatchObject({ status: 'cancelled' });
      expect(await deliveryOf(retrying)).toMatchObject({ status: 'cancelled' });
      expect(await deliveryOf(delivering)).toMatchObject({ status: 'delivering' });
    });
  });
});
