import type { QueryResult } from './types.js';

/** The single row a statement must return (INSERT/UPDATE ... RETURNING on a row we just locked). */
export function onlyRow<R>(result: QueryResult<R>): R {
  const row = result.rows[0];
  if (row === undefined) throw new Error('expected the statement to return a row');
  return row;
}
