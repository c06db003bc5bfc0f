import { BulkheadError } from '../errors.js';

/** SQLSTATE raised by `bulkhead_current_workspace()` when a query runs without workspace context. */
export const NO_WORKSPACE_CONTEXT = 'BK001';
export const UNIQUE_VIOLATION = '23505';
export const FOREIGN_KEY_VIOLATION = '23503';

export function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** `.catch(onUniqueViolation(code, message))`: a unique-key clash becomes that error; anything else passes through. */
export function onUniqueViolation(code: 'slug_taken' | 'name_taken', message: string) {
  return (error: unknown): never => {
    if (sqlState(error) === UNIQUE_VIOLATION) throw new BulkheadError(code, message);
    throw error;
  };
}

/** Seconds a client is asked to wait (Retry-After) when the database is unavailable: long enough for a restart to begin, short enough to notice its end. */
export const DATABASE_RETRY_AFTER_SECONDS = 2;

/**
 * SQLSTATEs meaning "the server cannot serve this connection now": class 08 (connection
 * exception), 57P01/57P02/57P03 (administrator or crash shutdown, cannot connect now: starting
 * up or shutting down), 53300 (too many connections).
 */
const UNAVAILABLE_STATE = /^(08...|57P0[123]|53300)$/;
/** Socket errors on the way to the server (Node's `code`). */
const UNAVAILABLE_SOCKET = new Set(['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'EHOSTDOWN', 'ENETUNREACH', 'ENETDOWN', 'ENOTFOUND', 'EAI_AGAIN']);
/**
 * `pg` and `pg-pool` report a lost or unobtainable connection with plain Errors and no code;
 * their messages are the only signal (pg 8: client.js and pg-pool index.js).
 */
const UNAVAILABLE_MESSAGE = /^(Connection terminated( unexpectedly| due to connection timeout)?|Client has encountered a connection error and is not queryable|timeout exceeded when trying to connect|timeout expired)$/;

/**
 * Whether `error` says the database is unreachable rather than that a statement is wrong: the
 * one classification used by the HTTP edge (503 `database_unavailable`), the queue workers and
 * the background jobs (a warning and a back-off, never a crash). Follows `cause` chains and the
 * member errors of an AggregateError (a host name with several addresses, all refused).
 */
export function isDatabaseUnavailable(error: unknown, depth = 0): boolean {
  if (depth > 5 || typeof error !== 'object' || error === null) return false;
  if (error instanceof BulkheadError) return error.code === 'database_unavailable';
  const code = sqlState(error);
  if (code !== undefined && (UNAVAILABLE_STATE.test(code) || UNAVAILABLE_SOCKET.has(code))) return true;
  if (error instanceof Error && UNAVAILABLE_MESSAGE.test(error.message)) return true;
  if (error instanceof AggregateError && error.errors.length > 0 && error.errors.every((e) => isDatabaseUnavailable(e, depth + 1))) return true;
  return error instanceof Error && error.cause !== undefined && isDatabaseUnavailable(error.cause, depth + 1);
}

export function databaseUnavailable(cause: unknown): BulkheadError {
  return new BulkheadError('database_unavailable', 'the database is unavailable; retry shortly', { cause, details: { retryAfter: DATABASE_RETRY_AFTER_SECONDS } });
}

/** The driver's boundary (db/postgres.ts): a lost or unobtainable connection becomes `database_unavailable`; every other error passes unchanged. */
export function unavailableAsBulkhead(error: unknown): unknown {
  return !(error instanceof BulkheadError) && isDatabaseUnavailable(error) ? databaseUnavailable(error) : error;
}

export function translateDbError(error: unknown): unknown {
  if (error instanceof BulkheadError) return error;
  if (sqlState(error) === NO_WORKSPACE_CONTEXT) {
    return new BulkheadError('workspace_context_missing', 'query ran without a workspace context', { cause: error });
  }
  return unavailableAsBulkhead(error);
}
