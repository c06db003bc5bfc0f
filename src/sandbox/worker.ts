/**
 * Worker-thread entry: one execution at a time, each in a fresh QuickJS runtime (engine.ts).
 * Host calls are forwarded to the main thread and answered by message. After anything that may
 * have corrupted the WASM instance, the worker reports and loads a fresh instance; if the thread
 * itself dies, the pool starts a new worker.
 *
 * Each instance's linear memory is capped for the `memoryBytes` limit of the executions it runs
 * (wasm.ts explains why QuickJS's own limit is not enough). Executions with another limit get an
 * instance of their own; the two most recently used are kept.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { execute } from './engine.js';
import type { FromWorker, HostCallAnswer, ToWorker } from './types.js';
import { type LoadedQuickJS, loadCappedQuickJS, memoryCapFor } from './wasm.js';

const port = parentPort;
if (port === null) throw new Error('sandbox worker must run in a worker thread');

const KEPT_INSTANCES = 2;
/** Within this distance of its cap, an instance counts as out of memory (a small malloc failed). */
const CAP_SLACK_BYTES = 1024 * 1024;

const send = (message: FromWorker): void => { port.postMessage(message); };
const answers = new Map<number, (answer: HostCallAnswer) => void>();
let nextCallId = 1;
const instances = new Map<number, Promise<LoadedQuickJS>>();
let queue = Promise.resolve();

function instanceFor(memoryBytes: number): Promise<LoadedQuickJS> {
  const cap = memoryCapFor(memoryBytes);
  let instance = instances.get(cap);
  if (instance === undefined) {
    instance = loadCappedQuickJS({ maxMemoryBytes: cap });
    // Dropped instances are garbage-collected with their memory: nothing else refers to them.
    if (instances.size >= KEPT_INSTANCES) instances.delete(instances.keys().next().value as number);
  } else {
    instances.delete(cap);
  }
  instances.set(cap, instance);
  return instance;
}

port.on('message', (message: ToWorker) => {
  if (message.type === 'answer') {
    const resolve = answers.get(message.callId);
    answers.delete(message.callId);
    resolve?.(message.answer);
    return;
  }
  const { id, request } = message;
  queue = queue.then(async () => {
    const loaded = await instanceFor(request.limits.memoryBytes);
    const exhausted = (): boolean => loaded.memoryBytes() + CAP_SLACK_BYTES >= loaded.maxMemoryBytes;
    const result = await execute(loaded.module, request, {
      call(name, argsJson) {
        const callId = nextCallId++;
        return new Promise<HostCallAnswer>((resolve) => {
          answers.set(callId, resolve);
          send({ type: 'call', id, callId, name, argsJson });
        });
      },
      memoryExhausted: exhausted,
    });
    // Answers that arrive after the execution ended have nobody to resolve.
    answers.clear();
    send({ type: 'done', id, outcome: result.outcome, poisoned: result.poisoned });
    // A WASM abort leaves the instance unusable, not the thread; an instance that ran out of
    // memory may have had allocations of the JavaScript glue fail mid-way, and holds its grown
    // memory for good. Either way: load a fresh instance when next needed.
    if (result.poisoned || exhausted() || (!result.outcome.ok && result.outcome.error.code === 'memory')) instances.delete(loaded.maxMemoryBytes);
  });
});

const initial = (workerData as { memoryBytes?: unknown } | null)?.memoryBytes;
void instanceFor(typeof initial === 'number' ? initial : 16 * 1024 * 1024).then(() => { send({ type: 'ready' }); });
