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

export function translateDbError(error: unknown): unknown {
  if (sqlState(error) === NO_WORKSPACE_CONTEXT) {
    return new BulkheadError('workspace_context_missing', 'query ran without a workspace context', { cause: error });
  }
  return error;
}
