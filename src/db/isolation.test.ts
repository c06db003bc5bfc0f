import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTenancyService } from '../tenancy/tenancy-service.js';
import { backends, type TestDatabase } from '../testing/databases.js';
import { testClock } from '../testing/app.js';
import { sqlState } from './errors.js';
import { checkIsolationInvariants, checkTenantRole } from './invariants.js';
import { sharedPlacement } from './placement.js';
import { createTenantTransactions, type WithWorkspace } from './tenant-tx.js';

describe.each(backends)('database isolation on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let database: TestDatabase;
    let withWorkspace: WithWorkspace;
    let a: string;
    let b: string;
    const ctx = { actor: { type: 'system' as const, id: 'test' } };

    const insertKey = (workspaceId: string, id: string) =>
      `INSERT INTO api_keys (workspace_id, id, name, prefix, key_hash, scopes, created_by, created_at)
       VALUES ('${workspaceId}', '${id}', 'k', 'bk_test_abcd', md5('${id}'), '{}', 'test', now())`;

    beforeAll(async () => {
      database = await backend.open();
      const placement = sharedPlacement(() => database.db);
      const txs = createTenantTransactions({ placement, appRole: database.appRole });
      withWorkspace = txs.withWorkspace;
      const tenancy = createTenancyService({ withPlatform: txs.withPlatform, runtime: testClock() });
      const tenant = await tenancy.createTenant(ctx, { name: 'T', slug: 'isolation' });
      a = (await tenancy.createWorkspace(ctx, tenant.id, { name: 'a', environment: 'production' })).id;
      b = (await tenancy.createWorkspace(ctx, tenant.id, { name: 'b', environment: 'sandbox' })).id;
      // Seed one row in each workspace through its own tenant transaction.
      await withWorkspace(a, (tx) => tx.query(insertKey(a, 'key_a')));
      await withWorkspace(b, (tx) => tx.query(insertKey(b, 'key_b')));
    });
    afterAll(async () => database.close());

    it('the schema satisfies every isolation invariant', async () => {
      expect(await checkIsolationInvariants(database.db.owner)).toEqual([]);
    });

    it('the invariant check fails on a table, key or view that breaks the rules', async () => {
      // Prove the checker can fail: build offending objects in a scratch schema, check, roll back.
      class Rollback extends Error {
        constructor(readonly found: unknown) {
          super('rollback');
        }
      }
      const violations = await database.db.owner
        .transaction(async (tx) => {
          await tx.exec(`
            CREATE SCHEMA scratch;
            CREATE TABLE scratch.leaky (workspace_id text, id text PRIMARY KEY, ref text);
            CREATE TABLE scratch.half (workspace_id text NOT NULL, id text, PRIMARY KEY (workspace_id, id));
            ALTER TABLE scratch.half ENABLE ROW LEVEL SECURITY;
            CREATE UNIQUE INDEX half_id ON scratch.half (id);
            CREATE VIEW scratch.definer AS SELECT id FROM scratch.half;`);
          throw new Rollback(await checkIsolationInvariants(tx, 'scratch'));
        })
        .catch((error: unknown) => (error as Rollback).found);
      expect(violations).toEqual(
        expect.arrayContaining([
          { object: 'leaky', rule: 'row-level security is not enabled' },
          { object: 'leaky', rule: 'workspace_id is nullable' },
          { object: 'leaky.leaky_pkey', rule: 'primary key does not include workspace_id' },
          { object: 'half', rule: 'row-level security is not forced' },
          { object: 'half', rule: 'has no row-level security policy' },
          { object: 'half.half_id', rule: 'unique index does not include workspace_id' },
          { object: 'definer', rule: 'view is not security_invoker' },
        ]),
      );
    });

    it('tenant transactions run as a role that is not superuser, not BYPASSRLS and owns nothing', async () => {
      expect(await withWorkspace(a, (tx) => checkTenantRole(tx))).toEqual([]);
      // And the check does flag the owner, so it can fail.
      expect((await checkTenantRole(database.db.owner)).length).toBeGreaterThan(0);
    });

    it("a raw query in workspace A's transaction cannot see B's rows, even asking for them by id", async () => {
      const rows = await withWorkspace(a, async (tx) => (await tx.query<{ id: string }>('SELECT id FROM api_keys')).rows);
      expect(rows.map((r) => r.id)).toEqual(['key_a']);
      const asked = await withWorkspace(a, async (tx) => (await tx.query('SELECT id FROM api_keys WHERE workspace_id = $1', [b])).rows);
      expect(asked).toEqual([]);
    });

    it("a raw insert of a row for workspace B inside A's transaction is refused by the policy", async () => {
      const error = await withWorkspace(a, (tx) => tx.query(insertKey(b, 'key_smuggled'))).catch((e: unknown) => e);
      expect(sqlState(error)).toBe('42501');
      const seen = await withWorkspace(b, async (tx) => (await tx.query('SELECT id FROM api_keys')).rows);
      expect(seen).toEqual([{ id: 'key_b' }]);
    });

    it("a raw update or move of B's rows from A's transaction touches nothing", async () => {
      const updated = await withWorkspace(a, (tx) => tx.query("UPDATE api_keys SET name = 'pwned' WHERE id = 'key_b'"));
      expect(updated.rowCount).toBe(0);
      const moved = await withWorkspace(a, (tx) => tx.query(`UPDATE api_keys SET workspace_id = '${b}' WHERE id = 'key_a'`)).catch((e: unknown) => e);
      expect(sqlState(moved)).toBe('42501');
    });

    it('a query as the application role without workspace context is an error, not an empty result', async () => {
      for (let attempt = 0; attempt < 2; attempt++) {
        // Second round: the pooled session has had the setting before (it reverts to '' not NULL).
        const error = await database.db.app
          .transaction(async (tx) => {
            await tx.query("SELECT set_config('role', $1, true)", [database.appRole]);
            return tx.query('SELECT id FROM api_keys');
          })
          .catch((e: unknown) => e);
        expect(sqlState(error)).toBe('BK001');
        await withWorkspace(a, (tx) => tx.query('SELECT 1'));
      }
    });

    it('when setting the context fails, the statements issued behind it (pipelined on PostgreSQL) fail and nothing commits', async () => {
      // A role that does not exist makes set_config fail; the INSERT was already issued, unawaited.
      const broken = createTenantTransactions({ placement: sharedPlacement(() => database.db), appRole: 'no_such_role' }).withWorkspace;
      const failed = await broken(a, async (tx) => {
        const insert = tx.query(insertKey(a, 'key_pipelined'));
        await insert;
        return 'committed';
      }).catch((error: unknown) => error);
      expect(failed).not.toBe('committed');
      // The context's own error is reported (unknown role), not the aborted-transaction echo.
      expect((failed as Error).message).toMatch(/no_such_role/);
      const left = await withWorkspace(a, async (tx) => (await tx.query("SELECT id FROM api_keys WHERE id = 'key_pipelined'")).rows);
      expect(left).toEqual([]);
    });

    it('withWorkspace refuses an id that is not a workspace id', async () => {
      await expect(withWorkspace("ws_x' OR '1'='1", (tx) => tx.query('SELECT 1'))).rejects.toMatchObject({ code: 'workspace_context_missing' });
    });

    it('the application role cannot touch the platform registry', async () => {
      const error = await withWorkspace(a, (tx) => tx.query('SELECT * FROM tenants')).catch((e: unknown) => e);
      expect(sqlState(error)).toBe('42501');
    });

    it('the application role cannot update or delete audit entries', async () => {
      await withWorkspace(a, async (tx) => {
        await tx.query(`INSERT INTO audit_log (workspace_id, seq, id, occurred_at, actor_type, actor_id, action, outcome, details, prev_hash, hash)
                        VALUES ($1, 1, 'aud_x', now(), 'system', 't', 'x', 'success', '{}', 'p', 'h')`, [a]);
      });
      const update = await withWorkspace(a, (tx) => tx.query("UPDATE audit_log SET action = 'y'")).catch((e: unknown) => e);
      const remove = await withWorkspace(a, (tx) => tx.query('DELETE FROM audit_log')).catch((e: unknown) => e);
      expect(sqlState(update)).toBe('42501');
      expect(sqlState(remove)).toBe('42501');
    });
  });
});
