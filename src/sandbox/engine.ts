/**
 * One execution in a fresh QuickJS runtime and context. Runs inside a worker thread (see
 * worker.ts) but has no dependency on it, so it is also testable in-process.
 */
import { DefaultIntrinsics, type QuickJSContext, type QuickJSDeferredPromise, type QuickJSHandle, type QuickJSRuntime, type QuickJSWASMModule } from 'quickjs-emscripten-core';
import { buildCtx, prepareGlobals } from './guest-api.js';
import type { ExecutionOutcome, ExecutionRequest, HostCallAnswer, SandboxErrorCode, SandboxFailure } from './types.js';

export type { QuickJSWASMModule };
export { loadQuickJS } from './wasm.js';

export interface EngineHost {
  /** Forwards a granted, counted, size-checked call to the host; never rejects. */
  call(name: string, argsJson: string): Promise<HostCallAnswer>;
  /** Whether the WASM instance's linear memory is at its cap (see wasm.ts); absent: never. */
  memoryExhausted?(): boolean;
}

export interface EngineResult {
  readonly outcome: ExecutionOutcome;
  /**
   * The WASM instance may be corrupt (an abort or a host-level exception in the middle of the
   * interpreter): the caller must not run anything else on this module.
   */
  readonly poisoned: boolean;
}

const MESSAGE_CHARS = 1_000;
const utf8 = new TextEncoder();
const byteLength = (s: string): number => (s.length * 3 <= 1_000_000 ? utf8.encode(s).length : Buffer.byteLength(s));
const clip = (s: string, max: number): string => (s.length > max ? `${s.slice(0, max)}…` : s);

/** Truncates to at most `max` UTF-8 bytes without splitting a character. */
function truncateBytes(s: string, max: number): string {
  if (s.length <= max / 3 || byteLength(s) <= max) return s;
  const buf = Buffer.from(s, 'utf8').subarray(0, max);
  return buf.toString('utf8').replace(/\uFFFD$/u, '');
}

/** Ends an execution with a classified failure; caught in execute(), never escapes it. */
class Failure extends Error {
  constructor(readonly code: SandboxErrorCode, message: string) {
    super(message);
  }
}

export async function execute(module: QuickJSWASMModule, request: ExecutionRequest, host: EngineHost, now: () => number = () => performance.now()): Promise<EngineResult> {
  const { limits } = request;
  const started = now();
  const wallDeadline = started + limits.wallTimeMs;
  let cpuUsed = 0;
  let segmentStart = started;
  let interrupted: 'cpu' | 'wall' | undefined;
  const logs: string[] = [];
  let logBytes = 0;
  let logClosed = false;
  let calls = 0;
  let denied: string | undefined;
  let tooMany = false;
  let finished = false;
  // Read through a function: these are set inside host callbacks, which control-flow analysis cannot see.
  const grantExceeded = (): boolean => denied !== undefined || tooMany;
  const deferreds = new Set<QuickJSDeferredPromise>();
  const inFlight = new Set<Promise<void>>();
  const handles: QuickJSHandle[] = [];
  let poisoned = false;
  let rt: QuickJSRuntime | undefined;
  let ctx: QuickJSContext | undefined;

  const failure = (code: SandboxErrorCode, message: string): SandboxFailure => ({ code, message: clip(message, MESSAGE_CHARS) });
  const timeoutMessage = (): string => (interrupted === 'wall' ? `execution exceeded the wall time limit of ${limits.wallTimeMs} ms` : `execution exceeded the CPU time limit of ${limits.cpuTimeMs} ms`);

  const appendLog = (line: string): void => {
    if (logClosed) return;
    const clipped = truncateBytes(line, limits.logLineBytes);
    const size = byteLength(clipped) + 1;
    if (logBytes + size > limits.logTotalBytes) {
      logClosed = true;
      logs.push(`[log truncated: over ${limits.logTotalBytes} bytes]`);
      return;
    }
    logBytes += size;
    logs.push(clipped);
  };

  let outcome: ExecutionOutcome;
  try {
    rt = module.newRuntime();
    rt.setMemoryLimit(limits.memoryBytes);
    rt.setMaxStackSize(limits.stackBytes);
    rt.setInterruptHandler(() => {
      const t = now();
      if (cpuUsed + (t - segmentStart) > limits.cpuTimeMs) interrupted ??= 'cpu';
      else if (t > wallDeadline) interrupted ??= 'wall';
      return interrupted !== undefined;
    });
    // The standard intrinsics without WeakRef and FinalizationRegistry, which a full context
    // would create only for prepareGlobals to delete them.
    const context = rt.newContext({ intrinsics: DefaultIntrinsics });
    ctx = context;
    const runtime = rt;

    /** Every entry into the interpreter goes through here, so CPU time is counted. */
    const guest = <T>(fn: () => T): T => {
      segmentStart = now();
      try {
        return fn();
      } finally {
        cpuUsed += now() - segmentStart;
      }
    };
    const own = (h: QuickJSHandle): QuickJSHandle => {
      handles.push(h);
      return h;
    };
    /**
     * Whether the runtime is (nearly) out of memory, by QuickJS's own accounting or at the
     * instance's cap. Only asked on failure paths: it lifts the limit and builds QuickJS's
     * service context (~0.3 ms), which is fine because the execution is ending anyway.
     */
    const outOfMemory = (): boolean => {
      if (host.memoryExhausted?.() === true) return true;
      try {
        runtime.setMemoryLimit(-1);
        const usage = runtime.computeMemoryUsage();
        const size = context.getProp(usage, 'memory_used_size');
        const used = context.typeof(size) === 'number' ? context.getNumber(size) : 0;
        size.dispose();
        usage.dispose();
        // QuickJS's own estimate of live bytes. Its limit trips at ~40% of the nominal figure
        // on this build (its accounting is not in bytes: see wasm.ts); a quarter of the limit
        // separates "ran out" from a deliberate `throw null` of a normal transform.
        return used >= limits.memoryBytes / 4;
      } catch {
        return false;
      }
    };
    const classify = (errorHandle: QuickJSHandle): Failure => {
      if (interrupted) return new Failure('timeout', timeoutMessage());
      if (denied !== undefined) return new Failure('capability_denied', `capability ${denied} is not granted to this code`);
      if (tooMany) return new Failure('too_many_calls', `more than ${limits.hostCalls} host calls in one execution`);
      const { name, message, location } = describe(context, errorHandle);
      // Out of memory inside a promise job: QuickJS could not even build the error object and
      // threw null (or an error without its message). The runtime's memory tells it from a
      // guest's own `throw null`.
      const bare = message === '(no message)' && (name === 'Error' || name === 'InternalError');
      if (bare && outOfMemory()) return new Failure('memory', `execution exceeded the memory limit of ${limits.memoryBytes} bytes`);
      if (name === 'InternalError' && message === 'out of memory') return new Failure('memory', `execution exceeded the memory limit of ${limits.memoryBytes} bytes`);
      if (name === 'RangeError' && /too large to allocate|invalid array buffer length/u.test(message)) return new Failure('memory', `execution exceeded the memory limit of ${limits.memoryBytes} bytes (${message})`);
      if (name === 'InternalError' && message === 'stack overflow') return new Failure('stack_overflow', `execution exceeded the stack limit of ${limits.stackBytes} bytes`);
      return new Failure('runtime_error', `${name === '' ? 'Uncaught' : name}: ${message}${location}`);
    };
    const unwrap = (result: { readonly error?: QuickJSHandle | undefined; readonly value?: QuickJSHandle | undefined }): QuickJSHandle => {
      if (result.error) {
        const failed = classify(own(result.error));
        throw failed;
      }
      return own(result.value as QuickJSHandle);
    };

    /** Starts a host call for the guest; answers with a promise handle the guest owns. */
    const startCall = (name: string, argsJson: string): QuickJSHandle => {
      const deferred = context.newPromise();
      deferreds.add(deferred);
      const reject = (message: string): void => {
        const error = context.newError({ name: 'CapabilityError', message });
        deferred.reject(error);
        error.dispose();
      };
      if (!request.capabilities.includes(name)) {
        denied ??= clip(name, 200);
        reject(`capability ${clip(name, 200)} is not granted`);
      } else if (calls >= limits.hostCalls) {
        tooMany = true;
        reject(`host call limit of ${limits.hostCalls} reached`);
      } else if (byteLength(argsJson) > limits.hostCallBytes) {
        reject(`host call argument exceeds ${limits.hostCallBytes} bytes`);
      } else {
        calls++;
        const pending = host.call(name, argsJson).then((answer) => {
          if (finished || !deferred.alive) return;
          if (answer.ok && byteLength(answer.json) > limits.hostCallBytes) {
            reject(`host call answer exceeds ${limits.hostCallBytes} bytes`);
          } else if (answer.ok) {
            // Parsed here rather than in a promise job: see invoke below.
            const text = context.newString(answer.json);
            const parsed = guest(() => context.callFunction(intrinsics.parse, context.undefined, text));
            text.dispose();
            if (parsed.error) {
              deferred.reject(parsed.error);
              parsed.error.dispose();
            } else {
              deferred.resolve(parsed.value);
              parsed.value.dispose();
            }
          } else {
            reject(answer.message);
          }
        }).catch(() => {
          // Settling failed inside the runtime (out of memory): the execution ends at its wall
          // time or when nothing is pending, and is classified from the runtime's state.
        });
        inFlight.add(pending);
        void pending.finally(() => inFlight.delete(pending));
      }
      return deferred.handle;
    };

    const intrinsics = prepareGlobals(context, own);
    const built = guest(() => buildCtx(context, intrinsics, {
      own,
      logOpen: () => !logClosed,
      log: appendLog,
      halted: () => interrupted !== undefined,
      call: startCall,
      lineChars: limits.logLineBytes,
    }, request.configJson, request.capabilities));
    if ('error' in built) throw classify(own(built.error));

    unwrap(guest(() => context.evalCode(request.code, 'transform.js')));
    // A function declaration is a property of the global object (~3 µs to read); anything else
    // (a top-level let or const, or a getter that throws) goes through the slower evaluation.
    let entry = own(guest(() => context.getProp(context.global, request.entry)));
    if (context.typeof(entry) !== 'function') {
      entry = unwrap(guest(() => context.evalCode(`typeof ${request.entry} === 'function' ? ${request.entry} : undefined`, 'sandbox:entry')));
      if (context.typeof(entry) !== 'function') throw new Failure('runtime_error', `the code does not define a function named ${request.entry}`);
    }
    // The entry is called directly, not from a promise job: QuickJS leaks (and then asserts at
    // teardown) when an out-of-memory error unwinds through a job, so the common path avoids jobs.
    const event = unwrap(guest(() => context.callFunction(intrinsics.parse, context.undefined, own(context.newString(request.inputJson)))));
    const returned = unwrap(guest(() => context.callFunction(entry, context.undefined, event, built.ctx)));
    // Promise.resolve follows thenables, as `await` would.
    const promise = unwrap(guest(() => context.callFunction(intrinsics.promiseResolve, intrinsics.promise, returned)));

    for (;;) {
      if (runtime.hasPendingJob()) {
        const jobs = guest(() => runtime.executePendingJobs());
        if (jobs.error) throw classify(own(jobs.error));
      }
      // Set by the interrupt handler during the call above (invisible to control-flow analysis).
      if ((interrupted as string | undefined) !== undefined) throw new Failure('timeout', timeoutMessage());
      const state = context.getPromiseState(promise);
      if (state.type === 'fulfilled') {
        const value = own(state.value);
        if (grantExceeded()) throw classify(value);
        let outputJson = 'null';
        if (context.typeof(value) !== 'undefined') {
          const json = unwrap(guest(() => context.callFunction(intrinsics.stringify, context.undefined, value)));
          // undefined for functions and symbols: null, as for undefined itself.
          if (context.typeof(json) === 'string') outputJson = context.getString(json);
        }
        if (byteLength(outputJson) > limits.outputBytes) throw new Failure('output_too_large', `the result exceeds ${limits.outputBytes} bytes of JSON`);
        outcome = { ok: true, outputJson, logs, calls };
        break;
      }
      if (state.type === 'rejected') throw classify(own(state.error));
      if (runtime.hasPendingJob()) continue;
      if (inFlight.size === 0) {
        // Out of memory can also drop a promise job on the floor, which leaves nothing pending.
        if (outOfMemory()) throw new Failure('memory', `execution exceeded the memory limit of ${limits.memoryBytes} bytes`);
        throw new Failure('runtime_error', 'the transform returned a promise that can never settle (nothing is pending)');
      }
      const remaining = wallDeadline - now();
      if (remaining <= 0) {
        interrupted = 'wall';
        throw new Failure('timeout', timeoutMessage());
      }
      let timer: NodeJS.Timeout | undefined;
      const expired = await Promise.race([
        Promise.race(inFlight).then(() => false),
        new Promise<boolean>((resolve) => { timer = setTimeout(() => { resolve(true); }, remaining); }),
      ]);
      clearTimeout(timer);
      if (expired) {
        interrupted = 'wall';
        throw new Failure('timeout', timeoutMessage());
      }
    }
  } catch (error) {
    if (error instanceof Failure) {
      outcome = { ok: false, error: failure(error.code, error.message), logs, calls };
    } else {
      // A host-level exception inside the interpreter (native stack exhausted, WASM trap, abort):
      // the instance's state cannot be trusted any more.
      poisoned = true;
      const isStack = error instanceof RangeError && error.message.includes('call stack');
      outcome = { ok: false, error: isStack ? failure('stack_overflow', `execution exceeded the stack limit of ${limits.stackBytes} bytes`) : failure('crashed', 'the sandbox engine failed during this execution'), logs, calls };
    }
  } finally {
    finished = true;
    if (!poisoned) {
      try {
        // Lift the limits for teardown: QuickJS needs a little memory and a few job runs to
        // unwind what an interrupted or out-of-memory execution left half-built.
        rt?.setMemoryLimit(-1);
        interrupted ??= 'wall';
        for (let i = 0; i < 1_000 && rt?.hasPendingJob() === true; i++) rt.executePendingJobs(1).error?.dispose();
        for (const d of deferreds) d.dispose();
        for (const h of handles) if (h.alive) h.dispose();
        ctx?.dispose();
        rt?.dispose();
      } catch {
        poisoned = true;
      }
    }
  }
  return { outcome, poisoned };
}

/** Reads name, message and position of a thrown guest value without trusting its shape. */
function describe(context: QuickJSContext, handle: QuickJSHandle): { name: string; message: string; location: string } {
  const type = context.typeof(handle);
  if (type === 'string') return { name: '', message: context.getString(handle), location: '' };
  if (type === 'number') return { name: '', message: String(context.getNumber(handle)), location: '' };
  if (type !== 'object' && type !== 'function') return { name: '', message: type, location: '' };
  const read = (key: string): string => {
    try {
      const prop = context.getProp(handle, key);
      try {
        return context.typeof(prop) === 'string' ? context.getString(prop) : '';
      } finally {
        prop.dispose();
      }
    } catch {
      return '';
    }
  };
  const name = read('name');
  const message = read('message');
  const at = /transform\.js:(\d+):(\d+)/u.exec(read('stack'));
  return { name: name === '' ? 'Error' : clip(name, 100), message: message === '' ? '(no message)' : message, location: at ? ` (line ${at[1] ?? ''}, column ${at[2] ?? ''})` : '' };
}
