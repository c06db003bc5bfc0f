import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../logging.js';
import { startTestApp, type TestApp } from '../testing/app.js';
import { backends, type TestDatabase } from '../testing/databases.js';
import { startReceiver } from '../testing/receiver.js';
import { createDueNotifier, listenForDue } from './due-signal.js';

const logger = createLogger({ level: 'silent' });

async function until(condition: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

describe.each(backends)('the cross-process new-work signal on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let database: TestDatabase;
    beforeAll(async () => {
      database = await backend.open();
    });
    afterAll(async () => database.close());

    it('a notification wakes a listener, and a burst of notify() calls is coalesced into at most two', async () => {
      let heard = 0;
      let listening = false;
      const listener = listenForDue({
        database: Promise.resolve(database.db),
        logger,
        onDue: () => {
          if (listening) heard += 1;
          else listening = true;
        },
      });
      try {
        expect(await until(() => listening, 5_000)).toBe(true);
        const notifier = createDueNotifier({ database: Promise.resolve(database.db), logger });
        for (let i = 0; i < 50; i++) notifier.notify();
        await notifier.settled();
        expect(await until(() => heard >= 1, 5_000)).toBe(true);
        await sleep(200);
        expect(heard).toBeGreaterThanOrEqual(1);
        expect(heard).toBeLessThanOrEqual(2);
      } finally {
        await listener.close();
      }
    });
  });
});

// Two processes need PostgreSQL (the embedded database admits one); here, two apps on one database.
describe.each(backends.filter((b) => b.name === 'postgres'))('an api process and a separate worker on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let api: TestApp;
    let worker: TestApp;
    let receiver: Awaited<ReturnType<typeof startReceiver>>;
    beforeAll(async () => {
      receiver = await startReceiver();
      const database = await backend.open();
      // The worker polls once a minute: only the signal can bring it to an event within seconds.
      const config = { egressAllowCidrs: ['127.0.0.1/32'], workerPollMs: 60_000 };
      api = await startTestApp(backend, { database, config, role: 'api' });
      worker = await startTestApp(backend, { database, config, role: 'worker', startJobs: true });
    });
    afterAll(async () => {
      await worker.close();
      await api.close();
      await api.database.close();
      await receiver.close();
    });

    it('an event taken by the api process is delivered by the worker at once, not at its next poll', async () => {
      const w = await api.workspaceWithKey(['*']);
      const call = (method: 'POST', url: string, json: unknown) => api.request({ method, url, token: w.key, json });
      const destination = (await call('POST', '/v1/destinations', { url: `${receiver.url}/${w.workspaceId}/ok` })).json<{ id: string }>();
      await call('POST', '/v1/rules', { name: 'all', eventTypes: ['*'], destinationIds: [destination.id] });
      // Past the worker's first claim at start-up, so what follows waits on a wake-up or the poll.
      await sleep(500);
      const sent = Date.now();
      expect((await call('POST', '/v1/events', { type: 'invoice.paid', payload: { n: 1 } })).statusCode).toBe(202);
      expect(await until(() => receiver.received.some((r) => r.path === `/${w.workspaceId}/ok`), 10_000)).toBe(true);
      expect(Date.now() - sent).toBeLessThan(10_000);
    });
  });
});
