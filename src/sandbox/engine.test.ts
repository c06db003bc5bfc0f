import { beforeAll, describe, expect, it } from 'vitest';
import { type QuickJSWASMModule, execute, loadQuickJS } from './engine.js';
import { defaultLimits, resolveLimits } from './limits.js';
import type { ExecutionRequest, HostCallAnswer } from './types.js';

let quickjs: QuickJSWASMModule;
beforeAll(async () => {
  quickjs = await loadQuickJS();
});

const request = (code: string, overrides: Partial<ExecutionRequest> = {}): ExecutionRequest => ({
  code,
  entry: 'transform',
  inputJson: '{"n":1}',
  configJson: '{}',
  capabilities: ['connections.api.request'],
  limits: resolveLimits(defaultLimits, { cpuTimeMs: 200, wallTimeMs: 1_000 }),
  ...overrides,
});
const echo = { call: (_name: string, argsJson: string): Promise<HostCallAnswer> => Promise.resolve({ ok: true, json: argsJson }) };

describe('engine (in-process)', () => {
  it('hands the event in and the result out as JSON', async () => {
    const { outcome, poisoned } = await execute(quickjs, request('function transform(e) { return { n: e.n + 1 }; }'), echo);
    expect(poisoned).toBe(false);
    expect(outcome).toEqual({ ok: true, outputJson: '{"n":2}', logs: [], calls: 0 });
  });

  it('resolves host calls as promises in the guest', async () => {
    const code = 'async function transform(e, ctx) { const a = await ctx.connections.api.request({ path: "/a" }); const b = await ctx.connections.api.request({ path: "/b" }); return [a.path, b.path]; }';
    const { outcome } = await execute(quickjs, request(code), echo);
    expect(outcome).toEqual({ ok: true, outputJson: '["/a","/b"]', logs: [], calls: 2 });
  });

  it('reports a top-level or runtime error with its position', async () => {
    const { outcome } = await execute(quickjs, request('function transform(e) {\n  return e.missing.field;\n}'), echo);
    expect(outcome.ok).toBe(false);
    if (!outcome.ok) {
      expect(outcome.error.code).toBe('runtime_error');
      expect(outcome.error.message).toMatch(/^TypeError: .*\(line 2, column \d+\)$/u);
    }
  });

  it('reports code without the entry function', async () => {
    const { outcome } = await execute(quickjs, request('const x = 1;'), echo);
    expect(outcome).toMatchObject({ ok: false, error: { code: 'runtime_error', message: 'the code does not define a function named transform' } });
  });

  it('does not grow WASM memory over 2,000 fresh runtimes (handles, promises and runtimes are all freed)', async () => {
    const codes = [
      'function transform(e, ctx) { ctx.log("x", e); return { a: [1, 2, 3], s: "y".repeat(1000) }; }',
      'async function transform(e, ctx) { return ctx.connections.api.request({ n: e.n }); }',
      'async function transform(e, ctx) { ctx.connections.api.request({}); ctx.connections.api.request({}); throw new Error("left calls pending"); }',
      'async function transform(e, ctx) { await ctx.connections.denied.request({}); }',
      'function transform() { const a = []; for (;;) a.push({}); }',
      'function transform() { throw { weird: true }; }',
      'function transform() { return new Promise(() => {}); }',
    ];
    const round = async (n: number): Promise<void> => {
      for (let i = 0; i < n; i++) await execute(quickjs, request(codes[i % codes.length] ?? '', { limits: resolveLimits(defaultLimits, { memoryBytes: 2 * 1024 * 1024 }) }), echo);
    };
    // WebAssembly.Memory is not in this project's lib, so read the size through a narrow type.
    const wasmBytes = (): number => (quickjs.getWasmMemory() as unknown as { buffer: ArrayBuffer }).buffer.byteLength;
    await round(140);
    const before = wasmBytes();
    await round(2_000);
    const after = wasmBytes();
    expect(after - before).toBeLessThanOrEqual(1024 * 1024);
  }, 30_000);
});
