// Benchmark "sandbox": trivial transform executions per second through the sandbox pool (a
// fresh QuickJS runtime and context per execution, off the main thread), against calling the
// same function directly in Node in the same run. Target (issue 5): >= 2,000 sandboxed
// executions per second per core (pool size = cores).
//
// Also reported: the latency a trivial transform adds to one delivery (p50/p99 of one
// sandbox.run at a time on an idle pool), and, in-process on this thread, what one execution
// costs and what just creating and disposing a fresh runtime + context costs: the floor that a
// fresh runtime per execution imposes whatever the sandbox does around it.
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TARGET_PER_CORE = 2000;
const CODE = 'function transform(event, ctx) { return { id: event.id, type: event.type.toUpperCase(), env: ctx.config.env }; }';

export async function run({ durationSeconds, rounds, log }) {
  const { createSandbox } = await import(path.join(root, 'dist', 'sandbox', 'index.js'));
  const engine = await import(path.join(root, 'dist', 'sandbox', 'engine.js'));
  const { defaultLimits } = await import(path.join(root, 'dist', 'sandbox', 'limits.js'));
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
    const cpuBefore = process.cpuUsage();
    await Promise.all(Array.from({ length: inFlight }, lane));
    const cpu = process.cpuUsage(cpuBefore);
    // Whole-process CPU (main thread and workers): executions per CPU-second is the per-core
    // figure that does not depend on the machine handing out all its cores.
    sandboxedCpuSeconds.push((cpu.user + cpu.system) / 1e6 / done);
    return done / ((performance.now() - started) / 1000);
  };
  const sandboxedCpuSeconds = [];
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

  // In-process, on this thread: one execution, and the floor (runtime + context, nothing run).
  const quickjs = await engine.loadQuickJS();
  const request = { code: compiled.code, entry: 'transform', inputJson: JSON.stringify(input), configJson: JSON.stringify(config), capabilities: [], limits: defaultLimits };
  const host = { call: () => Promise.resolve({ ok: false, message: 'none' }) };
  const floorOnce = () => {
    const rt = quickjs.newRuntime();
    rt.newContext().dispose();
    rt.dispose();
  };
  const executeOnce = () => engine.execute(quickjs, request, host);
  // Interleaved blocks, median of each: the two figures see the same machine conditions.
  const executeSamples = [];
  const floorSamples = [];
  const block = async (fn, samples) => {
    const t = performance.now();
    for (let i = 0; i < 500; i++) await fn();
    samples.push((performance.now() - t) / 500);
  };
  for (let r = 0; r < 2; r++) {
    await block(executeOnce, []);
    await block(floorOnce, []);
  }
  for (let r = 0; r < 9; r++) {
    await block(executeOnce, executeSamples);
    await block(floorOnce, floorSamples);
  }
  const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const executeMs = median(executeSamples);
  const floorMs = median(floorSamples);

  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const sandboxedOps = Math.round(mean(sandboxedRuns));
  const directOps = Math.round(mean(directRuns));
  const perCore = Math.round(sandboxedOps / cores);
  // The first entry is the warm-up's.
  const perCpuSecond = Math.round(1 / mean(sandboxedCpuSeconds.slice(1)));
  const ratio = sandboxedOps / directOps;
  const p50 = latencies[Math.floor(latencies.length * 0.5)];
  const p99 = latencies[Math.floor(latencies.length * 0.99)];
  const pass = perCore >= TARGET_PER_CORE && failures === 0;
  log(`direct ${directOps} exec/s | sandboxed ${sandboxedOps} exec/s (${perCore}/s per core, ${cores} cores; ${perCpuSecond} per CPU-second of the whole process) | ratio ${(ratio * 100).toFixed(2)}% | failures ${failures} (target >= ${TARGET_PER_CORE}/s per core: ${pass ? 'PASS' : 'FAIL'})`);
  log(`latency added by a trivial transform (one run at a time, idle pool): p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms`);
  log(`in-process, one thread: an execution ${(executeMs * 1000).toFixed(0)} µs (${Math.round(1000 / executeMs)}/s); floor, fresh runtime + context created and disposed with nothing run, ${(floorMs * 1000).toFixed(0)} µs (${Math.round(1000 / floorMs)}/s)`);
  return {
    results: { benchmark: 'sandbox', durationSeconds, rounds, cores, directOpsPerSecond: directOps, sandboxedOpsPerSecond: sandboxedOps, sandboxedPerCore: perCore, sandboxedPerCpuSecond: perCpuSecond, ratio, latencyP50Ms: p50, latencyP99Ms: p99, inProcessExecutionUs: executeMs * 1000, inProcessFloorUs: floorMs * 1000, failures, targetPerCore: TARGET_PER_CORE, pass },
    pass,
  };
}
