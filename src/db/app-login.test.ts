import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends, type TestDatabase } from '../testing/databases.js';
import { checkTenantRole } from './invariants.js';
import { sharedPlacement } from './placement.js';
import { openPostgres } from './postgres.js';
import { createTenantTransactions } from './tenant-tx.js';
import type { Database } from './types.js';

// PostgreSQL only: PGlite has a single superuser login, so it always uses SET LOCAL ROLE.
const postgres = backends.find((b) => b.name === 'postgres');

describe.skipIf(postgres?.unavailable !== null)('a separate PostgreSQL login for tenant transactions (DATABASE_APP_URL)', () => {
  let database: TestDatabase;
  let split: Database;
  const login = `bk_login_${randomBytes(4).toString('hex')}`;
  const password = randomBytes(12).toString('hex');

  const ownerExec = async (sql: string) => {
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };

  beforeAll(async () => {
    if (!postgres) throw new Error('unreachable');
    database = await postgres.open();
    // The operator's setup, as documented: a login that is a member of the application role.
    await ownerExec(`CREATE ROLE ${login} LOGIN PASSWORD '${password}' NOSUPERUSER NOBYPASSRLS NOINHERIT IN ROLE ${database.appRole}`);
    const appUrl = new URL(database.url ?? '');
    appUrl.username = login;
    appUrl.password = password;
    split = openPostgres({ url: database.url ?? '', appUrl: appUrl.toString(), poolSize: 2 });
  });

  afterAll(async () => {
    await split.close();
    await database.close();
    const admin = new pg.Client({ connectionString: new URL('/postgres', database.url).toString() });
    await admin.connect();
    await admin.query(`DROP ROLE IF EXISTS ${login}`);
    await admin.end();
  });

  it('runs tenant transactions on the application login, as the application role, with RLS in force', async () => {
    const { withWorkspace } = createTenantTransactions({ placement: sharedPlacement(() => split), appRole: database.appRole });
    const ws = 'ws_00000000000000000000000000';
    const who = await withWorkspace(ws, async (tx) => (await tx.query<{ session_user: string; current_user: string }>('SELECT session_user, current_user')).rows[0]);
    expect(who).toEqual({ session_user: login, current_user: database.appRole });
    expect(await withWorkspace(ws, (tx) => checkTenantRole(tx))).toEqual([]);
    // The login itself holds no privileges: outside the role switch it cannot read workspace data.
    const privileges = await split.app.query<{ read: boolean }>("SELECT has_table_privilege('api_keys', 'SELECT') AS read");
    expect(privileges.rows).toEqual([{ read: false }]);
    await expect(split.app.query('SELECT * FROM api_keys')).rejects.toHaveProperty('code');
  });
});
