/** Opaque cursors: the last key of the previous page, base64url-encoded so clients treat it as a token. */
import { BulkheadError } from './errors.js';

export interface Page<T> {
  readonly data: T[];
  readonly nextCursor: string | null;
}

export function encodeCursor(key: string | number): string {
  return Buffer.from(String(key), 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string | undefined, pattern: RegExp): string | undefined {
  if (cursor === undefined) return undefined;
  const key = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!pattern.test(key)) throw new BulkheadError('invalid_cursor', 'the cursor is not one this endpoint issued');
  return key;
}

/** `rows` was fetched with `limit + 1` so we know whether another page exists. */
export function toPage<R, T>(rows: readonly R[], limit: number, key: (row: R) => string | number, map: (row: R) => T): Page<T> {
  const pageRows = rows.slice(0, limit);
  const last = pageRows.at(-1);
  return { data: pageRows.map(map), nextCursor: rows.length > limit && last !== undefined ? encodeCursor(key(last)) : null };
}
