/**
 * A LISTEN that survives the server: one `pg.Client` outside the pools (a pooled connection
 * would be handed back and lose its LISTEN), reconnected with capped, jittered backoff whenever
 * it drops — a PostgreSQL restart, a terminated backend, a network cut. It never throws into the
 * process: every failure becomes `onDisconnected` and another attempt, until `close`.
 */
import pg from 'pg';
import type { NotificationHandlers, Subscription } from './types.js';

/** How the listening connection appears in pg_stat_activity (operators, tests). */
export const LISTENER_APPLICATION_NAME = 'bulkhead-listen';

export interface ListenRetry {
  readonly minMs: number;
  readonly maxMs: number;
}

const DEFAULT_RETRY: ListenRetry = { minMs: 100, maxMs: 5_000 };

export function listenPostgres(connectionString: string, channel: string, handlers: NotificationHandlers, retry: ListenRetry = DEFAULT_RETRY): Subscription {
  // LISTEN takes an identifier, not a parameter.
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(channel)) throw new Error(`unsafe channel name ${channel}`);
  let closed = false;
  let current: pg.Client | undefined;
  let timer: NodeJS.Timeout | undefined;
  let failures = 0;

  function retryLater(error: Error): void {
    if (closed) return;
    handlers.onDisconnected(error);
    const delay = Math.min(retry.maxMs, retry.minMs * 2 ** failures) * (0.5 + Math.random() / 2);
    failures++;
    timer = setTimeout(() => {
      timer = undefined;
      void connect();
    }, delay);
    // A pending retry alone must not keep a process alive that is otherwise done.
    timer.unref();
  }

  async function connect(): Promise<void> {
    if (closed) return;
    const client = new pg.Client({ connectionString, application_name: LISTENER_APPLICATION_NAME, keepAlive: true, connectionTimeoutMillis: 10_000 });
    current = client;
    let dropped = false;
    // 'error' and 'end' both arrive for one drop, and a failed connect may emit either as well.
    const drop = (error: Error) => {
      if (dropped) return;
      dropped = true;
      if (current === client) current = undefined;
      client.removeAllListeners('notification');
      client.end().catch(() => undefined);
      retryLater(error);
    };
    client.on('error', drop);
    client.on('end', () => {
      drop(new Error('the listening connection ended'));
    });
    client.on('notification', (message) => {
      if (message.channel === channel && message.payload !== undefined) handlers.onNotification(message.payload);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${channel}`);
    } catch (error) {
      drop(error instanceof Error ? error : new Error(String(error)));
      return;
    }
    // Closed, or dropped, while LISTEN was on its way.
    if (current !== client) return;
    failures = 0;
    handlers.onListening();
  }

  void connect();
  return {
    async close() {
      closed = true;
      clearTimeout(timer);
      const client = current;
      current = undefined;
      if (!client) return;
      // Ending a connection still being attempted waits for the attempt; shutdown does not.
      let bound: NodeJS.Timeout | undefined;
      await Promise.race([client.end().catch(() => undefined), new Promise((resolve) => { bound = setTimeout(resolve, 2_000); })]);
      clearTimeout(bound);
    },
  };
}
