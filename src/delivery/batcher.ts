/**
 * Group commit per key (the engine keys by workspace): items added while a flush of their key
 * is running wait and go together in the next one, up to `maxBatch`; an item added when none is
 * running goes out on the next turn of the event loop, with whatever else arrived in that turn.
 * Under load a batch is as large as what finished during the previous commit; when idle an
 * item waits one turn, not a timer. `add` resolves once the flush holding the item committed,
 * and rejects with the flush's error, so a caller still knows its own item's fate.
 */
export interface Batcher<T> {
  add(key: string, item: T): Promise<void>;
  /** Items waiting or being flushed. */
  readonly size: () => number;
}

interface Waiting<T> {
  readonly item: T;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

export function createBatcher<T>(flush: (key: string, items: readonly T[]) => Promise<void>, maxBatch: number): Batcher<T> {
  const queues = new Map<string, Waiting<T>[]>();
  const running = new Set<string>();
  let pending = 0;

  function schedule(key: string): void {
    setImmediate(() => void drain(key));
  }

  async function drain(key: string): Promise<void> {
    if (running.has(key)) return;
    const queue = queues.get(key);
    if (!queue || queue.length === 0) return;
    const batch = queue.splice(0, maxBatch);
    if (queue.length === 0) queues.delete(key);
    running.add(key);
    try {
      await flush(key, batch.map((w) => w.item));
      for (const w of batch) w.resolve();
    } catch (error) {
      for (const w of batch) w.reject(error);
    } finally {
      pending -= batch.length;
      running.delete(key);
      if (queues.has(key)) void drain(key);
    }
  }

  return {
    add(key, item) {
      return new Promise<void>((resolve, reject) => {
        pending++;
        const queue = queues.get(key);
        if (queue) queue.push({ item, resolve, reject });
        else {
          queues.set(key, [{ item, resolve, reject }]);
          if (!running.has(key)) schedule(key);
        }
      });
    },
    size: () => pending,
  };
}
