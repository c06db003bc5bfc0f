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

/** A connection source. `transaction` runs `fn` in BEGIN/COMMIT and rolls back on any error. */
export interface Pool extends Queryable {
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
}

export interface Database {
  readonly kind: 'pglite' | 'postgres';
  /** The schema owner: migrations and the named cross-workspace work (platform registry). */
  readonly owner: Pool;
  /** Where tenant transactions run; they switch to the application role before any query. */
  readonly app: Pool;
  close(): Promise<void>;
}
