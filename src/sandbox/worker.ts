/**
 * Worker-thread entry: one execution at a time, each in a fresh QuickJS runtime (engine.ts).
 * Host calls are forwarded to the main thread and answered by message. After anything that may
 * have corrupted the WASM instance, the worker reports and loads a fresh instance; if the thread
 * itself dies, the pool starts a new worker.
 */
import { parentPort } from 'node:worker_threads';
import { execute, loadQuickJS } from './engine.js';
import type { FromWorker, HostCallAnswer, ToWorker } from './types.js';

const port = parentPort;
if (port === null) throw new Error('sandbox worker must run in a worker thread');

const send = (message: FromWorker): void => { port.postMessage(message); };
const answers = new Map<number, (answer: HostCallAnswer) => void>();
let nextCallId = 1;
let quickjs = loadQuickJS();
let queue = Promise.resolve();

port.on('message', (message: ToWorker) => {
  if (message.type === 'answer') {
    const resolve = answers.get(message.callId);
    answers.delete(message.callId);
    resolve?.(message.answer);
    return;
  }
  const { id, request } = message;
  queue = queue.then(async () => {
    const result = await execute(await quickjs, request, {
      call(name, argsJson) {
        const callId = nextCallId++;
        return new Promise<HostCallAnswer>((resolve) => {
          answers.set(callId, resolve);
          send({ type: 'call', id, callId, name, argsJson });
        });
      },
    });
    // Answers that arrive after the execution ended have nobody to resolve.
    answers.clear();
    send({ type: 'done', id, outcome: result.outcome, poisoned: result.poisoned });
    // A WASM abort leaves the instance unusable, not the thread: load a fresh instance.
    if (result.poisoned) quickjs = loadQuickJS();
  });
});

void quickjs.then(() => { send({ type: 'ready' }); });
