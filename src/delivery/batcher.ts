/**
 * Group commit per key (the engine keys by workspace): items added while `maxConcurrent` flushes
 * of their key are running wait and go together in the next one, up to `maxBatch`; an item added
 * when fewer run goes out on the next turn of the event loop, with whatever else arrived in that
 * turn. More than one flush per key lets one commit's fsync overlap the next batch's statements.
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

export function createBatcher<T>(flush: (key: string, items: readonly T[]) => Promise<void>, maxBatch: number, maxConcurrent = 1): Batcher<T> {
  const queues = new Map<string, Waiting<T>[]>();
  /** Flushes running per key. */
  const running = new Map<string, number>();
  const busy = (key: string) => (running.get(key) ?? 0) >= maxConcurrent;
  let pending = 0;

  function schedule(key: string): void {
    setImmediate(() => { drain(key); });
  }

  /** Starts flushes of `key` while there is work and room. */
  function drain(key: string): void {
    while (!busy(key)) {
      const queue = queues.get(key);
      if (!queue || queue.length === 0) return;
      const batch = queue.splice(0, maxBatch);
      if (queue.length === 0) queues.delete(key);
      running.set(key, (running.get(key) ?? 0) + 1);
      void run(key, batch);
    }
  }

  async function run(key: string, batch: readonly Waiting<T>[]): Promise<void> {
    try {
      await flush(key, batch.map((w) => w.item));
      for (const w of batch) w.resolve();
    } catch (error) {
      for (const w of batch) w.reject(error);
    } finally {
      pending -= batch.length;
      const left = (running.get(key) ?? 1) - 1;
      if (left > 0) running.set(key, left);
      else running.delete(key);
      drain(key);
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
          if (!busy(key)) schedule(key);
        }
      });
    },
    size: () => pending,
  };
}
