/**
 * "Work is due", across processes. A process that takes events but runs no delivery engine
 * (`serve --role api`) tells the worker processes after each commit, so a separate
 * `serve --role worker` starts on new events at once instead of at its next poll
 * (BULKHEAD_WORKER_POLL_MS): measured by `npm run bench -- fairness` on PostgreSQL, a quiet
 * workspace's delivery latency with a separate worker was p50 101 ms and p99 212 ms without it.
 * A process in the `all` role wakes its own engine in memory and sends nothing.
 *
 * The notification carries nothing — no workspace, no id: it only wakes claim loops, which find
 * the work themselves, under their usual rules. So it cannot leak or steer anything, and a lost one
 * (a listener reconnecting) costs at most one poll interval.
 *
 * Sends are coalesced: at most one NOTIFY in flight per process, and commits made while it is in
 * flight are covered by a single one after it. Under load that is one statement per round trip,
 * not one per event.
 */
import type { Database, Subscription } from '../db/types.js';
import type { Logger } from '../logging.js';

export const DUE_CHANNEL = 'bulkhead_due';

export interface DueNotifier {
  /** Something was committed that a worker should look at. Never throws, never waits. */
  notify(): void;
  /** Resolves once no send is in flight (for shutdown and tests). */
  settled(): Promise<void>;
}

export function createDueNotifier(deps: { database: Promise<Database>; logger: Logger }): DueNotifier {
  let inFlight: Promise<void> | undefined;
  /** notify() calls so far; a send covers every call made before it started. */
  let requested = 0;

  async function send(): Promise<void> {
    for (let covered = 0; covered < requested; ) {
      covered = requested;
      try {
        const db = await deps.database;
        await db.owner.query('SELECT pg_notify($1, NULL)', [DUE_CHANNEL]);
      } catch (error) {
        // The workers' poll is the backstop; a database outage is reported by the request itself.
        deps.logger.debug({ err: error }, 'could not notify workers of new work; they find it at their next poll');
      }
    }
    inFlight = undefined;
  }

  return {
    notify() {
      requested += 1;
      inFlight ??= send();
    },
    settled: async () => {
      await inFlight;
    },
  };
}

/** Calls `onDue` on every notification, and on every (re)connect: anything sent meanwhile was missed. */
export function listenForDue(deps: { database: Promise<Database>; onDue: () => void; logger: Logger }): { close(): Promise<void> } {
  let closed = false;
  let subscription: Subscription | undefined;
  void deps.database.then((db) => {
    if (closed) return;
    subscription = db.listen(DUE_CHANNEL, {
      onListening: deps.onDue,
      onNotification: deps.onDue,
      onDisconnected: (error) => {
        deps.logger.debug({ err: error }, 'the new-work listener is not connected; workers poll meanwhile');
      },
    });
  });
  return {
    async close() {
      closed = true;
      await subscription?.close();
    },
  };
}
