/**
 * The sandbox service: a bounded queue in front of a pool of worker threads, each running one
 * execution at a time in a fresh QuickJS runtime. A watchdog on the main thread terminates a
 * worker that overruns its execution's wall time by more than a grace period; a crashed or
 * terminated worker fails only its own execution and is replaced on demand.
 *
 * When every worker is busy and executions wait, each worker is handed one more execution ahead
 * of time, so that it starts the next one without waiting for a message round trip through this
 * thread (which left workers idle ~30% of the time with trivial transforms). Such an execution
 * still counts as waiting (for `maxQueue`), and goes back to the front of the queue if its
 * worker dies before starting it.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { type CompileResult, type Language, createCompiler } from './compile.js';
import { type SandboxLimits, defaultLimits, resolveLimits } from './limits.js';
import type { ExecutionOutcome, ExecutionRequest, FromWorker, HostCallAnswer, RunResult, SandboxErrorCode, ToWorker } from './types.js';
import { loadCappedQuickJS, memoryCapFor } from './wasm.js';

/**
 * Throw this from a host function to pass `message` into the guest as the rejection of its
 * call. Any other error reaches the guest only as "host call failed", so host internals (and
 * anything secret they might mention) never cross into tenant code or its logs.
 */
export class HostCallError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HostCallError';
  }
}

export type HostFunction = (name: string, args: unknown, options: { readonly signal: AbortSignal }) => Promise<unknown>;

export interface RunRequest {
  /** JavaScript as returned by `compile` (TypeScript already stripped). */
  readonly code: string;
  /** The function the code defines and the sandbox calls as `entry(input, ctx)`. */
  readonly entry?: string;
  readonly input: unknown;
  /** Non-secret configuration, exposed deep-frozen as `ctx.config`. */
  readonly config?: Readonly<Record<string, unknown>>;
  /** Granted capability names, e.g. `connections.slack.request`. */
  readonly capabilities?: readonly string[];
  /** Answers granted capability calls. Required when capabilities are granted. */
  readonly call?: HostFunction;
  /** Tightens or loosens the sandbox's limits for this execution. */
  readonly limits?: Partial<SandboxLimits>;
}

export interface SandboxOptions {
  /** Worker threads; default `os.availableParallelism()`, at least 1. */
  readonly poolSize?: number;
  readonly limits?: Partial<SandboxLimits>;
  /** Executions waiting for a worker before `run` answers `queue_full`. */
  readonly maxQueue?: number;
  /** How long past an execution's wall time limit the watchdog waits before terminating the worker. */
  readonly watchdogGraceMs?: number;
  /** Largest source `compile` accepts. */
  readonly maxSourceBytes?: number;
  /** How long a new worker may take to load QuickJS. */
  readonly workerStartupMs?: number;
  /** Internal (tests): an alternative worker entry (plain JavaScript) speaking the same protocol. */
  readonly workerUrl?: URL;
}

export interface SandboxStats {
  readonly workers: number;
  readonly busy: number;
  readonly queued: number;
  readonly started: number;
  readonly crashed: number;
}

export interface Sandbox {
  compile(source: string, language: Language): Promise<CompileResult>;
  run(request: RunRequest): Promise<RunResult>;
  stats(): SandboxStats;
  close(): Promise<void>;
}

interface Job {
  readonly id: number;
  readonly request: ExecutionRequest;
  readonly granted: ReadonlySet<string>;
  readonly call: HostFunction | undefined;
  readonly resolve: (result: RunResult) => void;
  /** Created with the first host call: building an AbortController and aborting it costs more than a trivial execution's whole bookkeeping. */
  abort: AbortController | undefined;
  startedAt: number;
  calls: number;
}

interface Slot {
  readonly worker: Worker;
  ready: boolean;
  /** Executions handed to the worker, in order: the first is running, the others wait in it. */
  readonly jobs: Job[];
  timer: NodeJS.Timeout | undefined;
  killedByWatchdog: boolean;
  gone: boolean;
}

/** Executions a worker holds at most: the running one and one handed over ahead of time. */
const PIPELINE_DEPTH = 2;

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/u;
const FORBIDDEN_SEGMENTS = new Set(['__proto__', 'prototype', 'constructor', 'then']);

function validateCapability(name: string): void {
  const parts = name.split('.');
  const valid = parts.every((p) => IDENTIFIER.test(p) && !FORBIDDEN_SEGMENTS.has(p))
    && parts[0] !== 'config' && parts[0] !== 'log'
    && (parts[0] === 'connections' ? parts.length === 3 : parts.length >= 1);
  if (!valid) throw new TypeError(`invalid capability name ${JSON.stringify(name)}`);
}

function toJson(value: unknown, what: string): string {
  const json = JSON.stringify(value);
  if (typeof json !== 'string') return 'null';
  if (what === 'config' && (value === null || typeof value !== 'object' || Array.isArray(value))) throw new TypeError('config must be a plain object');
  return json;
}

function defaultWorker(): { script: URL | string; eval: boolean } {
  if (!import.meta.url.endsWith('.ts')) return { script: new URL('./worker.js', import.meta.url), eval: false };
  // Running from the TypeScript sources (tests): a worker does not inherit the parent's loader,
  // and `--import tsx` in a worker's execArgv does not apply to its entry, so register tsx first.
  const entry = new URL('./worker.ts', import.meta.url).href;
  return { script: `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}); });`, eval: true };
}

export function createSandbox(options: SandboxOptions = {}): Sandbox {
  const poolSize = Math.max(1, options.poolSize ?? availableParallelism());
  const limits = resolveLimits(defaultLimits, options.limits);
  const maxQueue = options.maxQueue ?? 1_000;
  const graceMs = options.watchdogGraceMs ?? 2_000;
  const startupMs = options.workerStartupMs ?? 30_000;
  const workerEntry = options.workerUrl === undefined ? defaultWorker() : { script: options.workerUrl, eval: false };
  // The parser runs on this thread: cap its instance too (PARSE_MEMORY_BYTES in compile.ts).
  const compile = createCompiler(async () => (await loadCappedQuickJS({ maxMemoryBytes: memoryCapFor(64 * 1024 * 1024) })).module, { maxSourceBytes: options.maxSourceBytes ?? 256 * 1024 });
  const slots = new Set<Slot>();
  const queue: Job[] = [];
  let nextId = 1;
  let closed = false;
  let closing: Promise<void> | undefined;
  let started = 0;
  let crashed = 0;
  let startupFailures = 0;

  const finish = (job: Job, outcome: ExecutionOutcome | { ok: false; code: SandboxErrorCode; message: string }): void => {
    job.abort?.abort();
    const durationMs = job.startedAt === 0 ? 0 : performance.now() - job.startedAt;
    if ('code' in outcome) {
      job.resolve({ ok: false, error: { code: outcome.code, message: outcome.message }, logs: [], durationMs, calls: job.calls });
      return;
    }
    if (!outcome.ok) {
      job.resolve({ ok: false, error: outcome.error, logs: outcome.logs, durationMs, calls: outcome.calls });
      return;
    }
    let value: unknown;
    try {
      value = JSON.parse(outcome.outputJson);
    } catch {
      job.resolve({ ok: false, error: { code: 'runtime_error', message: 'the result is not valid JSON' }, logs: outcome.logs, durationMs, calls: outcome.calls });
      return;
    }
    job.resolve({ ok: true, value, logs: outcome.logs, durationMs, calls: outcome.calls });
  };

  const answer = (slot: Slot, job: Job, callId: number, result: HostCallAnswer): void => {
    if (slot.gone || slot.jobs[0] !== job) return;
    const message: ToWorker = { type: 'answer', id: job.id, callId, answer: result };
    slot.worker.postMessage(message);
  };

  const onCall = (slot: Slot, job: Job, callId: number, name: string, argsJson: string): void => {
    // The worker checks grants and counts already; checking again here keeps the host function
    // behind a second, independent gate.
    if (!job.granted.has(name) || job.call === undefined) {
      answer(slot, job, callId, { ok: false, message: `capability ${name} is not granted` });
      return;
    }
    if (job.calls >= job.request.limits.hostCalls) {
      answer(slot, job, callId, { ok: false, message: `host call limit of ${job.request.limits.hostCalls} reached` });
      return;
    }
    job.calls++;
    const call = job.call;
    void (async (): Promise<HostCallAnswer> => {
      try {
        job.abort ??= new AbortController();
        const result = await call(name, JSON.parse(argsJson), { signal: job.abort.signal });
        const json = JSON.stringify(result) as string | undefined; // undefined for undefined and functions
        return { ok: true, json: json ?? 'null' };
      } catch (error) {
        return { ok: false, message: error instanceof HostCallError ? error.message : 'host call failed' };
      }
    })().then((result) => { answer(slot, job, callId, result); });
  };

  /** Starts the clock and the watchdog of the worker's first execution. */
  const start = (slot: Slot, job: Job): void => {
    job.startedAt = performance.now();
    slot.timer = setTimeout(() => {
      slot.killedByWatchdog = true;
      void slot.worker.terminate();
    }, job.request.limits.wallTimeMs + graceMs);
  };

  /** The worker's first execution has ended: the next one it holds starts now. */
  const advance = (slot: Slot): void => {
    clearTimeout(slot.timer);
    slot.timer = undefined;
    slot.jobs.shift();
    const next = slot.jobs[0];
    if (next !== undefined) start(slot, next);
  };

  const waitingCount = (): number => {
    let n = queue.length;
    for (const slot of slots) n += Math.max(0, slot.jobs.length - 1);
    return n;
  };

  const spawn = (): void => {
    started++;
    const worker = new Worker(workerEntry.script, {
      eval: workerEntry.eval,
      execArgv: [],
      // Lets the worker load its first QuickJS instance with the right memory cap.
      workerData: { memoryBytes: limits.memoryBytes },
      // The guest's stack lives in WASM memory but its frames also use this native stack.
      resourceLimits: { stackSizeMb: 8, maxOldGenerationSizeMb: 256 },
      stdout: false,
      stderr: false,
    });
    worker.unref();
    const slot: Slot = { worker, ready: false, jobs: [], timer: undefined, killedByWatchdog: false, gone: false };
    slots.add(slot);
    slot.timer = setTimeout(() => { void worker.terminate(); }, startupMs);
    slot.timer.unref();
    worker.on('message', (message: FromWorker) => {
      if (message.type === 'ready') {
        clearTimeout(slot.timer);
        slot.timer = undefined;
        slot.ready = true;
        startupFailures = 0;
        dispatch();
      } else if (message.type === 'call') {
        const job = slot.jobs[0];
        if (job?.id === message.id) onCall(slot, job, message.callId, message.name, message.argsJson);
      } else {
        const job = slot.jobs[0];
        if (job?.id !== message.id) return;
        advance(slot);
        finish(job, message.outcome);
        dispatch();
      }
    });
    worker.on('error', () => { /* followed by 'exit', which does the bookkeeping */ });
    worker.on('exit', () => {
      slot.gone = true;
      slots.delete(slot);
      clearTimeout(slot.timer);
      const [job, ...notStarted] = slot.jobs.splice(0);
      if (!slot.ready && job === undefined && !closed) startupFailures++;
      // Handed over ahead of time but never started: they wait again, first in line.
      if (closed) for (const waitingJob of notStarted) finish(waitingJob, { ok: false, code: 'crashed', message: 'the sandbox was closed' });
      else queue.unshift(...notStarted);
      if (job !== undefined) {
        crashed++;
        if (slot.killedByWatchdog) finish(job, { ok: false, code: 'timeout', message: `execution exceeded the wall time limit of ${job.request.limits.wallTimeMs} ms and its worker was terminated` });
        else finish(job, { ok: false, code: 'crashed', message: 'the sandbox worker running this execution crashed' });
      }
      if (startupFailures >= 3) {
        // The engine cannot start at all: fail what waits instead of respawning forever.
        for (const waiting of queue.splice(0)) finish(waiting, { ok: false, code: 'crashed', message: 'sandbox workers fail to start' });
        startupFailures = 0;
      }
      dispatch();
    });
  };

  const handOver = (slot: Slot): void => {
    const job = queue.shift() as Job;
    slot.jobs.push(job);
    if (slot.jobs.length === 1) start(slot, job);
    const message: ToWorker = { type: 'run', id: job.id, request: job.request };
    slot.worker.postMessage(message);
  };

  const dispatch = (): void => {
    if (closed) return;
    // Idle workers first; then, only if executions still wait and the pool is complete, one
    // more to each busy worker.
    const complete = slots.size >= poolSize && [...slots].every((s) => s.ready);
    for (let depth = 1; depth <= (complete ? PIPELINE_DEPTH : 1); depth++) {
      for (const slot of slots) {
        if (queue.length === 0) break;
        if (slot.ready && !slot.gone && slot.jobs.length < depth) handOver(slot);
      }
    }
    const starting = [...slots].filter((s) => !s.ready && !s.gone && s.jobs.length === 0).length;
    let missing = Math.min(queue.length - starting, poolSize - slots.size);
    while (missing-- > 0) spawn();
  };

  return {
    compile,

    run(request: RunRequest): Promise<RunResult> {
      if (closed) return Promise.reject(new Error('the sandbox is closed'));
      const entry = request.entry ?? 'transform';
      if (!IDENTIFIER.test(entry)) throw new TypeError(`invalid entry name ${JSON.stringify(entry)}`);
      const capabilities = [...new Set(request.capabilities ?? [])];
      capabilities.forEach(validateCapability);
      if (capabilities.length > 0 && request.call === undefined) throw new TypeError('capabilities granted without a call function');
      const jobLimits = request.limits === undefined ? limits : resolveLimits(limits, request.limits);
      const inputJson = toJson(request.input, 'input');
      const configJson = toJson(request.config ?? {}, 'config');
      const refuse = (code: SandboxErrorCode, message: string): Promise<RunResult> => Promise.resolve({ ok: false, error: { code, message }, logs: [], durationMs: 0, calls: 0 });
      if (Buffer.byteLength(inputJson) > jobLimits.inputBytes) return refuse('input_too_large', `the input exceeds ${jobLimits.inputBytes} bytes of JSON`);
      if (Buffer.byteLength(configJson) > jobLimits.inputBytes) return refuse('input_too_large', `the config exceeds ${jobLimits.inputBytes} bytes of JSON`);
      if (waitingCount() >= maxQueue) return refuse('queue_full', `the sandbox queue is full (${maxQueue} executions waiting)`);
      return new Promise<RunResult>((resolve) => {
        queue.push({
          id: nextId++,
          request: { code: request.code, entry, inputJson, configJson, capabilities, limits: jobLimits },
          granted: new Set(capabilities),
          call: request.call,
          resolve,
          abort: undefined,
          startedAt: 0,
          calls: 0,
        });
        dispatch();
      });
    },

    stats(): SandboxStats {
      return { workers: slots.size, busy: [...slots].filter((s) => s.jobs.length > 0).length, queued: waitingCount(), started, crashed };
    },

    close(): Promise<void> {
      // Every caller waits for the same termination (shutdown cuts first, then closes).
      closing ??= (async () => {
        closed = true;
        for (const job of queue.splice(0)) finish(job, { ok: false, code: 'crashed', message: 'the sandbox was closed' });
        await Promise.all([...slots].map((slot) => slot.worker.terminate()));
      })();
      return closing;
    },
  };
}
