/**
 * Statements this process has sent to its databases, counted where every statement passes (the
 * drivers' wrappers in postgres.ts and pglite.ts; BEGIN and COMMIT included). `/metrics` shows it
 * as `bulkhead_db_statements_total`, and the e2e benchmark divides it by what was delivered —
 * statements per delivery without `pg_stat_statements`, which needs a server restart to load.
 */
let sent = 0;

export function countStatements(n = 1): void {
  sent += n;
}

export const statementsSent = (): number => sent;
