import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WithWorkspace } from '../db/tenant-tx.js';
import { newId, type Runtime } from '../ids.js';
import { startTestApp, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import { retentionJob } from './retention.js';

const DAY = 86_400_000;
const DEFAULT_DAYS = 30;
type Status = 'pending' | 'delivering' | 'retrying' | 'delivered' | 'failed' | 'cancelled';

describe.each(backends)('retention on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startTestApp(backend, { config: { egressAllowCidrs: ['127.0.0.1/32'] } });
    });
    afterAll(async () => {
      await t.close();
    });

    const owner = () => t.database.db.owner;
    const ago = (days: number) => new Date(t.clock.now().getTime() - days * DAY);
    /** Ids as they would have been made at `at` (ids are time-ordered). */
    const at = (date: Date): Runtime => ({ now: () => date, randomBytes: (n) => randomBytes(n) });
    const counting = () => {
      const calls: string[] = [];
      const withWorkspace: WithWorkspace = (workspaceId, fn) => {
        calls.push(workspaceId);
        return t.app.core.withWorkspace(workspaceId, fn);
      };
      return { calls, withWorkspace };
    };
    const job = (options: { withWorkspace?: WithWorkspace; batch?: number; budgetMs?: number } = {}) =>
      retentionJob({ withPlatform: t.app.core.withPlatform, withWorkspace: options.withWorkspace ?? t.app.core.withWorkspace, runtime: t.clock, defaultDays: DEFAULT_DAYS, intervalMs: 60_000, pauseMs: 0, ...(options.batch === undefined ? {} : { batch: options.batch }), ...(options.budgetMs === undefined ? {} : { budgetMs: options.budgetMs }) });

    /** An event with one delivery per status given, each with `attempts` attempts. Returns the ids. */
    async function event(workspaceId: string, createdAt: Date, statuses: Status[], options: { attempts?: number; updatedAt?: Date } = {}) {
      const id = newId('event', at(createdAt));
      await owner().query('INSERT INTO events (workspace_id, id, type, payload, payload_bytes, created_at) VALUES ($1, $2, $3, $4, 2, $5)', [workspaceId, id, 'invoice.paid', Buffer.from('{}'), createdAt]);
      const deliveries: string[] = [];
      for (const [i, status] of statuses.entries()) {
        deliveries.push(await delivery(workspaceId, { eventId: id, status, createdAt, updatedAt: options.updatedAt ?? createdAt, attempts: options.attempts ?? 1, destination: `dst_${String(i)}` }));
      }
      return { id, deliveries };
    }
    async function delivery(workspaceId: string, d: { eventId: string | null; status: Status; createdAt: Date; updatedAt: Date; attempts: number; destination?: string }) {
      const id = newId('delivery', at(d.createdAt));
      await owner().query(
        `INSERT INTO deliveries (workspace_id, id, event_id, destination_id, rule_id, status, attempt_count, next_attempt_at, created_at, updated_at, execution_id, part, event_type, payload)
         VALUES ($1, $2, $3, $4, 'rul_x', $5, $6, $7, $7, $8, $9, $10, $11, $12)`,
        [workspaceId, id, d.eventId, d.destination ?? 'dst_0', d.status, d.attempts, d.createdAt, d.updatedAt, d.eventId === null ? newId('execution', t.clock) : null, d.eventId === null ? 0 : null, d.eventId === null ? 'x' : null, d.eventId === null ? Buffer.from('{}') : null],
      );
      for (let n = 1; n <= d.attempts; n++) {
        await owner().query('INSERT INTO delivery_attempts (workspace_id, id, delivery_id, attempt, started_at, duration_ms) VALUES ($1, $2, $3, $4, $5, 1)', [workspaceId, newId('deliveryAttempt', t.clock), id, n, d.createdAt]);
      }
      return id;
    }
    async function logs(workspaceId: string, occurredAt: Date) {
      const relay = newId('relayCall', at(occurredAt));
      const operational = newId('operationalEvent', at(occurredAt));
      await owner().query(
        `INSERT INTO relay_log (workspace_id, id, connection_id, method, host, path_template, status, outcome, duration_ms, request_bytes, response_bytes, attempts, occurred_at)
         VALUES ($1, $2, 'con_x', 'GET', 'api.example.com', '/', 200, 'ok', 1, 0, 0, 1, $3)`,
        [workspaceId, relay, occurredAt],
      );
      await owner().query(`INSERT INTO operational_events (workspace_id, id, type, payload, occurred_at) VALUES ($1, $2, 'connection.needs_reauth', '{}'::jsonb, $3)`, [workspaceId, operational, occurredAt]);
      return { relay, operational };
    }
    const ids = async (table: string, workspaceId: string) => (await owner().query<{ id: string }>(`SELECT id FROM ${table} WHERE workspace_id = $1 ORDER BY id`, [workspaceId])).rows.map((r) => r.id);
    const count = async (table: string, workspaceId: string) => (await owner().query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table} WHERE workspace_id = $1`, [workspaceId])).rows[0]?.n ?? 0;
    const purges = async (workspaceId: string) =>
      (await owner().query<{ actor_type: string; actor_id: string; details: { cutoff: string; removed: Record<string, number>; complete: boolean } }>(
        "SELECT actor_type, actor_id, details FROM audit_log WHERE workspace_id = $1 AND action = 'retention.purge' ORDER BY seq",
        [workspaceId],
      )).rows;

    it('removes old events whose deliveries are all finished, with their deliveries and attempts, and the old logs; keeps young rows, open deliveries and what an execution still needs', async () => {
      const w = await t.workspaceWithKey();
      const oldDone = await event(w.workspaceId, ago(40), ['delivered', 'failed', 'cancelled'], { attempts: 2 });
      const young = await event(w.workspaceId, ago(10), ['delivered']);
      const open = await Promise.all((['pending', 'retrying', 'delivering'] as const).map((s) => event(w.workspaceId, ago(90), ['delivered', s])));
      // Retried a week ago and failed again: touched within the retention, so still replayable.
      const touched = await event(w.workspaceId, ago(60), ['failed'], { updatedAt: ago(7) });
      const noDeliveries = await event(w.workspaceId, ago(45), []);
      // A failed execution can be retried, and a retry reads its event.
      const neededByExecution = await event(w.workspaceId, ago(45), ['delivered']);
      await owner().query(
        `INSERT INTO executions (workspace_id, id, kind, rule_id, trigger, event_id, status, attempts, created_at, finished_at) VALUES ($1, $2, 'rule', 'rul_x', 'event', $3, 'failed', 1, $4, $4)`,
        [w.workspaceId, newId('execution', t.clock), neededByExecution.id, ago(45)],
      );
      const oldExecutionDelivery = await delivery(w.workspaceId, { eventId: null, status: 'delivered', createdAt: ago(35), updatedAt: ago(35), attempts: 1 });
      const youngExecutionDelivery = await delivery(w.workspaceId, { eventId: null, status: 'failed', createdAt: ago(35), updatedAt: ago(3), attempts: 1 });
      const openExecutionDelivery = await delivery(w.workspaceId, { eventId: null, status: 'retrying', createdAt: ago(90), updatedAt: ago(90), attempts: 1 });
      const oldLogs = await logs(w.workspaceId, ago(31));
      const youngLogs = await logs(w.workspaceId, ago(29));

      const retention = job();
      const result = await retention.run();
      expect(result.removed).toEqual({ events: 2, deliveries: 4, delivery_attempts: 7, relay_log: 1, operational_events: 1 });

      const keptEvents = [young, ...open, touched, neededByExecution].map((e) => e.id);
      expect(await ids('events', w.workspaceId)).toEqual(keptEvents.sort());
      expect(await ids('events', w.workspaceId)).not.toContain(oldDone.id);
      expect(await ids('events', w.workspaceId)).not.toContain(noDeliveries.id);
      const keptDeliveries = [...[young, ...open, touched, neededByExecution].flatMap((e) => e.deliveries), youngExecutionDelivery, openExecutionDelivery].sort();
      expect(await ids('deliveries', w.workspaceId)).toEqual(keptDeliveries);
      expect(await ids('deliveries', w.workspaceId)).not.toContain(oldExecutionDelivery);
      // Every attempt left belongs to a delivery left.
      const orphans = await owner().query('SELECT a.id FROM delivery_attempts a LEFT JOIN deliveries d ON d.workspace_id = a.workspace_id AND d.id = a.delivery_id WHERE a.workspace_id = $1 AND d.id IS NULL', [w.workspaceId]);
      expect(orphans.rows).toEqual([]);
      expect(await count('delivery_attempts', w.workspaceId)).toBe(keptDeliveries.length);
      expect(await ids('relay_log', w.workspaceId)).toEqual([youngLogs.relay]);
      expect(await ids('operational_events', w.workspaceId)).toEqual([youngLogs.operational]);
      expect(oldLogs.relay < youngLogs.relay).toBe(true);

      // One audit entry for the run, in the workspace's chain, with the counts and the cutoff.
      const entries = await purges(w.workspaceId);
      expect(entries).toHaveLength(1);
      expect(entries[0]).toMatchObject({ actor_type: 'system', actor_id: 'retention', details: { removed: result.removed, complete: true } });
      expect(Math.abs(Date.parse(entries[0]?.details.cutoff ?? '') - ago(DEFAULT_DAYS).getTime())).toBeLessThan(60_000);
      const verified = await t.admin('GET', `/v1/workspaces/${w.workspaceId}/audit-log/verify`);
      expect(verified.statusCode).toBe(200);
      expect(verified.json()).toMatchObject({ valid: true });

      // Counted on /metrics by table, no ids in labels.
      expect([...retention.metrics.removed]).toEqual([['events', 2], ['deliveries', 4], ['delivery_attempts', 7], ['relay_log', 1], ['operational_events', 1]]);

      // Nothing more to remove: one look (old events remain, kept), nothing removed, no second entry.
      const again = counting();
      const second = await job({ withWorkspace: again.withWorkspace }).run();
      expect(again.calls.filter((id) => id === w.workspaceId)).toHaveLength(1);
      expect(second.removed).toEqual({ events: 0, deliveries: 0, delivery_attempts: 0, relay_log: 0, operational_events: 0 });
      expect(await purges(w.workspaceId)).toHaveLength(1);
    });

    it("a tenant's shorter retentionDays applies to its workspaces only", async () => {
      const short = await t.workspaceWithKey();
      const other = await t.workspaceWithKey();
      expect((await t.admin('PATCH', `/v1/tenants/${short.tenantId}`, { limits: { retentionDays: 0 } })).statusCode).toBe(400);
      expect((await t.admin('PATCH', `/v1/tenants/${short.tenantId}`, { limits: { retentionDays: 3651 } })).statusCode).toBe(400);
      const patched = await t.admin('PATCH', `/v1/tenants/${short.tenantId}`, { limits: { retentionDays: 3 } });
      expect(patched.statusCode).toBe(200);
      expect(patched.json()).toMatchObject({ limits: { retentionDays: 3 } });
      const shortOld = await event(short.workspaceId, ago(4), ['delivered']);
      const shortYoung = await event(short.workspaceId, ago(2), ['failed']);
      const shortLogs = await logs(short.workspaceId, ago(4));
      const otherKept = await event(other.workspaceId, ago(4), ['delivered']);
      const otherLogs = await logs(other.workspaceId, ago(4));

      await job().run();
      expect(await ids('events', short.workspaceId)).toEqual([shortYoung.id]);
      expect(shortOld.id).not.toBe(shortYoung.id);
      expect(await ids('relay_log', short.workspaceId)).not.toContain(shortLogs.relay);
      expect(await ids('events', other.workspaceId)).toEqual([otherKept.id]);
      expect(await ids('deliveries', other.workspaceId)).toEqual(otherKept.deliveries);
      expect(await ids('relay_log', other.workspaceId)).toEqual([otherLogs.relay]);
      expect(await ids('operational_events', other.workspaceId)).toEqual([otherLogs.operational]);
      expect(await purges(other.workspaceId)).toEqual([]);
    });

    it('works in bounded batches: a batch of 10 removes 25 old events in 3 transactions, recorded once', async () => {
      const w = await t.workspaceWithKey();
      for (let i = 0; i < 25; i++) await event(w.workspaceId, ago(40 + i / 100), ['delivered'], { attempts: 0 });
      const { calls, withWorkspace } = counting();
      const result = await job({ withWorkspace, batch: 10 }).run();
      expect(calls.filter((id) => id === w.workspaceId)).toHaveLength(3);
      expect(result.removed).toMatchObject({ events: 25, deliveries: 25 });
      expect(await count('events', w.workspaceId)).toBe(0);
      expect((await purges(w.workspaceId)).map((e) => e.details.removed)).toEqual([{ events: 25, deliveries: 25, delivery_attempts: 0, relay_log: 0, operational_events: 0 }]);
    });

    it('stops at its time budget and the next run carries on where it stopped', async () => {
      const w = await t.workspaceWithKey();
      for (let i = 0; i < 5; i++) await event(w.workspaceId, ago(40), ['delivered'], { attempts: 0 });
      const { calls, withWorkspace } = counting();
      // A budget of 0: one batch per run, then the run ends, recording what it removed so far.
      const retention = job({ withWorkspace, batch: 2, budgetMs: 0 });
      let runs = 0;
      while ((await count('events', w.workspaceId)) > 0 && runs < 50) {
        await retention.run();
        runs++;
        expect(calls).toHaveLength(runs);
      }
      expect(await count('events', w.workspaceId)).toBe(0);
      // Other workspaces (earlier tests' rows that must stay) take their turn, and this one is not starved.
      expect(calls.filter((id) => id === w.workspaceId)).toHaveLength(3);
      expect((await purges(w.workspaceId)).map((e) => [e.details.removed['events'], e.details.complete])).toEqual([[2, false], [2, false], [1, true]]);
    });

    it('a failed delivery can be retried within the retention, and answers not_found after it', async () => {
      const w = await t.workspaceWithKey(['*']);
      const call = (method: 'GET' | 'POST', url: string, json?: unknown) => t.request({ method, url, token: w.key, ...(json === undefined ? {} : { json }) });
      const destination = (await call('POST', '/v1/destinations', { url: 'http://127.0.0.1:9/hook' })).json<{ id: string }>();
      await call('POST', '/v1/rules', { name: 'all', eventTypes: ['*'], destinationIds: [destination.id] });
      const eventId = (await call('POST', '/v1/events', { type: 'invoice.paid', payload: { amount: 1 } })).json<{ id: string }>().id;
      const deliveryId = (await call('GET', `/v1/deliveries?eventId=${eventId}`)).json<{ data: { id: string }[] }>().data[0]?.id ?? '';
      // Its retries ran out (what the engine records), then four weeks pass.
      const fail = () => owner().query("UPDATE deliveries SET status = 'failed' WHERE workspace_id = $1 AND id = $2", [w.workspaceId, deliveryId]);
      await fail();
      t.clock.advance(29 * DAY);
      await job().run();
      expect((await call('POST', `/v1/deliveries/${deliveryId}/retry`)).statusCode).toBe(202);
      await fail();
      // The retry touched it: it expires a full retention after that.
      t.clock.advance(29 * DAY);
      await job().run();
      expect((await call('GET', `/v1/events/${eventId}`)).statusCode).toBe(200);
      t.clock.advance(2 * DAY);
      await job().run();
      const gone = await call('POST', `/v1/deliveries/${deliveryId}/retry`);
      expect(gone.statusCode).toBe(404);
      expect(gone.json()).toMatchObject({ code: 'not_found' });
      expect((await call('GET', `/v1/events/${eventId}`)).statusCode).toBe(404);
      t.clock.set(new Date());
    });

    // PostgreSQL only (the path users take at this size): not registered on PGlite, rather than skipped.
    (backend.name === 'postgres' ? it : () => undefined)('purges 100,000 old rows in short transactions while the queue stays writable', async () => {
      const w = await t.workspaceWithKey();
      const old = ago(60);
      // 40,000 events, a delivery each, and 20,000 relay log entries: 100,000 rows.
      await owner().query(
        `INSERT INTO events (workspace_id, id, type, payload, payload_bytes, created_at)
         SELECT $1, 'evt_' || lpad(g::text, 26, '0'), 'x', '\\x7b7d'::bytea, 2, $2::timestamptz - make_interval(secs => g) FROM generate_series(1, 40000) g`,
        [w.workspaceId, old],
      );
      await owner().query(
        `INSERT INTO deliveries (workspace_id, id, event_id, destination_id, rule_id, status, attempt_count, next_attempt_at, created_at, updated_at)
         SELECT $1, 'dlv_' || lpad(g::text, 26, '0'), 'evt_' || lpad(g::text, 26, '0'), 'dst_x', 'rul_x', 'delivered', 1, $2, $2, $2 FROM generate_series(1, 40000) g`,
        [w.workspaceId, old],
      );
      await owner().query(
        `INSERT INTO relay_log (workspace_id, id, connection_id, method, host, path_template, status, outcome, duration_ms, request_bytes, response_bytes, attempts, occurred_at)
         SELECT $1, 'rly_0' || lpad(g::text, 25, '0'), 'con_x', 'GET', 'h', '/', 200, 'ok', 1, 0, 0, 1, $2 FROM generate_series(1, 20000) g`,
        [w.workspaceId, old],
      );
      await owner().query('ANALYZE events, deliveries, relay_log');
      const durations: number[] = [];
      const timed: WithWorkspace = async (workspaceId, fn) => {
        const started = performance.now();
        try {
          return await t.app.core.withWorkspace(workspaceId, fn);
        } finally {
          if (workspaceId === w.workspaceId) durations.push(performance.now() - started);
        }
      };
      // Meanwhile, writes to the same tables in the same workspace keep going.
      const writing = { on: true };
      const writeLatencies: number[] = [];
      const writes = (async () => {
        while (writing.on) {
          const started = performance.now();
          await event(w.workspaceId, t.clock.now(), ['pending'], { attempts: 0 });
          writeLatencies.push(performance.now() - started);
        }
      })();
      const started = performance.now();
      const result = await job({ withWorkspace: timed, batch: 1_000 }).run();
      const elapsed = performance.now() - started;
      writing.on = false;
      await writes;
      expect(result.removed).toMatchObject({ events: 40_000, deliveries: 40_000, relay_log: 20_000 });
      durations.sort((a, b) => a - b);
      const p = (q: number) => durations[Math.min(durations.length - 1, Math.floor(q * durations.length))] ?? 0;
      writeLatencies.sort((a, b) => a - b);
      console.log(`retention: 100,000 rows in ${String(durations.length)} transactions, ${elapsed.toFixed(0)} ms; transaction p50 ${p(0.5).toFixed(1)} ms, max ${p(1).toFixed(1)} ms; concurrent event+delivery writes: ${String(writeLatencies.length)}, max ${(writeLatencies.at(-1) ?? 0).toFixed(1)} ms`);
      expect(durations.length).toBeGreaterThanOrEqual(40);
      // Relative to the whole purge, so that a loaded machine (the suite runs files in parallel)
      // does not fail it: a purge in one long transaction, or one blocking the writers, would
      // take about all of `elapsed`; short ones each take a small share of it.
      expect(p(1)).toBeLessThan(elapsed / 4);
      expect(writeLatencies.length).toBeGreaterThan(0);
      expect(writeLatencies.at(-1) ?? 0).toBeLessThan(elapsed / 4);
    }, 120_000);
  });
});
