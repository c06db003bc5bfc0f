// Benchmark "sandbox": trivial transform executions per second through the sandbox pool (a
// fresh QuickJS runtime and context per execution, off the main thread), against calling the
// same function directly in Node in the same run. Target (issue 5): >= 2,000 sandboxed
// executions per second per core (pool size = cores).
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TARGET_PER_CORE = 2000;
const CODE = 'function transform(event, ctx) { return { id: event.id, type: event.type.toUpperCase(), env: ctx.config.env }; }';

export async function run({ durationSeconds, rounds, log }) {
  const { createSandbox } = await import(path.join(root, 'dist', 'sandbox', 'index.js'));
  const cores = Math.max(1, availableParallelism());
  log(`\n== sandbox: trivial transform, fresh QuickJS runtime per execution, pool of ${cores} vs direct call ==`);
  const sandbox = createSandbox({ poolSize: cores });
  const compiled = await sandbox.compile(CODE, 'javascript');
  if (!compiled.ok) throw new Error(compiled.error.message);
  const input = { id: 'evt_1', type: 'order.created' };
  const config = { env: 'production' };

  // Enough executions in flight to keep every worker busy across message round trips.
  const inFlight = cores * 8;
  let failures = 0;
  const sandboxed = async () => {
    const until = performance.now() + durationSeconds * 1000;
    let done = 0;
    const lane = async () => {
      while (performance.now() < until) {
        const result = await sandbox.run({ code: compiled.code, input, config });
        if (!result.ok) failures++;
        done++;
      }
    };
    const started = performance.now();
    await Promise.all(Array.from({ length: inFlight }, lane));
    return done / ((performance.now() - started) / 1000);
  };
  const direct = async () => {
    // The baseline is the same source, run unsandboxed.
    const transform = new Function(`${CODE}; return transform;`)();
    const until = performance.now() + durationSeconds * 1000;
    let done = 0;
    const started = performance.now();
    while (performance.now() < until) {
      for (let i = 0; i < 1000; i++) JSON.parse(JSON.stringify(transform(JSON.parse(JSON.stringify(input)), { config })));
      done += 1000;
    }
    return done / ((performance.now() - started) / 1000);
  };

  await sandboxed(); // warm-up: workers started, QuickJS loaded, JIT warm
  const sandboxedRuns = [];
  const directRuns = [];
  for (let r = 0; r < rounds; r++) {
    directRuns.push(await direct());
    sandboxedRuns.push(await sandboxed());
  }
  // Latency added to one delivery by a trivial transform: one execution at a time.
  const latencies = [];
  for (let i = 0; i < 500; i++) {
    const t = performance.now();
    await sandbox.run({ code: compiled.code, input, config });
    latencies.push(performance.now() - t);
  }
  latencies.sort((a, b) => a - b);
  await sandbox.close();

  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const sandboxedOps = Math.round(mean(sandboxedRuns));
  const directOps = Math.round(mean(directRuns));
  const perCore = Math.round(sandboxedOps / cores);
  const ratio = sandboxedOps / directOps;
  const p50 = latencies[Math.floor(latencies.length * 0.5)];
  const p99 = latencies[Math.floor(latencies.length * 0.99)];
  const pass = perCore >= TARGET_PER_CORE && failures === 0;
  log(`direct ${directOps} exec/s | sandboxed ${sandboxedOps} exec/s (${perCore}/s per core, ${cores} cores) | ratio ${(ratio * 100).toFixed(2)}% | added latency p50 ${p50.toFixed(2)} ms p99 ${p99.toFixed(2)} ms | failures ${failures} (target >= ${TARGET_PER_CORE}/s per core: ${pass ? 'PASS' : 'FAIL'})`);
  return {
    results: { benchmark: 'sandbox', durationSeconds, rounds, cores, directOpsPerSecond: directOps, sandboxedOpsPerSecond: sandboxedOps, sandboxedPerCore: perCore, ratio, latencyP50Ms: p50, latencyP99Ms: p99, failures, targetPerCore: TARGET_PER_CORE, pass },
    pass,
  };
}
