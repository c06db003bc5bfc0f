/**
 * PostgreSQL through `pg` pools: one for the schema owner and, when DATABASE_APP_URL is set, a
 * second one logged in as (a member of) the application role for tenant transactions.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { CorkedSocket } from './corked-socket.js';
import { unavailableAsBulkhead } from './errors.js';
import { listenPostgres } from './pg-listener.js';
import { countStatements } from './statements.js';
import type { Database, Pool, Queryable, QueryResult } from './types.js';

// Make `pg` return what PGlite returns, so code and tests never branch on the driver:
// int8 (counts, sequence numbers) as JS numbers. Values here stay far below 2^53.
const INT8_OID = 20;
function getTypeParser(oid: number, format?: 'text' | 'binary'): (value: string) => unknown {
  if (oid === INT8_OID) {
    return (value: string) => {
      const n = Number(value);
      if (!Number.isSafeInteger(n)) throw new RangeError(`int8 value ${value} exceeds the safe integer range`);
      return n;
    };
  }
  // `pg` types the oid as its own enum; any number is accepted at run time.
  const builtin = pg.types.getTypeParser as (oid: number, format: 'text' | 'binary') => (value: string) => unknown;
  return builtin(oid, format ?? 'text');
}

/**
 * Statements with parameters are prepared once per connection and reused by name: PostgreSQL
 * then parses and plans each of our (fixed) statement texts once per connection instead of on
 * every call — on the delivery path that was more of the database's work than executing them.
 * Names come from the text; past a bound (a runaway of dynamic texts) statements run unnamed.
 */
const statementNames = new Map<string, string>();
const MAX_NAMED_STATEMENTS = 2000;
function statementName(text: string): string | undefined {
  let name = statementNames.get(text);
  if (name === undefined && statementNames.size < MAX_NAMED_STATEMENTS) {
    name = `bk_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
    statementNames.set(text, name);
  }
  return name;
}

function wrap(client: pg.Pool | pg.PoolClient): Queryable {
  return {
    async query<R extends object>(text: string, params: readonly unknown[] = []): Promise<QueryResult<R>> {
      const name = params.length > 0 ? statementName(text) : undefined;
      countStatements();
      try {
        const result = await client.query<R & pg.QueryResultRow>(name === undefined ? { text, values: params as unknown[] } : { name, text, values: params as unknown[] });
        return { rows: result.rows, rowCount: result.rowCount ?? result.rows.length };
      } catch (error) {
        throw unavailableAsBulkhead(error);
      }
    },
    async exec(script: string): Promise<void> {
      // Without parameters `pg` uses the simple protocol, which accepts several statements.
      countStatements();
      try {
        await client.query(script);
      } catch (error) {
        throw unavailableAsBulkhead(error);
      }
    },
  };
}

/** BULKHEAD_PG_CONNECT_TIMEOUT_MS's default (src/config.ts); also what test pools use. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;

export interface PgPoolOptions {
  readonly max: number;
  readonly applicationName: string;
  /** How long getting a connection may take (connecting, or waiting for a free one) before it fails as `database_unavailable`. */
  readonly connectTimeoutMs: number;
}

export function createPgPool(connectionString: string, options: PgPoolOptions): Pool & { end(): Promise<void> } {
  const pool = new pg.Pool({
    connectionString,
    max: options.max,
    application_name: options.applicationName,
    // JIT off: every statement here is short OLTP work; PostgreSQL's JIT, triggered by cost
    // estimates on big tables, spent hundreds of milliseconds compiling a claim that runs in one.
    options: '-c jit=off',
    types: { getTypeParser },
    // During an outage a request fails fast (503) instead of waiting on a connection that may never come.
    connectionTimeoutMillis: options.connectTimeoutMs,
    // A server that vanished without closing the socket (host down, network cut) is noticed by
    // TCP keep-alive instead of holding the connection forever.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    // Statements issued together are sent together instead of one round trip each: a transaction's
    // BEGIN, its workspace context and its first statement leave in one write (see transaction()).
    // `pg` refuses what pipelining cannot carry (cursors, the `rows` option); nothing here uses them.
    pipeline: true,
    stream: () => new CorkedSocket(),
  });
  // An idle client losing its connection must not crash the process; the next checkout reconnects.
  pool.on('error', () => undefined);
  return {
    ...wrap(pool),
    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      let client: pg.PoolClient;
      try {
        client = await pool.connect();
      } catch (error) {
        throw unavailableAsBulkhead(error);
      }
      // A checked-out client has no listener of the pool's: when the server goes away between two
      // statements, `pg` emits 'error' on the client itself, and unheard that ends the process.
      // The statement in flight (or the next one) fails on its own; the client is discarded below.
      let lost: Error | undefined;
      const onLost = (error: Error) => {
        lost = error;
      };
      client.on('error', onLost);
      let broken: Error | undefined;
      const tx = wrap(client);
      try {
        // Pipelined: BEGIN is not awaited, so the statements `fn` issues first (the workspace
        // context, then its first query) travel in the same write. It is checked before COMMIT. A
        // failed statement inside the block aborts the transaction, so nothing queued behind it
        // runs; BEGIN itself fails only with the connection, which fails everything queued behind.
        const begun = tx.query('BEGIN');
        begun.catch(() => undefined);
        const result = await fn(tx);
        await begun;
        await tx.query('COMMIT');
        return result;
      } catch (error) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackError) {
          broken = rollbackError as Error;
        }
        throw error;
      } finally {
        client.off('error', onLost);
        // A client whose connection was lost or whose rollback failed is in an unknown state:
        // destroy it instead of reusing it (the pool opens a fresh one when needed).
        client.release(lost ?? broken);
      }
    },
    end: () => pool.end(),
  };
}

export function openPostgres(options: { url: string; appUrl?: string | undefined; poolSize: number; connectTimeoutMs?: number }): Database {
  const connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const owner = createPgPool(options.url, { max: options.poolSize, applicationName: 'bulkhead-owner', connectTimeoutMs });
  const app = options.appUrl === undefined ? owner : createPgPool(options.appUrl, { max: options.poolSize, applicationName: 'bulkhead-app', connectTimeoutMs });
  return {
    kind: 'postgres',
    owner,
    app,
    listen: (channel, handlers) => listenPostgres(options.url, channel, handlers),
    async close() {
      await owner.end();
      if (app !== owner) await app.end();
    },
  };
}
