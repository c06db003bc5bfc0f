/**
 * The loop shared by the queue workers (delivery engine, execution runner): one claim, then the
 * next — at once when a claim found at least the floor's worth, or someone asked meanwhile (a running item finished and
 * freed a slot, new work was queued in this process), after the poll interval otherwise. Never
 * two claims at a time in one process; many wake-ups while a claim runs make one more. It tracks
 * what runs, and on stop waits for it (up to a grace period) before handing back the leases.
 * A claim that fails (the database down) is retried after a growing pause, doubling from the
 * poll interval up to `CLAIM_BACKOFF_MAX_MS`: an outage costs a warning every few seconds, not a
 * tight loop, and the first claim after recovery comes within that bound.
 */
import { BulkheadError } from '../errors.js';

export const CLAIM_BACKOFF_MAX_MS = 5_000;

/** The pause before the next claim after `failures` failed claims in a row. */
export function claimBackoffMs(pollMs: number, failures: number): number {
  return Math.max(pollMs, Math.min(CLAIM_BACKOFF_MAX_MS, pollMs * 2 ** Math.min(failures, 20)));
}

export interface QueueWorker {
  /** One claim-and-run round; resolves when its items finished. For tests. */
  readonly runOnce: () => Promise<number>;
  readonly start: () => void;
  /** New work may be due: claim without waiting for the poll. */
  readonly wake: () => void;
  /** Stops claiming, lets running items finish (up to `graceMs`), then calls `release`. */
  readonly stop: (graceMs?: number) => Promise<void>;
}

export function createQueueWorker<T extends { readonly id: string }>(deps: {
  /** Claims up to `room` items (leased to this process). */
  claim: (room: number) => Promise<readonly T[]>;
  /** Runs one claimed item. A rejection is a bug: it goes to `onError` and the item's lease runs out. */
  run: (item: T) => Promise<void>;
  capacity: number;
  /**
   * Claim only when at least this many slots are free, or nothing runs (default 1): with a
   * floor, slots freed one at a time are gathered into one larger claim instead of a claim each.
   */
  claimFloor?: number;
  pollMs: number;
  onError: (error: unknown, context: { item?: T; phase: 'claim' | 'run' | 'release' }) => void;
  /** Hands back whatever this process still holds (called once running items finished or the grace ran out). */
  release: () => Promise<void>;
}): QueueWorker {
  const inflight = new Map<string, Promise<void>>();
  let timer: NodeJS.Timeout | undefined;
  let stopping = false;
  let claiming = false;
  let again = false;
  let started = false;
  /** Failed claims in a row (the back-off). */
  let failures = 0;

  const claim = () => deps.claim(deps.capacity - inflight.size);

  function track(item: T): Promise<void> {
    const running = deps
      .run(item)
      .catch((error: unknown) => { deps.onError(error, { item, phase: 'run' }); })
      .finally(() => inflight.delete(item.id));
    inflight.set(item.id, running);
    return running;
  }

  function loop(): void {
    if (stopping) return;
    if (claiming) {
      again = true;
      return;
    }
    if (timer) clearTimeout(timer);
    timer = undefined;
    if (inflight.size > 0 && deps.capacity - inflight.size < Math.min(deps.claimFloor ?? 1, deps.capacity)) {
      // Too little room: the next item to finish wakes the loop (and the poll is the backstop).
      timer = setTimeout(loop, deps.pollMs);
      return;
    }
    claiming = true;
    again = false;
    const room = deps.capacity - inflight.size;
    claim()
      .then((claimed) => {
        failures = 0;
        for (const item of claimed) void track(item).then(wake);
        // Claim again at once only after a claim worth its cost: one that took at least the floor
        // (or all the room there was). A smaller one means little is claimable now — typically a
        // destination at its in-flight cap, taking one more per attempt that finished — and the
        // next finished attempt wakes the loop anyway. Claiming again at once after each of
        // those doubled the claims and kept the loop busy back to back, so a quiet workspace's
        // event waited for claims that found nothing (docs/BENCHMARKS.md, fairness).
        return claimed.length > 0 && claimed.length >= Math.min(deps.claimFloor ?? 1, room);
      })
      .catch((error: unknown) => {
        // While the database is still opening (embedded start-up) there is simply nothing to claim yet.
        if (!(error instanceof BulkheadError && error.code === 'not_ready')) {
          failures++;
          deps.onError(error, { phase: 'claim' });
        }
        return false;
      })
      .then((found) => {
        claiming = false;
        if (stopping) return;
        // After a failed claim even a wake-up waits out the back-off: a finished item must not restart a tight loop.
        const soon = failures === 0 && ((found && inflight.size < deps.capacity) || again);
        timer = setTimeout(loop, soon ? 0 : failures > 0 ? claimBackoffMs(deps.pollMs, failures) : deps.pollMs);
      }, () => undefined);
  }

  function wake(): void {
    if (stopping || !started || failures > 0) return;
    if (claiming) again = true;
    else if (timer) {
      clearTimeout(timer);
      timer = setTimeout(loop, 0);
    }
  }

  return {
    async runOnce() {
      const claimed = await claim();
      await Promise.all(claimed.map(track));
      return claimed.length;
    },
    start() {
      stopping = false;
      started = true;
      loop();
    },
    wake,
    async stop(graceMs = 10_000) {
      stopping = true;
      started = false;
      if (timer) clearTimeout(timer);
      await Promise.race([Promise.all(inflight.values()), new Promise((resolve) => setTimeout(resolve, graceMs).unref())]);
      try {
        await deps.release();
      } catch (error) {
        // The database is gone or never opened: the leases expire by themselves and are claimed again.
        deps.onError(error, { phase: 'release' });
      }
    },
  };
}
