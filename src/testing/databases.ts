/**
 * Per-file test databases on both engines. `backends` drives `describe.each`, so every suite that
 * touches the database runs on PGlite and on PostgreSQL with the same assertions.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { inject } from 'vitest';
import { openPGlite } from '../db/pglite.js';
import { openPostgres } from '../db/postgres.js';
import type { Database } from '../db/types.js';

export interface TestDatabase {
  readonly db: Database;
  readonly appRole: string;
  /** A connection string for the database (PostgreSQL only): for tests that start other processes. */
  readonly url: string | undefined;
  close(): Promise<void>;
}

export interface Backend {
  readonly name: 'pglite' | 'postgres';
  /** Why the backend cannot run here (the suite is then skipped, loudly), or null. */
  readonly unavailable: string | null;
  open(): Promise<TestDatabase>;
}

const PGLITE_APP_ROLE = 'bulkhead_app';

const pglite: Backend = {
  name: 'pglite',
  unavailable: null,
  async open() {
    const tarball = await readFile(inject('pgliteTemplate'));
    const db = await openPGlite({ loadDataDir: new Blob([tarball]) });
    return { db, appRole: PGLITE_APP_ROLE, url: undefined, close: () => db.close() };
  },
};

function urlFor(base: string, database: string): string {
  const u = new URL(base);
  u.pathname = `/${database}`;
  return u.toString();
}

const postgres: Backend = {
  name: 'postgres',
  unavailable: inject('postgresMissingReason'),
  async open() {
    const settings = inject('postgres');
    if (!settings) throw new Error('PostgreSQL is not available');
    const runId = settings.template.slice('bk_tpl_'.length);
    const name = `bk_t_${runId}_${randomBytes(5).toString('hex')}`;
    const admin = new pg.Client({ connectionString: settings.adminUrl });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE ${name} TEMPLATE ${settings.template}`);
    } finally {
      await admin.end();
    }
    const url = urlFor(settings.adminUrl, name);
    const db = openPostgres({ url, poolSize: 5 });
    return {
      db,
      appRole: settings.appRole,
      url,
      async close() {
        await db.close();
        const dropper = new pg.Client({ connectionString: settings.adminUrl });
        await dropper.connect();
        try {
          await dropper.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        } finally {
          await dropper.end();
        }
      },
    };
  },
};

export const backends: readonly Backend[] = [pglite, postgres];
