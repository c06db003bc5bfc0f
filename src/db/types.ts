/**
 * The one database interface the rest of Bulkhead sees. PGlite (embedded) and PostgreSQL (`pg`)
 * both implement it, so every query, policy and test runs unchanged on either.
 */
export interface QueryResult<R> {
  readonly rows: R[];
  readonly rowCount: number;
}

export interface Queryable {
  query<R extends object = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
  /** Runs a script of several statements without parameters (migrations). */
  exec(script: string): Promise<void>;
}

/**
 * A connection source. `transaction` runs `fn` in BEGIN/COMMIT and rolls back on any error.
 * Statements issued on one transaction run in the order they were issued, awaited or not (on
 * PostgreSQL they are pipelined: issued together, they leave together).
 */
export interface Pool extends Queryable {
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
}

/** What a subscriber to a notification channel hears. */
export interface NotificationHandlers {
  /**
   * Called each time the subscription is (re)established. Anything notified while it was not
   * listening is lost, so a subscriber treats this as "assume you missed something".
   */
  onListening(): void;
  onNotification(payload: string): void;
  /** The connection dropped or could not be made; it is retried with backoff. */
  onDisconnected(error: Error): void;
}

export interface Subscription {
  /** Stops listening and releases the connection; nothing is called afterwards. */
  close(): Promise<void>;
}

export interface Database {
  readonly kind: 'pglite' | 'postgres';
  /** The schema owner: migrations and the named cross-workspace work (platform registry). */
  readonly owner: Pool;
  /** Where tenant transactions run; they switch to the application role before any query. */
  readonly app: Pool;
  /**
   * LISTEN on `channel` for as long as the subscription is open. PostgreSQL: a dedicated
   * connection outside the pools, reconnected with backoff whenever it drops. PGlite: in-process.
   */
  listen(channel: string, handlers: NotificationHandlers): Subscription;
  close(): Promise<void>;
}
