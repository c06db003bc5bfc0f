import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import { startReceiver } from '../testing/receiver.js';
import { claimExecutions } from './claim.js';

interface Execution {
  id: string;
  status: string;
  attempts: number;
  ruleId: string | null;
  eventId: string | null;
  error: { step: string | null; code: string; message: string } | null;
  steps: { name: string; type: string; outcome: string; metadata: Record<string, unknown>; logs: string[]; error?: { code: string } }[];
}

describe.each(backends)('rules with transforms on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    let receiver: Awaited<ReturnType<typeof startReceiver>>;
    beforeAll(async () => {
      receiver = await startReceiver();
      t = await startTestApp(backend, { config: { egressAllowCidrs: ['127.0.0.1/32'], retrySchedule: [1], deliveryTimeoutMs: 1000, sandboxPoolSize: 2, sandboxCpuMs: 200, sandboxWallMs: 2000, executionLeaseMs: 10_000 } });
    });
    afterAll(async () => {
      await t.close();
      await receiver.close();
    });

    const call = (key: string, method: 'GET' | 'POST' | 'PATCH', url: string, json?: unknown) => t.request({ method, url, token: key, ...(json === undefined ? {} : { json }) });
    async function setup(name: string) {
      const w = await t.workspaceWithKey(['*']);
      const destination = (await call(w.key, 'POST', '/v1/destinations', { url: `${receiver.url}/${w.workspaceId}/${name}/ok` })).json<{ id: string; secret: string }>();
      return { ...w, destination };
    }
    const rule = async (key: string, body: Record<string, unknown>) => {
      const response = await call(key, 'POST', '/v1/rules', { eventTypes: ['order.*'], ...body });
      expect(response.statusCode, response.body).toBe(201);
      return response.json<{ id: string; transform: { language: string; code: string; revision: number } | null }>();
    };
    const emit = async (key: string, payload: unknown) => {
      const response = await call(key, 'POST', '/v1/events', { type: 'order.created', payload });
      expect(response.statusCode, response.body).toBe(202);
      return response.json<{ id: string; deliveries: number; executions: number }>();
    };
    /** Runs queued executions, then the deliveries they wrote. */
    async function work() {
      while ((await t.app.runner.runOnce()) > 0);
      while ((await t.app.engine.runOnce()) > 0);
    }
    const executionsOf = async (key: string, ruleId: string) => (await call(key, 'GET', `/v1/executions?ruleId=${ruleId}`)).json<{ data: Execution[] }>().data;
    const receivedBy = (workspaceId: string, name: string) => receiver.received.filter((r) => r.path.startsWith(`/${workspaceId}/${name}/`));

    it('refuses a syntax error at save time with its position, and writes nothing', async () => {
      const { key, destination } = await setup('syntax');
      const response = await call(key, 'POST', '/v1/rules', { name: 'broken', eventTypes: ['*'], destinationIds: [destination.id], transform: { language: 'javascript', code: 'function transform(event) {\n  return {\n    a: 1,,\n  };\n}' } });
      expect(response.statusCode).toBe(400);
      const problem = response.json<{ code: string; detail: string; line: number; column: number }>();
      expect(problem.code).toBe('transform_syntax_error');
      expect(problem.line).toBe(3);
      expect(problem.column).toBeGreaterThan(0);
      expect(problem.detail).toMatch(/line 3/u);
      expect((await call(key, 'GET', '/v1/rules')).json<{ data: unknown[] }>().data).toHaveLength(0);
      const ts = await call(key, 'POST', '/v1/rules', { name: 'broken-ts', eventTypes: ['*'], destinationIds: [destination.id], transform: { language: 'typescript', code: 'function transform(event: { a: number ): number { return 1; }' } });
      expect(ts.json<{ code: string }>().code).toBe('transform_syntax_error');
    });

    it('delivers what a TypeScript transform returns, signed, and logs the execution step by step', async () => {
      const { key, destination, workspaceId } = await setup('shape');
      const code = `interface Order { id: string; cents: number; email: string }
function transform(event: { type: string; payload: Order }, ctx: { log(...a: unknown[]): void }) {
  ctx.log('shaping', event.payload.id);
  return { orderId: event.payload.id, amount: event.payload.cents / 100, kind: event.type };
}`;
      const created = await rule(key, { name: 'shape', destinationIds: [destination.id], transform: { language: 'typescript', code } });
      expect(created.transform).toMatchObject({ language: 'typescript', code, revision: 1 });
      const accepted = await emit(key, { id: 'o-1', cents: 1250, email: 'a@example.com' });
      expect(accepted).toMatchObject({ deliveries: 0, executions: 1 });
      await work();
      const got = receivedBy(workspaceId, 'shape');
      expect(got).toHaveLength(1);
      const headers = got[0]?.headers ?? {};
      const verified = new Webhook(destination.secret).verify(got[0]?.body ?? '', { 'webhook-id': String(headers['webhook-id']), 'webhook-timestamp': String(headers['webhook-timestamp']), 'webhook-signature': String(headers['webhook-signature']) });
      expect(verified).toMatchObject({ type: 'order.created', data: { orderId: 'o-1', amount: 12.5, kind: 'order.created' } });
      const [execution] = await executionsOf(key, created.id);
      expect(execution).toMatchObject({ status: 'succeeded', eventId: accepted.id, error: null });
      expect(execution?.steps.map((s) => [s.name, s.outcome])).toEqual([['transform', 'ok'], ['deliver', 'ok']]);
      expect(execution?.steps[0]?.logs).toEqual(['shaping o-1']);
      expect(execution?.steps[1]?.metadata).toMatchObject({ deliveries: 1 });
      // The delivery names the execution that produced it.
      const deliveries = (await call(key, 'GET', `/v1/deliveries?destinationId=${destination.id}`)).json<{ data: { executionId: string | null; ruleId: string | null; status: string }[] }>().data;
      expect(deliveries).toEqual([expect.objectContaining({ executionId: execution?.id, ruleId: created.id, status: 'delivered' })]);
    });

    it('fans an array out into one delivery each, and drops on null', async () => {
      const { key, destination, workspaceId } = await setup('fan');
      const created = await rule(key, { name: 'fan', destinationIds: [destination.id], transform: { language: 'javascript', code: 'function transform(e) { return e.payload.lines.length === 0 ? null : e.payload.lines.map((l) => ({ sku: l })); }' } });
      await emit(key, { lines: ['a', 'b', 'c'] });
      await emit(key, { lines: [] });
      await work();
      const bodies = receivedBy(workspaceId, 'fan').map((r) => (JSON.parse(r.body) as { data: { sku: string } }).data.sku).sort();
      expect(bodies).toEqual(['a', 'b', 'c']);
      const executions = await executionsOf(key, created.id);
      expect(executions.map((e) => e.status)).toEqual(['succeeded', 'succeeded']);
      const outcomes = executions.map((e) => e.steps.map((s) => s.outcome).join(',')).sort();
      expect(outcomes).toEqual(['dropped', 'ok,ok']);
    });

    it('a throwing or spinning transform fails only its event × rule, with the reason; other rules still deliver', async () => {
      const { key, destination, workspaceId } = await setup('fail');
      const throwing = await rule(key, { name: 'throws', destinationIds: [destination.id], transform: { language: 'javascript', code: 'function transform(e) {\n  throw new Error("no amount on " + e.payload.id);\n}' } });
      const spinning = await rule(key, { name: 'spins', destinationIds: [destination.id], transform: { language: 'javascript', code: 'function transform() { for (;;) {} }' } });
      await rule(key, { name: 'plain', destinationIds: [destination.id] });
      const fine = await rule(key, { name: 'fine', destinationIds: [destination.id], transform: { language: 'javascript', code: 'function transform(e) { return { ok: e.payload.id }; }' } });
      const accepted = await emit(key, { id: 'o-9' });
      expect(accepted).toMatchObject({ deliveries: 1, executions: 3 });
      await work();
      const [thrown] = await executionsOf(key, throwing.id);
      expect(thrown).toMatchObject({ status: 'failed', error: { step: 'transform', code: 'runtime_error' } });
      expect(thrown?.error?.message).toMatch(/no amount on o-9/u);
      const [spun] = await executionsOf(key, spinning.id);
      expect(spun).toMatchObject({ status: 'failed', error: { step: 'transform', code: 'timeout' } });
      expect((await executionsOf(key, fine.id))[0]?.status).toBe('succeeded');
      const bodies = receivedBy(workspaceId, 'fail').map((r) => (JSON.parse(r.body) as { data: unknown }).data);
      expect(bodies).toHaveLength(2);
      expect(bodies).toEqual(expect.arrayContaining([{ id: 'o-9' }, { ok: 'o-9' }]));
    });

    it('an event runs the transform revision current at ingest, even if the rule changes before it runs', async () => {
      const { key, destination, workspaceId } = await setup('revision');
      const created = await rule(key, { name: 'rev', destinationIds: [destination.id], transform: { language: 'javascript', code: 'function transform() { return { v: 1 }; }' } });
      await emit(key, {});
      const patched = await call(key, 'PATCH', `/v1/rules/${created.id}`, { transform: { language: 'javascript', code: 'function transform() { return { v: 2 }; }' } });
      expect(patched.json<{ transform: { revision: number } }>().transform.revision).toBe(2);
      await emit(key, {});
      await work();
      const versions = receivedBy(workspaceId, 'revision').map((r) => (JSON.parse(r.body) as { data: { v: number } }).data.v).sort();
      expect(versions).toEqual([1, 2]);
      // Removing the transform makes the rule deliver events as they are again.
      await call(key, 'PATCH', `/v1/rules/${created.id}`, { transform: null });
      expect(await emit(key, { raw: true })).toMatchObject({ deliveries: 1, executions: 0 });
    });

    it('an execution whose runner died is claimed again after its lease, writes its deliveries once, and is abandoned after 3 claims', async () => {
      const { key, destination, workspaceId } = await setup('lease');
      const created = await rule(key, { name: 'lease', destinationIds: [destination.id], transform: { language: 'javascript', code: 'function transform(e) { return [e.payload, e.payload]; }' } });
      await emit(key, { n: 1 });
      const claim = (owner: string) => claimExecutions(t.app.core.withPlatform, t.clock.now(), 10, { owner, leaseMs: 10_000 });
      // A runner takes it and dies; while its lease lasts, nobody else can.
      expect((await claim('exr_dead')).map((c) => c.workspace_id)).toContain(workspaceId);
      expect((await claim('exr_other')).map((c) => c.workspace_id)).not.toContain(workspaceId);
      t.clock.advance(11_000);
      await work();
      const [execution] = await executionsOf(key, created.id);
      expect(execution).toMatchObject({ status: 'succeeded', attempts: 2 });
      expect(receivedBy(workspaceId, 'lease')).toHaveLength(2);
      // Killed at every claim: after the third, the next claim fails it instead of running it again.
      await emit(key, { n: 2 });
      for (let i = 0; i < 3; i++) {
        expect((await claim(`exr_dead_${String(i)}`)).map((c) => c.workspace_id)).toContain(workspaceId);
        t.clock.advance(11_000);
      }
      await work();
      const [abandoned] = await executionsOf(key, created.id);
      expect(abandoned).toMatchObject({ status: 'failed', attempts: 4, error: { code: 'abandoned' } });
      expect(receivedBy(workspaceId, 'lease')).toHaveLength(2);
    });

    it('another workspace cannot see or retry an execution', async () => {
      const { key, destination } = await setup('isolation');
      const created = await rule(key, { name: 'iso', destinationIds: [destination.id], transform: { language: 'javascript', code: 'function transform() { throw new Error("x"); }' } });
      await emit(key, {});
      await work();
      const [execution] = await executionsOf(key, created.id);
      const other = await t.workspaceWithKey(['*']);
      expect((await call(other.key, 'GET', `/v1/executions/${execution?.id ?? ''}`)).statusCode).toBe(404);
      expect((await call(other.key, 'POST', `/v1/executions/${execution?.id ?? ''}/retry`)).statusCode).toBe(404);
      expect((await call(other.key, 'GET', `/v1/executions?ruleId=${created.id}`)).json<{ data: unknown[] }>().data).toHaveLength(0);
    });
  });
});
