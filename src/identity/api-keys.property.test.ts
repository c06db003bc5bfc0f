/**
 * Random sequences of mint, rotate, revoke and list, by random keys of one workspace, through the
 * real routes on a real database: no key ever ends up with a scope, CIDR or expiry wider than the
 * key that made it, a key lists exactly the keys its scopes cover, and a refused request changes
 * nothing (no key row, no audit entry).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../testing/app.js';
import { cidrsWithin } from '../testing/cidr-oracle.js';
import { backends } from '../testing/databases.js';
import { allScopes, hasScope, type Scope } from './scopes.js';

/** CIDRs a key may be given, each with an address inside it to call from. */
const pool: Record<string, string> = {
  '10.0.0.0/8': '10.1.2.3',
  '10.1.0.0/16': '10.1.2.3',
  '10.1.2.3/32': '10.1.2.3',
  '10.2.0.0/16': '10.2.0.1',
  '::ffff:10.1.0.0/112': '10.1.2.3',
  '2001:db8::/32': '2001:db8::1',
  '2001:db8:1::/48': '2001:db8:1::1',
  '::/0': '2001:db8::1',
};
const OUTSIDE = '192.0.2.1';
const HOUR = 3_600_000;

const scopes = fc.subarray([...allScopes], { minLength: 1 });
const manager = scopes.map((s) => [...new Set<string>([...s, 'keys:manage'])]);
const cidrs = fc.subarray(Object.keys(pool), { maxLength: 2 });
const expiryHours = fc.integer({ min: 1, max: 4 });
const index = fc.nat(50);
const command = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant('mint' as const), by: index, scopes, cidrs: fc.option(cidrs, { nil: undefined }), hours: fc.option(expiryHours, { nil: undefined }), inside: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('rotate' as const), by: index, target: index, grace: fc.constantFrom(0, 600) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('revoke' as const), by: index, target: index }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('list' as const), by: index }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('advance' as const), hours: fc.constantFrom(1, 2) }) },
);
const roots = fc.array(fc.record({ scopes: manager, cidrs, hours: fc.option(expiryHours, { nil: undefined }) }), { minLength: 1, maxLength: 2 });

interface Row {
  id: string;
  scopes: string[];
  allowed_cidrs: string[];
  expires_at: Date | null;
  revoked_at: Date | null;
  rotated_from: string | null;
  created_by: string;
}
interface Grant {
  scopes: readonly string[];
  allowedCidrs: readonly string[];
  expiresAt: Date | null;
}
const grantOf = (row: Row): Grant => ({ scopes: row.scopes, allowedCidrs: row.allowed_cidrs, expiresAt: row.expires_at });
const covers = (parent: readonly string[], scope: string) => (scope === '*' ? parent.includes('*') : hasScope(parent, scope as Scope));

/** The rule, restated independently of src/identity/narrowing.ts. */
function wider(child: Grant, parent: Grant): string[] {
  const found: string[] = [];
  if (!child.scopes.every((s) => covers(parent.scopes, s))) found.push('scopes');
  if (!cidrsWithin(child.allowedCidrs, parent.allowedCidrs)) found.push('allowedCidrs');
  if (parent.expiresAt !== null && (child.expiresAt === null || child.expiresAt > parent.expiresAt)) found.push('expiresAt');
  return found;
}

// PGlite only: the rule is in the service, not the engine, and both engines run the example tests.
describe.each(backends.filter((b) => b.name === 'pglite'))('API key delegation on $name (property)', (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    // Expired and revoked callers answer 401 many times from the same address; the auth-failure
    // limiter is not what this test is about.
    t = await startTestApp(backend, { config: { authFailuresPerMinute: 1_000_000 } });
  });
  afterAll(async () => t.close());

  it('no key ever ends up wider than the key that made it, and a refused request changes nothing', async () => {
    const seen = { minted: 0, rotated: 0, revoked: 0, listed: 0, narrowingRefused: 0, hidden: 0 };
    await fc.assert(
      fc.asyncProperty(roots, fc.array(command, { minLength: 4, maxLength: 14 }), async (rootSpecs, commands) => {
        const { workspaceId, keyId, key } = await t.workspaceWithKey(['*']);
        const rows = async () =>
          (await t.database.db.owner.query<Row>('SELECT id, scopes, allowed_cidrs, expires_at, revoked_at, rotated_from, created_by FROM api_keys WHERE workspace_id = $1 ORDER BY id', [workspaceId])).rows;
        const auditCount = async () => (await t.database.db.owner.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_log WHERE workspace_id = $1', [workspaceId])).rows[0]?.n;
        const rowOf = async (id: string) => (await rows()).find((r) => r.id === id);

        // Every key the model knows, with its secret and the grant of whatever made it (null: admin).
        const keys: { id: string; secret: string; makerGrant: Grant | null }[] = [{ id: keyId, secret: key, makerGrant: null }];
        for (const spec of rootSpecs) {
          const res = await t.admin('POST', `/v1/workspaces/${workspaceId}/api-keys`, {
            name: 'root', scopes: spec.scopes, allowedCidrs: spec.cidrs,
            ...(spec.hours === undefined ? {} : { expiresAt: new Date(t.clock.now().getTime() + spec.hours * HOUR).toISOString() }),
          });
          expect(res.statusCode).toBe(201);
          const body = res.json<{ id: string; key: string }>();
          keys.push({ id: body.id, secret: body.key, makerGrant: null });
        }
        const pick = (i: number) => {
          const k = keys[i % keys.length];
          if (!k) throw new Error('the model always holds the workspace key');
          return k;
        };
        const addressFor = (row: Row | undefined, inside: boolean) => {
          const first = row?.allowed_cidrs[0];
          return first === undefined ? '127.0.0.1' : inside ? (pool[first] ?? OUTSIDE) : OUTSIDE;
        };

        for (const c of commands) {
          if (c.op === 'advance') {
            t.clock.advance(c.hours * HOUR);
            continue;
          }
          const caller = pick(c.by);
          const callerRow = await rowOf(caller.id);
          const before = { rows: await rows(), audit: await auditCount() };
          const remoteAddress = addressFor(callerRow, c.op !== 'mint' || c.inside);
          const send = (method: 'GET' | 'POST' | 'DELETE', url: string, json?: unknown) => t.request({ method, url, token: caller.secret, remoteAddress, ...(json === undefined ? {} : { json }) });

          let res;
          if (c.op === 'mint') {
            res = await send('POST', '/v1/api-keys', {
              name: 'child', scopes: c.scopes,
              ...(c.cidrs === undefined ? {} : { allowedCidrs: c.cidrs }),
              ...(c.hours === undefined ? {} : { expiresAt: new Date(t.clock.now().getTime() + c.hours * HOUR).toISOString() }),
            });
          } else if (c.op === 'rotate') {
            res = await send('POST', `/v1/api-keys/${pick(c.target).id}/rotate`, { gracePeriodSeconds: c.grace });
          } else if (c.op === 'revoke') {
            res = await send('DELETE', `/v1/api-keys/${pick(c.target).id}`);
          } else {
            res = await send('GET', '/v1/api-keys?limit=200');
          }
          const status = res.statusCode;
          // Only refusals the rules name; never a 500.
          expect([200, 201, 204, 401, 403, 404, 409]).toContain(status);
          if (status >= 400) {
            const code = res.json<{ code: string }>().code;
            if (code === 'restriction_exceeds_parent') seen.narrowingRefused++;
            if (status === 404) seen.hidden++;
            expect({ rows: await rows(), audit: await auditCount() }).toEqual(before);
            continue;
          }
          if (!callerRow) throw new Error('a request succeeded for a key with no row');
          const callerGrant = grantOf(callerRow);

          if (c.op === 'mint' || c.op === 'rotate') {
            const made = res.json<{ id: string; key: string }>();
            const row = await rowOf(made.id);
            if (!row) throw new Error('no row for the made key');
            expect(wider(grantOf(row), callerGrant)).toEqual([]);
            if (c.op === 'rotate') {
              const old = before.rows.find((r) => r.id === row.rotated_from);
              expect(old && grantOf(row)).toEqual(old && grantOf(old));
              seen.rotated++;
            } else {
              seen.minted++;
            }
            keys.push({ id: made.id, secret: made.key, makerGrant: callerGrant });
          } else if (c.op === 'list') {
            const listed = res.json<{ data: { id: string }[] }>().data.map((k) => k.id);
            const expected = before.rows.filter((r) => r.scopes.every((s) => covers(callerGrant.scopes, s))).map((r) => r.id);
            expect(listed).toEqual(expected);
            seen.listed++;
          } else {
            const target = before.rows.find((r) => r.id === pick(c.target).id);
            expect(target?.scopes.every((s) => covers(callerGrant.scopes, s))).toBe(true);
            seen.revoked++;
          }
        }

        // Nothing done afterwards (rotation shortens the old key, never lengthens) widened a key.
        const final = await rows();
        for (const k of keys) {
          const row = final.find((r) => r.id === k.id);
          if (row && k.makerGrant) expect({ id: k.id, wider: wider(grantOf(row), k.makerGrant) }).toEqual({ id: k.id, wider: [] });
        }
      }),
      { numRuns: 30 },
    );
    // The run exercised what it claims to (a property that never reaches a branch proves nothing there).
    expect(Object.values(seen).every((n) => n > 0)).toBe(true);
  }, 60_000);
});
