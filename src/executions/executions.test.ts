import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WithWorkspace, WorkspaceTx } from '../db/tenant-tx.js';
import type { HttpServer } from '../http/server.js';
import { newId } from '../ids.js';
import { encodeCursor } from '../pagination.js';
import { startTestApp, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import { dereference } from '../testing/openapi.js';
import { startSideServer } from '../testing/side-server.js';
import { executionRetentionJob } from './retention.js';
import { registerExecutionRoutes } from './routes.js';
import { createExecutionStore, type ExecutionStatus, type ExecutionStore, type ExecutionView, type StepRecord } from './store.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** The execution routes over a store this test builds (testing/side-server.ts: wired as app.ts wires them). */
async function startExecutionRoutesServer(t: TestApp, executions: ExecutionStore): Promise<{ http: HttpServer; close(): Promise<void> }> {
  const { core } = t.app;
  const http = await startSideServer(t, (http) => {
    registerExecutionRoutes(http, { withWorkspace: core.withWorkspace, executions });
  });
  return { http, close: () => http.close() };
}

interface ExecutionRow {
  readonly kind?: 'rule' | 'instance';
  readonly ruleId?: string | null;
  readonly ruleRevision?: number | null;
  readonly instanceId?: string | null;
  readonly trigger?: 'event' | 'inbound' | 'cron' | 'retry';
  readonly eventId?: string | null;
  readonly status?: ExecutionStatus;
  readonly attempts?: number;
  readonly resumeStep?: number;
  readonly resumeState?: unknown;
  readonly payloads?: unknown;
  readonly steps?: StepRecord[];
  readonly error?: { step: string | null; code: string; message: string } | null;
  readonly createdAt?: Date;
  readonly startedAt?: Date | null;
  readonly finishedAt?: Date | null;
}

describe.each(backends)('executions on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    let store: ExecutionStore;
    let server: Awaited<ReturnType<typeof startExecutionRoutesServer>>;
    beforeAll(async () => {
      t = await startTestApp(backend);
      store = createExecutionStore({ vault: t.app.core.vault, runtime: t.clock });
      server = await startExecutionRoutesServer(t, store);
    });
    afterAll(async () => {
      await server.close();
      await t.close();
    });

    const call = (key: string, method: 'GET' | 'POST', url: string): Promise<LightMyRequestResponse> =>
      server.http.inject({ method, url, headers: { authorization: `Bearer ${key}` } });
    const inWorkspace = <T>(workspaceId: string, fn: (tx: WorkspaceTx) => Promise<T>) => t.app.core.withWorkspace(workspaceId, fn);
    const place = (rowId: string, column: string) => ({ table: 'executions', rowId, column });

    async function insert(workspaceId: string, row: ExecutionRow = {}): Promise<string> {
      const id = newId('execution', t.clock);
      const createdAt = row.createdAt ?? t.clock.now();
      const status = row.status ?? 'succeeded';
      const finished = status === 'succeeded' || status === 'failed';
      await inWorkspace(workspaceId, async (tx) => {
        const sealer = t.app.core.vault.workspace(tx);
        const resumeState = row.resumeState === undefined ? null : await sealer.seal(place(id, 'resume_state'), JSON.stringify(row.resumeState));
        const payloads = row.payloads === undefined ? null : await sealer.seal(place(id, 'payloads'), JSON.stringify(row.payloads));
        await tx.query(
          `INSERT INTO executions (workspace_id, id, kind, rule_id, rule_revision, instance_id, trigger, event_id, status, attempts, resume_step, resume_state, steps, error, payloads, created_at, started_at, finished_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14::jsonb, $15, $16, $17, $18)`,
          [
            workspaceId, id, row.kind ?? 'rule', row.ruleId === undefined ? newId('rule', t.clock) : row.ruleId, row.ruleRevision ?? null, row.instanceId ?? null, row.trigger ?? 'event',
            row.eventId ?? null, status, row.attempts ?? (status === 'queued' ? 0 : 1), row.resumeStep ?? 0, resumeState, JSON.stringify(row.steps ?? []),
            row.error ? JSON.stringify(row.error) : null, payloads, createdAt,
            row.startedAt === undefined ? (status === 'queued' ? null : createdAt) : row.startedAt,
            row.finishedAt === undefined ? (finished ? new Date(createdAt.getTime() + 250) : null) : row.finishedAt,
          ],
        );
      });
      return id;
    }
    const countIn = async (workspaceId: string, where = 'true') =>
      (await t.database.db.owner.query<{ n: number }>(`SELECT count(*)::int AS n FROM executions WHERE workspace_id = $1 AND ${where}`, [workspaceId])).rows[0]?.n;
    const ids = (r: LightMyRequestResponse) => r.json<{ data: ExecutionView[] }>().data.map((e) => e.id);

    describe('reading', () => {
      it('lists newest first and filters exactly by rule, instance, status and creation time', async () => {
        const w = await t.workspaceWithKey(['integrations:read']);
        const ruleA = newId('rule', t.clock);
        const ruleB = newId('rule', t.clock);
        const instance = newId('instance', t.clock);
        const base = t.clock.now().getTime() - 10 * HOUR;
        const a1 = await insert(w.workspaceId, { ruleId: ruleA, createdAt: new Date(base) });
        const a2 = await insert(w.workspaceId, { ruleId: ruleA, status: 'failed', createdAt: new Date(base + HOUR) });
        const b1 = await insert(w.workspaceId, { ruleId: ruleB, status: 'queued', createdAt: new Date(base + 2 * HOUR) });
        const i1 = await insert(w.workspaceId, { kind: 'instance', ruleId: null, instanceId: instance, trigger: 'cron', status: 'running', createdAt: new Date(base + 3 * HOUR) });
        const i2 = await insert(w.workspaceId, { kind: 'instance', ruleId: null, instanceId: instance, status: 'failed', createdAt: new Date(base + 4 * HOUR) });
        // Noise in another workspace with the same rule id: never listed here.
        const other = await t.workspaceWithKey(['integrations:read']);
        await insert(other.workspaceId, { ruleId: ruleA });

        const all = ids(await call(w.key, 'GET', '/v1/executions'));
        expect(all).toEqual([a1, a2, b1, i1, i2].sort().reverse());
        expect(ids(await call(w.key, 'GET', `/v1/executions?ruleId=${ruleA}`)).sort()).toEqual([a1, a2].sort());
        expect(ids(await call(w.key, 'GET', `/v1/executions?ruleId=${ruleB}`))).toEqual([b1]);
        expect(ids(await call(w.key, 'GET', `/v1/executions?instanceId=${instance}`)).sort()).toEqual([i1, i2].sort());
        expect(ids(await call(w.key, 'GET', '/v1/executions?status=failed')).sort()).toEqual([a2, i2].sort());
        expect(ids(await call(w.key, 'GET', `/v1/executions?instanceId=${instance}&status=failed`))).toEqual([i2]);
        expect(ids(await call(w.key, 'GET', `/v1/executions?ruleId=${ruleA}&status=queued`))).toEqual([]);
        // [since, until): since is inclusive, until exclusive.
        const at = (h: number) => encodeURIComponent(new Date(base + h * HOUR).toISOString());
        expect(ids(await call(w.key, 'GET', `/v1/executions?since=${at(1)}&until=${at(3)}`)).sort()).toEqual([a2, b1].sort());
        expect(ids(await call(w.key, 'GET', `/v1/executions?since=${at(3)}`)).sort()).toEqual([i1, i2].sort());
        expect(ids(await call(w.key, 'GET', `/v1/executions?until=${at(1)}`))).toEqual([a1]);
        expect(ids(await call(other.key, 'GET', `/v1/executions?ruleId=${ruleA}`))).toHaveLength(1);
      });

      it('pages through every execution exactly once, newest first', async () => {
        const w = await t.workspaceWithKey(['integrations:read']);
        const inserted: string[] = [];
        for (let i = 0; i < 7; i++) inserted.push(await insert(w.workspaceId, { createdAt: new Date(t.clock.now().getTime() - i * 1000) }));
        const seen: string[] = [];
        let cursor: string | null = null;
        let pages = 0;
        do {
          const page: LightMyRequestResponse = await call(w.key, 'GET', `/v1/executions?limit=3${cursor === null ? '' : `&cursor=${cursor}`}`);
          expect(page.statusCode, page.body).toBe(200);
          const body = page.json<{ data: ExecutionView[]; nextCursor: string | null }>();
          seen.push(...body.data.map((e) => e.id));
          cursor = body.nextCursor;
          pages++;
        } while (cursor !== null);
        expect(pages).toBe(3);
        expect(seen).toEqual([...inserted].sort().reverse());
        // The list never carries payloads, recorded or not.
        expect(Object.keys((await call(w.key, 'GET', '/v1/executions?limit=1')).json<{ data: object[] }>().data[0] ?? {})).not.toContain('payloads');
      });

      it('returns one execution with its steps as recorded, its error and its opened payloads', async () => {
        const w = await t.workspaceWithKey(['integrations:read']);
        const steps: StepRecord[] = [
          { name: 'fetch', type: 'http', startedAt: '2025-01-01T00:00:00.000Z', durationMs: 12, outcome: 'ok', metadata: { status: 200, bytes: 512, cached: false, etag: null, sizes: [1, 2] }, logs: ['GET /v1/items'] },
          { name: 'shape', type: 'transform', startedAt: '2025-01-01T00:00:00.012Z', durationMs: 3, outcome: 'failed', metadata: {}, logs: [], error: { code: 'transform_error', message: 'x is undefined' } },
          { name: 'deliver', type: 'deliver', startedAt: '2025-01-01T00:00:00.015Z', durationMs: 0, outcome: 'skipped', metadata: {}, logs: [] },
        ];
        const started = new Date(t.clock.now().getTime() - 5000);
        const instance = newId('instance', t.clock);
        const id = await insert(w.workspaceId, {
          kind: 'instance', ruleId: null, instanceId: instance, status: 'failed', attempts: 3, resumeStep: 1, steps,
          error: { step: 'shape', code: 'transform_error', message: 'x is undefined' }, payloads: { fetch: { out: [{ n: 1 }] } },
          createdAt: started, startedAt: started, finishedAt: new Date(started.getTime() + 1234),
        });
        const got = await call(w.key, 'GET', `/v1/executions/${id}`);
        expect(got.statusCode, got.body).toBe(200);
        expect(got.json()).toEqual({
          id, kind: 'instance', ruleId: null, instanceId: instance, trigger: 'event', eventId: null, scheduledFor: null, status: 'failed', attempts: 3, resumeStep: 1,
          retryOf: null, steps, error: { step: 'shape', code: 'transform_error', message: 'x is undefined' }, createdAt: started.toISOString(),
          startedAt: started.toISOString(), finishedAt: new Date(started.getTime() + 1234).toISOString(), durationMs: 1234, payloads: { fetch: { out: [{ n: 1 }] } },
        });
        // Without payload logging there is nothing to open; an unfinished run has no duration.
        const queued = await insert(w.workspaceId, { status: 'queued' });
        expect((await call(w.key, 'GET', `/v1/executions/${queued}`)).json()).toMatchObject({ payloads: null, startedAt: null, finishedAt: null, durationMs: null, error: null, steps: [] });
      });

      it('answers 404 for another workspace\'s execution and for malformed or unknown ids, alike', async () => {
        const mine = await t.workspaceWithKey(['integrations:write']);
        const theirs = await t.workspaceWithKey(['integrations:write']);
        const foreign = await insert(theirs.workspaceId, { status: 'failed' });
        for (const id of [foreign, newId('execution', t.clock), 'exe_nope', 'rul_01jq0000000000000000000000', "exe_' OR 1=1 --"]) {
          for (const [method, url] of [['GET', `/v1/executions/${encodeURIComponent(id)}`], ['POST', `/v1/executions/${encodeURIComponent(id)}/retry`]] as const) {
            const r = await call(mine.key, method, url);
            expect(r.statusCode, `${method} ${id}`).toBe(404);
            expect(r.headers['content-type']).toContain('application/problem+json');
            expect(r.json()).toMatchObject({ code: 'not_found', detail: 'execution not found' });
          }
        }
        // The foreign execution was not retried behind the 404.
        expect(await countIn(theirs.workspaceId, `retry_of = '${foreign}'`)).toBe(0);
        expect((await call(theirs.key, 'GET', `/v1/executions/${foreign}`)).statusCode).toBe(200);
      });

      it('refuses malformed query values with 400 problem+json', async () => {
        const w = await t.workspaceWithKey(['integrations:read']);
        for (const query of ['status=done', 'since=yesterday', 'until=2025-13-40T00:00:00Z', 'ruleId=rul_bad', `ruleId=${newId('instance', t.clock)}`, 'instanceId=x', 'limit=0', 'limit=1000', 'cursor=bm90LWFuLWlk', 'colour=red']) {
          const r = await call(w.key, 'GET', `/v1/executions?${query}`);
          expect(r.statusCode, query).toBe(400);
          expect(r.headers['content-type'], query).toContain('application/problem+json');
          expect(r.json<{ code: string }>().code, query).toMatch(/^(validation_failed|invalid_cursor)$/);
        }
        expect((await call(w.key, 'GET', `/v1/executions?cursor=${encodeCursor('evt_01jq0000000000000000000000')}`)).json()).toMatchObject({ code: 'invalid_cursor' });
      });

      it('needs integrations:read to read and integrations:write to retry', async () => {
        const reader = await t.workspaceWithKey(['integrations:read']);
        const other = await t.workspaceWithKey(['events:write']);
        const id = await insert(reader.workspaceId, { status: 'failed' });
        expect((await call(other.key, 'GET', '/v1/executions')).json()).toMatchObject({ code: 'insufficient_scope' });
        expect((await call(reader.key, 'POST', `/v1/executions/${id}/retry`)).json()).toMatchObject({ code: 'insufficient_scope', requiredScope: 'integrations:write' });
        expect(await countIn(reader.workspaceId)).toBe(1);
      });

      it('describes the routes and their schemas in the OpenAPI document', async () => {
        const doc = dereference((await server.http.inject({ method: 'GET', url: '/openapi.json' })).json<{ paths: Record<string, Record<string, { parameters?: { name: string }[]; responses: Record<string, unknown> }>> }>());
        expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/v1/executions', '/v1/executions/{id}', '/v1/executions/{id}/retry']));
        expect(doc.paths['/v1/executions']?.['get']?.parameters?.map((p) => p.name)).toEqual(expect.arrayContaining(['ruleId', 'instanceId', 'status', 'since', 'until', 'cursor', 'limit']));
        expect(Object.keys(doc.paths['/v1/executions/{id}/retry']?.['post']?.responses ?? {})).toEqual(expect.arrayContaining(['202', '404', '409']));
      });
    });

    describe('retrying', () => {
      it('refuses to retry an execution that has not failed', async () => {
        const w = await t.workspaceWithKey(['integrations:write']);
        for (const status of ['succeeded', 'queued', 'running'] as const) {
          const id = await insert(w.workspaceId, { status });
          const r = await call(w.key, 'POST', `/v1/executions/${id}/retry`);
          expect(r.statusCode, status).toBe(409);
          expect(r.json(), status).toMatchObject({ code: 'execution_not_failed', status: 409 });
        }
        expect(await countIn(w.workspaceId, "trigger = 'retry'")).toBe(0);
      });

      it('queues a new execution resuming at the failed step with the same state, re-sealed for the new row', async () => {
        const w = await t.workspaceWithKey(['integrations:write']);
        const ruleId = newId('rule', t.clock);
        const eventId = newId('event', t.clock);
        const state = { items: [{ id: 1, name: 'Ada' }, { id: 2, name: 'Grace' }], cursor: 'p2' };
        const failed = await insert(w.workspaceId, {
          ruleId, ruleRevision: 4, eventId, status: 'failed', attempts: 3, resumeStep: 2, resumeState: state, payloads: { secret: 'not copied' },
          steps: [{ name: 'a', type: 'transform', startedAt: '2025-01-01T00:00:00.000Z', durationMs: 1, outcome: 'failed', metadata: {}, logs: [] }],
          error: { step: 'a', code: 'boom', message: 'boom' },
        });
        t.clock.advance(60_000);
        const before = t.clock.now().getTime();
        const r = await call(w.key, 'POST', `/v1/executions/${failed}/retry`);
        expect(r.statusCode, r.body).toBe(202);
        const retry = r.json<ExecutionView>();
        expect(retry.id).not.toBe(failed);
        expect(retry).toMatchObject({
          kind: 'rule', ruleId, instanceId: null, eventId, trigger: 'retry', retryOf: failed, status: 'queued', attempts: 0, resumeStep: 2, steps: [],
          error: null, startedAt: null, finishedAt: null, durationMs: null,
        });
        expect(Date.parse(retry.createdAt)).toBeGreaterThanOrEqual(before);
        expect(Date.parse(retry.createdAt)).toBeLessThanOrEqual(t.clock.now().getTime());

        const [row] = (await t.database.db.owner.query<{ rule_revision: number; resume_state: Uint8Array; payloads: Uint8Array | null }>(
          'SELECT rule_revision, resume_state, payloads FROM executions WHERE workspace_id = $1 AND id = $2', [w.workspaceId, retry.id],
        )).rows;
        expect(row?.rule_revision).toBe(4);
        expect(row?.payloads).toBeNull();
        const sealed = Buffer.from(row?.resume_state ?? []);
        expect(sealed.toString('latin1')).not.toContain('Grace');
        await inWorkspace(w.workspaceId, async (tx) => {
          const sealer = t.app.core.vault.workspace(tx);
          expect(JSON.parse(await sealer.openText(place(retry.id, 'resume_state'), sealed))).toEqual(state);
          // Bound to the new row: the old row's associated data no longer opens it.
          await expect(sealer.openText(place(failed, 'resume_state'), sealed)).rejects.toMatchObject({ code: 'ciphertext_invalid' });
        });
        // The failed execution is left as it was, and the retry is audited against it.
        expect((await call(w.key, 'GET', `/v1/executions/${failed}`)).json()).toMatchObject({ status: 'failed', attempts: 3, retryOf: null });
        const audit = (await t.database.db.owner.query<{ action: string; target_id: string; details: { retryId: string } }>(
          "SELECT action, target_id, details FROM audit_log WHERE workspace_id = $1 AND action = 'execution.retry'", [w.workspaceId],
        )).rows;
        expect(audit).toEqual([{ action: 'execution.retry', target_id: failed, details: { retryId: retry.id, resumeStep: 2 } }]);
      });

      it('retries a failed execution without recorded state from its resume step, with no state', async () => {
        const w = await t.workspaceWithKey(['integrations:write']);
        const failed = await insert(w.workspaceId, { kind: 'instance', ruleId: null, instanceId: newId('instance', t.clock), trigger: 'cron', status: 'failed', resumeStep: 3 });
        const r = await call(w.key, 'POST', `/v1/executions/${failed}/retry`);
        expect(r.statusCode, r.body).toBe(202);
        const retry = r.json<ExecutionView>();
        expect(retry).toMatchObject({ kind: 'instance', trigger: 'retry', resumeStep: 3, retryOf: failed, scheduledFor: null });
        expect(await countIn(w.workspaceId, `id = '${retry.id}' AND resume_state IS NULL`)).toBe(1);
      });

      it('refuses a second retry while the first is queued or running, and allows one once it has failed too', async () => {
        const w = await t.workspaceWithKey(['integrations:write']);
        const failed = await insert(w.workspaceId, { status: 'failed', resumeState: { n: 1 } });
        const first = (await call(w.key, 'POST', `/v1/executions/${failed}/retry`)).json<ExecutionView>();
        const again = await call(w.key, 'POST', `/v1/executions/${failed}/retry`);
        expect(again.statusCode).toBe(409);
        expect(again.json()).toMatchObject({ code: 'execution_retry_pending', retryId: first.id });
        await t.database.db.owner.query("UPDATE executions SET status = 'running', started_at = now() WHERE id = $1", [first.id]);
        expect((await call(w.key, 'POST', `/v1/executions/${failed}/retry`)).json()).toMatchObject({ code: 'execution_retry_pending' });
        await t.database.db.owner.query("UPDATE executions SET status = 'failed', finished_at = now() WHERE id = $1", [first.id]);
        expect((await call(w.key, 'POST', `/v1/executions/${failed}/retry`)).statusCode).toBe(202);
        expect(await countIn(w.workspaceId, `retry_of = '${failed}'`)).toBe(2);
      });

      it('makes exactly one retry out of concurrent requests', async () => {
        const w = await t.workspaceWithKey(['integrations:write']);
        const failed = await insert(w.workspaceId, { status: 'failed' });
        const answers = await Promise.all(Array.from({ length: 6 }, () => call(w.key, 'POST', `/v1/executions/${failed}/retry`)));
        expect(answers.map((a) => a.statusCode).sort()).toEqual([202, 409, 409, 409, 409, 409]);
        expect(await countIn(w.workspaceId, `retry_of = '${failed}'`)).toBe(1);
      });
    });

    describe('retention', () => {
      // Rows the other tests insert finished within the last day: none is past the 30-day default.
      const DEFAULT_DAYS = 30;
      const counting = () => {
        const calls: string[] = [];
        const withWorkspace: WithWorkspace = (workspaceId, fn) => {
          calls.push(workspaceId);
          return t.app.core.withWorkspace(workspaceId, fn);
        };
        return { calls, withWorkspace };
      };
      const job = (withWorkspace: WithWorkspace, batch?: number) =>
        executionRetentionJob({ withPlatform: t.app.core.withPlatform, withWorkspace, runtime: t.clock, defaultDays: DEFAULT_DAYS, intervalMs: 60_000, ...(batch === undefined ? {} : { batch }) });
      const ago = (days: number) => new Date(t.clock.now().getTime() - days * DAY);

      it('deletes finished executions past the default retention, and leaves recent and unfinished ones', async () => {
        const w = await t.workspaceWithKey();
        const oldSucceeded = await insert(w.workspaceId, { status: 'succeeded', createdAt: ago(40) });
        const oldFailed = await insert(w.workspaceId, { status: 'failed', createdAt: ago(31) });
        const recent = await insert(w.workspaceId, { status: 'succeeded', createdAt: ago(29) });
        // Created long ago but finished recently: age counts from the finish.
        const lateFinish = await insert(w.workspaceId, { status: 'failed', createdAt: ago(45), finishedAt: ago(2) });
        const queued = await insert(w.workspaceId, { status: 'queued', createdAt: ago(90) });
        const running = await insert(w.workspaceId, { status: 'running', createdAt: ago(90) });
        // A running execution carrying an old finished_at (re-claimed after a crash) is still left alone.
        const rerun = await insert(w.workspaceId, { status: 'running', createdAt: ago(90), finishedAt: ago(80) });

        const { calls, withWorkspace } = counting();
        expect(await job(withWorkspace).run()).toEqual({ workspaces: 1, deleted: 2 });
        expect(calls).toEqual([w.workspaceId]);
        const left = (await t.database.db.owner.query<{ id: string }>('SELECT id FROM executions WHERE workspace_id = $1', [w.workspaceId])).rows.map((r) => r.id);
        expect(left.sort()).toEqual([recent, lateFinish, queued, running, rerun].sort());
        expect(left).not.toContain(oldSucceeded);
        expect(left).not.toContain(oldFailed);
        // Nothing left to do: no workspace is visited.
        const again = counting();
        expect(await job(again.withWorkspace).run()).toEqual({ workspaces: 0, deleted: 0 });
        expect(again.calls).toEqual([]);
      });

      it('honours a tenant\'s executionRetentionDays, for every workspace of that tenant only', async () => {
        const short = await t.workspaceWithKey();
        const long = await t.workspaceWithKey();
        const defaulted = await t.workspaceWithKey();
        await t.database.db.owner.query(`UPDATE tenants SET limits = limits || '{"executionRetentionDays": 3}'::jsonb WHERE id = $1`, [short.tenantId]);
        await t.database.db.owner.query(`UPDATE tenants SET limits = limits || '{"executionRetentionDays": 365}'::jsonb WHERE id = $1`, [long.tenantId]);
        const shortOld = await insert(short.workspaceId, { createdAt: ago(4) });
        const shortNew = await insert(short.workspaceId, { createdAt: ago(2) });
        const longKept = await insert(long.workspaceId, { createdAt: ago(200) });
        await insert(long.workspaceId, { status: 'failed', createdAt: ago(400) });
        await insert(defaulted.workspaceId, { createdAt: ago(31) });
        const defaultedKept = await insert(defaulted.workspaceId, { createdAt: ago(4) });

        expect(await job(t.app.core.withWorkspace).run()).toEqual({ workspaces: 3, deleted: 3 });
        const left = async (workspaceId: string) => (await t.database.db.owner.query<{ id: string }>('SELECT id FROM executions WHERE workspace_id = $1', [workspaceId])).rows.map((r) => r.id);
        expect(await left(short.workspaceId)).toEqual([shortNew]);
        expect(shortOld).not.toBe(shortNew);
        expect(await left(long.workspaceId)).toEqual([longKept]);
        expect(await left(defaulted.workspaceId)).toEqual([defaultedKept]);
      });

      it('works through a large backlog in bounded batches, one transaction each', async () => {
        const w = await t.workspaceWithKey();
        const finishedAt = ago(60);
        const backlog = Array.from({ length: 2_500 }, () => newId('execution', t.clock));
        await inWorkspace(w.workspaceId, (tx) =>
          tx.query(
            `INSERT INTO executions (workspace_id, id, kind, rule_id, trigger, status, attempts, created_at, started_at, finished_at)
             SELECT $1, id, 'rule', 'rul_01jq0000000000000000000000', 'event', 'succeeded', 1, $3, $3, $3 FROM unnest($2::text[]) AS id`,
            [w.workspaceId, backlog, finishedAt],
          ),
        );
        const queued = await insert(w.workspaceId, { status: 'queued', createdAt: ago(60) });
        expect(await countIn(w.workspaceId)).toBe(2_501);

        const { calls, withWorkspace } = counting();
        expect(await job(withWorkspace, 1_000).run()).toEqual({ workspaces: 1, deleted: 2_500 });
        // 1,000 + 1,000 + 500: three statements, three short transactions.
        expect(calls).toEqual([w.workspaceId, w.workspaceId, w.workspaceId]);
        expect(await countIn(w.workspaceId)).toBe(1);
        expect(await countIn(w.workspaceId, `id = '${queued}'`)).toBe(1);
      });
    });
  });
});
