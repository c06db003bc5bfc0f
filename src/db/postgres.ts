/**
 * PostgreSQL through `pg` pools: one for the schema owner and, when DATABASE_APP_URL is set, a
 * second one logged in as (a member of) the application role for tenant transactions.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { listenPostgres } from './pg-listener.js';
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
      const result = await client.query<R & pg.QueryResultRow>(name === undefined ? { text, values: params as unknown[] } : { name, text, values: params as unknown[] });
      return { rows: result.rows, rowCount: result.rowCount ?? result.rows.length };
    },
    async exec(script: string): Promise<void> {
      // Without parameters `pg` uses the simple protocol, which accepts several statements.
      await client.query(script);
    },
  };
}

export function createPgPool(connectionString: string, max: number, applicationName: string): Pool & { end(): Promise<void> } {
  // JIT off: every statement here is short OLTP work; PostgreSQL's JIT, triggered by cost
  // estimates on big tables, spent hundreds of milliseconds compiling a claim that runs in one.
  const pool = new pg.Pool({ connectionString, max, application_name: applicationName, options: '-c jit=off', types: { getTypeParser } });
  // An idle client losing its connection must not crash the process; the next checkout reconnects.
  pool.on('error', () => undefined);
  return {
    ...wrap(pool),
    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      const client = await pool.connect();
      let broken: Error | undefined;
      try {
        await client.query('BEGIN');
        const result = await fn(wrap(client));
        await client.query('COMMIT');
        return result;
      } catch (error) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackError) {
          broken = rollbackError as Error;
        }
        throw error;
      } finally {
        // A client whose rollback failed is in an unknown state: destroy it instead of reusing it.
        client.release(broken);
      }
    },
    end: () => pool.end(),
  };
}

export function openPostgres(options: { url: string; appUrl?: string | undefined; poolSize: number }): Database {
  const owner = createPgPool(options.url, options.poolSize, 'bulkhead-owner');
  const app = options.appUrl === undefined ? owner : createPgPool(options.appUrl, options.poolSize, 'bulkhead-app');
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
