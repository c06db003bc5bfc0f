/**
 * Once per test run: build migrated template databases that every test file clones, so each file
 * gets its own database in well under a second (graphile-worker's template trick).
 *
 *  - PGlite: a migrated data dir, dumped to a tarball the files load.
 *  - PostgreSQL: a migrated template database and a run-specific application role, dropped at
 *    the end. Absent PostgreSQL fails the run under CI (or BULKHEAD_TEST_REQUIRE_POSTGRES=1) and
 *    otherwise prints a loud warning: the PostgreSQL suites then report themselves as skipped.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { migrate } from '../db/migrate.js';
import { openPGlite } from '../db/pglite.js';
import { openPostgres } from '../db/postgres.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pgliteTemplate: string;
    postgres: { adminUrl: string; template: string; appRole: string } | null;
    postgresMissingReason: string | null;
  }
}

export const PGLITE_APP_ROLE = 'bulkhead_app';

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = await mkdtemp(path.join(tmpdir(), 'bulkhead-test-'));

  const lite = await openPGlite();
  await migrate(lite, PGLITE_APP_ROLE);
  const dump = await lite.pglite.dumpDataDir('none');
  await lite.close();
  const templateFile = path.join(dir, 'pglite-template.tar');
  await writeFile(templateFile, Buffer.from(await dump.arrayBuffer()));
  project.provide('pgliteTemplate', templateFile);

  const adminUrl = process.env['BULKHEAD_TEST_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const required = process.env['CI'] === 'true' || process.env['BULKHEAD_TEST_REQUIRE_POSTGRES'] === '1';
  const runId = randomBytes(4).toString('hex');
  const template = `bk_tpl_${runId}`;
  const appRole = `bk_app_${runId}`;

  const admin = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 3000 });
  try {
    await admin.connect();
  } catch (error) {
    const reason = `PostgreSQL is not reachable at ${adminUrl} (${(error as Error).message})`;
    if (required) throw new Error(`${reason}; the PostgreSQL suites are required here`, { cause: error });
    process.stderr.write(`\n${'!'.repeat(78)}\n!! ${reason}\n!! The PostgreSQL suites are SKIPPED. Start PostgreSQL or set BULKHEAD_TEST_DATABASE_URL.\n${'!'.repeat(78)}\n\n`);
    project.provide('postgres', null);
    project.provide('postgresMissingReason', reason);
    return async () => rm(dir, { recursive: true, force: true });
  }

  await admin.query(`CREATE DATABASE ${template}`);
  const db = openPostgres({ url: withDatabase(adminUrl, template), poolSize: 2 });
  try {
    await migrate(db, appRole);
  } finally {
    await db.close();
  }
  project.provide('postgres', { adminUrl, template, appRole });
  project.provide('postgresMissingReason', null);

  const cleanup = async () => {
    // Test files drop their own databases; sweep any a crashed file left behind.
    const { rows } = await admin.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datname LIKE $1", [`bk_t_${runId}_%`]);
    for (const { datname } of rows) await admin.query(`DROP DATABASE IF EXISTS ${datname} WITH (FORCE)`);
    await admin.query(`DROP DATABASE IF EXISTS ${template} WITH (FORCE)`);
    await admin.query(`DROP ROLE IF EXISTS ${appRole}`);
    await admin.end();
  };
  return async () => {
    await cleanup();
    await rm(dir, { recursive: true, force: true });
  };
}
