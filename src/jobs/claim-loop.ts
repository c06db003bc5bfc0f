/**
 * The loop shared by the queue workers (delivery engine, execution runner): one claim, then the
 * next — at once when work was found or someone asked meanwhile (a running item finished and
 * freed a slot, new work was queued in this process), after the poll interval otherwise. Never
 * two claims at a time in one process; many wake-ups while a claim runs make one more.
 */
import { BulkheadError } from '../errors.js';

export interface ClaimLoop {
  readonly start: () => void;
  /** New work may be due: claim without waiting for the poll. */
  readonly wake: () => void;
  /** Stops claiming (running items are the caller's to wait for). */
  readonly stop: () => void;
}

export function createClaimLoop<T>(deps: {
  /** Claims up to `room` items. */
  claim: (room: number) => Promise<readonly T[]>;
  /** Runs one claimed item; the loop wakes when it settles. */
  run: (item: T) => Promise<void>;
  capacity: number;
  inFlight: () => number;
  pollMs: number;
  onError: (error: unknown) => void;
}): ClaimLoop {
  let timer: NodeJS.Timeout | undefined;
  let stopping = false;
  let claiming = false;
  let again = false;
  let started = false;

  function loop(): void {
    if (stopping) return;
    if (claiming) {
      again = true;
      return;
    }
    if (timer) clearTimeout(timer);
    timer = undefined;
    claiming = true;
    again = false;
    deps
      .claim(deps.capacity - deps.inFlight())
      .then((claimed) => {
        for (const item of claimed) void deps.run(item).then(wake);
        return claimed.length > 0;
      })
      .catch((error: unknown) => {
        // While the database is still opening (embedded start-up) there is simply nothing to claim yet.
        if (!(error instanceof BulkheadError && error.code === 'not_ready')) deps.onError(error);
        return false;
      })
      .then((found) => {
        claiming = false;
        if (stopping) return;
        const soon = (found && deps.inFlight() < deps.capacity) || again;
        timer = setTimeout(loop, soon ? 0 : deps.pollMs);
      }, () => undefined);
  }

  function wake(): void {
    if (stopping || !started) return;
    if (claiming) again = true;
    else if (timer) {
      clearTimeout(timer);
      timer = setTimeout(loop, 0);
    }
  }

  return {
    start() {
      stopping = false;
      started = true;
      loop();
    },
    wake,
    stop() {
      stopping = true;
      started = false;
      if (timer) clearTimeout(timer);
    },
  };
}
