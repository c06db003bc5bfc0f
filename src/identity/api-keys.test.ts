import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import { formatApiKey } from './api-key-format.js';

describe.each(backends)('API keys on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startTestApp(backend);
    });
    afterAll(async () => t.close());

    const get = (token: string | undefined, url: string, remoteAddress?: string) =>
      t.request({ method: 'GET', url, token, ...(remoteAddress ? { remoteAddress } : {}) });

    it('is shown once, with bk_live_ in production and bk_test_ elsewhere, and stored only as an HMAC', async () => {
      const live = await t.workspaceWithKey(['keys:manage']);
      const test = await t.workspaceWithKey(['keys:manage'], { environment: 'sandbox' });
      expect(live.key).toMatch(/^bk_live_[0-9A-Za-z]{49}$/);
      expect(test.key).toMatch(/^bk_test_[0-9A-Za-z]{49}$/);

      const one = await get(live.key, `/v1/api-keys/${live.keyId}`);
      const list = await get(live.key, '/v1/api-keys');
      expect(one.statusCode).toBe(200);
      expect(one.body).not.toContain(live.key);
      expect(list.body).not.toContain(live.key);
      expect(one.json()).not.toHaveProperty('key');

      const { rows } = await t.database.db.owner.query('SELECT * FROM api_keys WHERE id = $1', [live.keyId]);
      const stored = JSON.stringify(rows);
      expect(rows).toHaveLength(1);
      expect(stored).not.toContain(live.key);
      expect(stored).not.toContain(live.key.slice(12, 40));
    });

    it('refuses bad credentials with a distinct code for each reason', async () => {
      const { key, keyId } = await t.workspaceWithKey(['keys:manage']);
      const flipped = key.slice(0, -1) + (key.endsWith('A') ? 'B' : 'A');
      const unknown = formatApiKey('live', Buffer.alloc(32, 1));
      const cases: [string | undefined, string, number][] = [
        [undefined, 'unauthenticated', 401],
        ['not-a-key', 'api_key_malformed', 401],
        [flipped, 'api_key_checksum_invalid', 401],
        [unknown, 'api_key_unknown', 401],
      ];
      for (const [token, code, status] of cases) {
        const res = await get(token, '/v1/api-keys');
        expect({ token, status: res.statusCode, code: res.json<{ code: string }>().code }).toEqual({ token, status, code });
        expect(res.headers['content-type']).toContain('application/problem+json');
      }
      const scoped = await t.workspaceWithKey(['events:read']);
      const noScope = await get(scoped.key, '/v1/api-keys');
      expect([noScope.statusCode, noScope.json<{ code: string }>().code]).toEqual([403, 'insufficient_scope']);

      await t.request({ method: 'DELETE', url: `/v1/api-keys/${keyId}`, token: key });
      const revoked = await get(key, '/v1/api-keys');
      expect([revoked.statusCode, revoked.json<{ code: string }>().code]).toEqual([401, 'api_key_revoked']);
    });

    it('refuses an expired key and a key used from outside its allowed CIDRs', async () => {
      const { workspaceId } = await t.workspaceWithKey(['*']);
      const expiring = await t.admin('POST', `/v1/workspaces/${workspaceId}/api-keys`, {
        name: 'short', scopes: ['keys:manage'], expiresAt: new Date(t.clock.now().getTime() + 60_000).toISOString(),
      });
      const short = expiring.json<{ key: string }>().key;
      expect((await get(short, '/v1/api-keys')).statusCode).toBe(200);
      t.clock.advance(61_000);
      const late = await get(short, '/v1/api-keys');
      expect([late.statusCode, late.json<{ code: string }>().code]).toEqual([401, 'api_key_expired']);

      const fenced = await t.workspaceWithKey(['keys:manage'], { allowedCidrs: ['203.0.113.0/24', '2001:db8::/32'] });
      expect((await get(fenced.key, '/v1/api-keys', '203.0.113.9')).statusCode).toBe(200);
      expect((await get(fenced.key, '/v1/api-keys', '::ffff:203.0.113.9')).statusCode).toBe(200);
      expect((await get(fenced.key, '/v1/api-keys', '2001:db8::1')).statusCode).toBe(200);
      const outside = await get(fenced.key, '/v1/api-keys', '198.51.100.1');
      expect([outside.statusCode, outside.json<{ code: string }>().code]).toEqual([403, 'ip_not_allowed']);
    });

    it('rotation keeps the old key working until the grace period ends, and not after', async () => {
      const { key, keyId } = await t.workspaceWithKey(['keys:manage']);
      const rotated = await t.request({ method: 'POST', url: `/v1/api-keys/${keyId}/rotate`, token: key, json: { gracePeriodSeconds: 600 } });
      expect(rotated.statusCode).toBe(201);
      const next = rotated.json<{ key: string; id: string; rotatedFrom: string }>();
      expect(next.rotatedFrom).toBe(keyId);
      t.clock.advance(599_000);
      expect((await get(key, '/v1/api-keys')).statusCode).toBe(200);
      expect((await get(next.key, '/v1/api-keys')).statusCode).toBe(200);
      t.clock.advance(2_000);
      const after = await get(key, '/v1/api-keys');
      expect([after.statusCode, after.json<{ code: string }>().code]).toEqual([401, 'api_key_expired']);
      expect((await get(next.key, '/v1/api-keys')).statusCode).toBe(200);
      // An expired key cannot be rotated again.
      const again = await t.request({ method: 'POST', url: `/v1/api-keys/${keyId}/rotate`, token: next.key, json: {} });
      expect([again.statusCode, again.json<{ code: string }>().code]).toEqual([409, 'conflict']);
    });

    it('a key cannot mint a key with scopes it does not hold, and nothing is written', async () => {
      const { key } = await t.workspaceWithKey(['keys:manage', 'events:write']);
      const before = await get(key, '/v1/api-keys');
      for (const scopes of [['*'], ['audit:read'], ['events:write', 'connections:read']]) {
        const res = await t.request({ method: 'POST', url: '/v1/api-keys', token: key, json: { name: 'x', scopes } });
        expect([res.statusCode, res.json<{ code: string }>().code]).toEqual([403, 'insufficient_scope']);
      }
      const ok = await t.request({ method: 'POST', url: '/v1/api-keys', token: key, json: { name: 'reader', scopes: ['events:read'] } });
      expect(ok.statusCode).toBe(201);
      const after = await get(key, '/v1/api-keys');
      expect(after.json<{ data: unknown[] }>().data.length).toBe(before.json<{ data: unknown[] }>().data.length + 1);
    });

    /** A key minted by the admin token into a workspace (unrestricted by any other key). */
    const adminKey = async (workspaceId: string, body: Record<string, unknown>) => {
      const res = await t.admin('POST', `/v1/workspaces/${workspaceId}/api-keys`, { name: 'k', ...body });
      expect(res.statusCode).toBe(201);
      return res.json<{ id: string; key: string; expiresAt: string | null; allowedCidrs: string[] }>();
    };
    const rowsOf = async (workspaceId: string) =>
      (await t.database.db.owner.query('SELECT id, scopes, allowed_cidrs, expires_at, revoked_at FROM api_keys WHERE workspace_id = $1 ORDER BY id', [workspaceId])).rows;
    const strip = (body: Record<string, unknown>) => ({ ...body, requestId: undefined });

    it('a keys:manage key cannot see, rotate or revoke a key with wider scopes: 404 as for a missing key, and nothing changes', async () => {
      const owner = await t.workspaceWithKey(['*']);
      const manager = await adminKey(owner.workspaceId, { scopes: ['keys:manage', 'events:write'] });
      const partly = await adminKey(owner.workspaceId, { scopes: ['events:read', 'audit:read'] });
      const narrower = await adminKey(owner.workspaceId, { scopes: ['events:read'] });
      const before = await rowsOf(owner.workspaceId);
      const missing = 'key_00000000000000000000000000';

      const list = await get(manager.key, '/v1/api-keys?limit=200');
      expect(list.json<{ data: { id: string }[] }>().data.map((k) => k.id).sort()).toEqual([manager.id, narrower.id].sort());
      for (const wider of [owner.keyId, partly.id]) {
        for (const [method, suffix] of [['GET', ''], ['POST', '/rotate'], ['DELETE', '']] as const) {
          const send = (id: string) => t.request({ method, url: `/v1/api-keys/${id}${suffix}`, token: manager.key, ...(method === 'POST' ? { json: { gracePeriodSeconds: 0 } } : {}) });
          const theirs = await send(wider);
          const none = await send(missing);
          expect({ method, suffix, status: theirs.statusCode }).toEqual({ method, suffix, status: 404 });
          expect(strip(theirs.json())).toEqual(strip(none.json()));
        }
      }
      expect(await rowsOf(owner.workspaceId)).toEqual(before);
      expect((await get(owner.key, '/v1/api-keys')).statusCode).toBe(200);

      // Narrower keys and itself: visible and manageable.
      expect((await get(manager.key, `/v1/api-keys/${narrower.id}`)).statusCode).toBe(200);
      const rotated = await t.request({ method: 'POST', url: `/v1/api-keys/${narrower.id}/rotate`, token: manager.key, json: { gracePeriodSeconds: 0 } });
      expect(rotated.statusCode).toBe(201);
      const fresh = rotated.json<{ id: string }>().id;
      expect((await t.request({ method: 'DELETE', url: `/v1/api-keys/${fresh}`, token: manager.key })).statusCode).toBe(204);
      const self = await t.request({ method: 'POST', url: `/v1/api-keys/${manager.id}/rotate`, token: manager.key, json: { gracePeriodSeconds: 60 } });
      expect(self.statusCode).toBe(201);
      expect(self.json<{ scopes: string[] }>().scopes).toEqual(['events:write', 'keys:manage']);
    });

    it('a CIDR-bound key mints only keys within its CIDRs; omitted CIDRs inherit them, and a refusal writes nothing', async () => {
      const { workspaceId } = await t.workspaceWithKey(['*']);
      const parent = await adminKey(workspaceId, { scopes: ['keys:manage', 'events:read'], allowedCidrs: ['127.0.0.18/32', '2001:db8::/32'] });
      const mint = (json: Record<string, unknown>) => t.request({ method: 'POST', url: '/v1/api-keys', token: parent.key, remoteAddress: '127.0.0.18', json: { name: 'child', scopes: ['events:read'], ...json } });
      const before = await rowsOf(workspaceId);
      for (const allowedCidrs of [[], ['127.0.0.0/8'], ['10.0.0.1/32'], ['127.0.0.18/32', '2001:db9::1'], ['::/0']]) {
        const res = await mint({ allowedCidrs });
        expect({ allowedCidrs, status: res.statusCode, code: res.json<{ code: string }>().code }).toEqual({ allowedCidrs, status: 403, code: 'restriction_exceeds_parent' });
        expect(res.json<{ field: string }>().field).toBe('allowedCidrs');
      }
      expect(await rowsOf(workspaceId)).toEqual(before);

      const inherited = await mint({});
      expect(inherited.statusCode).toBe(201);
      const child = inherited.json<{ key: string; allowedCidrs: string[] }>();
      expect(child.allowedCidrs).toEqual(['127.0.0.18/32', '2001:db8::/32']);
      const fromElsewhere = await t.request({ method: 'GET', url: '/v1/events', token: child.key, remoteAddress: '127.0.0.1' });
      expect([fromElsewhere.statusCode, fromElsewhere.json<{ code: string }>().code]).toEqual([403, 'ip_not_allowed']);
      for (const allowedCidrs of [['127.0.0.18/32'], ['::ffff:127.0.0.18/128'], ['2001:db8:1::/48', '127.0.0.18']]) {
        const res = await mint({ allowedCidrs });
        expect({ allowedCidrs, status: res.statusCode }).toEqual({ allowedCidrs, status: 201 });
      }
    });

    it('an expiring key mints only keys that expire no later; an omitted expiry inherits its expiry', async () => {
      const { workspaceId } = await t.workspaceWithKey(['*']);
      const parentExpiry = new Date(t.clock.now().getTime() + 3_600_000);
      const parent = await adminKey(workspaceId, { scopes: ['keys:manage', 'events:read'], expiresAt: parentExpiry.toISOString() });
      const mint = (json: Record<string, unknown>) => t.request({ method: 'POST', url: '/v1/api-keys', token: parent.key, json: { name: 'child', scopes: ['events:read'], ...json } });
      const before = await rowsOf(workspaceId);
      const later = await mint({ expiresAt: new Date(parentExpiry.getTime() + 1000).toISOString() });
      expect([later.statusCode, later.json<{ code: string }>().code, later.json<{ field: string }>().field]).toEqual([403, 'restriction_exceeds_parent', 'expiresAt']);
      expect(await rowsOf(workspaceId)).toEqual(before);

      const inherited = await mint({});
      expect(inherited.statusCode).toBe(201);
      expect(inherited.json<{ expiresAt: string | null }>().expiresAt).toBe(parentExpiry.toISOString());
      const sooner = new Date(parentExpiry.getTime() - 1_800_000).toISOString();
      const earlier = await mint({ expiresAt: sooner });
      expect([earlier.statusCode, earlier.json<{ expiresAt: string | null }>().expiresAt]).toEqual([201, sooner]);
    });

    it('rotation hands out only what the rotating key could mint: a restricted key cannot rotate a less restricted one, but can rotate itself', async () => {
      const { workspaceId } = await t.workspaceWithKey(['*']);
      const unbound = await adminKey(workspaceId, { scopes: ['events:read'] });
      const fenced = await adminKey(workspaceId, { scopes: ['keys:manage', 'events:read'], allowedCidrs: ['127.0.0.18/32'] });
      const expiring = await adminKey(workspaceId, { scopes: ['keys:manage', 'events:read'], expiresAt: new Date(t.clock.now().getTime() + 3_600_000).toISOString() });
      const before = await rowsOf(workspaceId);
      const byFenced = await t.request({ method: 'POST', url: `/v1/api-keys/${unbound.id}/rotate`, token: fenced.key, remoteAddress: '127.0.0.18', json: { gracePeriodSeconds: 0 } });
      expect([byFenced.statusCode, byFenced.json<{ code: string }>().code, byFenced.json<{ field: string }>().field]).toEqual([403, 'restriction_exceeds_parent', 'allowedCidrs']);
      const byExpiring = await t.request({ method: 'POST', url: `/v1/api-keys/${unbound.id}/rotate`, token: expiring.key, json: { gracePeriodSeconds: 0 } });
      expect([byExpiring.statusCode, byExpiring.json<{ code: string }>().code, byExpiring.json<{ field: string }>().field]).toEqual([403, 'restriction_exceeds_parent', 'expiresAt']);
      expect(await rowsOf(workspaceId)).toEqual(before);
      // Revoking takes nothing away from the caller's reach: scopes alone decide.
      expect((await get(fenced.key, `/v1/api-keys/${unbound.id}`, '127.0.0.18')).statusCode).toBe(200);

      const self = await t.request({ method: 'POST', url: `/v1/api-keys/${fenced.id}/rotate`, token: fenced.key, remoteAddress: '127.0.0.18', json: { gracePeriodSeconds: 0 } });
      expect(self.statusCode).toBe(201);
      expect(self.json<{ allowedCidrs: string[] }>().allowedCidrs).toEqual(['127.0.0.18/32']);
      const selfExpiring = await t.request({ method: 'POST', url: `/v1/api-keys/${expiring.id}/rotate`, token: expiring.key, json: { gracePeriodSeconds: 0 } });
      expect([selfExpiring.statusCode, selfExpiring.json<{ expiresAt: string }>().expiresAt]).toEqual([201, expiring.expiresAt]);
      expect((await t.request({ method: 'DELETE', url: `/v1/api-keys/${unbound.id}`, token: self.json<{ key: string }>().key, remoteAddress: '127.0.0.18' })).statusCode).toBe(204);
    });

    it("a key of workspace A gets 404 for workspace B's key, exactly as for a missing one", async () => {
      const a = await t.workspaceWithKey(['*']);
      const b = await t.workspaceWithKey(['*']);
      const missing = 'key_00000000000000000000000000';
      for (const [method, url] of [['GET', ''], ['POST', '/rotate'], ['DELETE', '']] as const) {
        const theirs = await t.request({ method, url: `/v1/api-keys/${b.keyId}${url}`, token: a.key, ...(method === 'POST' ? { json: {} } : {}) });
        const none = await t.request({ method, url: `/v1/api-keys/${missing}${url}`, token: a.key, ...(method === 'POST' ? { json: {} } : {}) });
        expect(theirs.statusCode).toBe(404);
        const strip = (body: Record<string, unknown>) => ({ ...body, requestId: undefined });
        expect(strip(theirs.json())).toEqual(strip(none.json()));
      }
      const list = await get(a.key, '/v1/api-keys');
      expect(list.body).not.toContain(b.keyId);
      expect((await get(b.key, '/v1/api-keys')).statusCode).toBe(200);
    });

    it('the admin token is refused on workspace routes and a workspace key on admin routes', async () => {
      const { key } = await t.workspaceWithKey(['*']);
      const admin = await t.admin('GET', '/v1/api-keys');
      expect([admin.statusCode, admin.json<{ code: string; expected: string }>()]).toEqual([401, expect.objectContaining({ code: 'wrong_credential_kind', expected: 'api_key' })]);
      const asKey = await get(key, '/v1/tenants');
      expect([asKey.statusCode, asKey.json<{ code: string }>().code]).toEqual([401, 'wrong_credential_kind']);
    });

    it('writes lastUsedAt in batches rather than on every request', async () => {
      const { key, keyId } = await t.workspaceWithKey(['keys:manage']);
      await t.app.core.lastUsed.flush();
      for (let i = 0; i < 5; i++) await get(key, '/v1/api-keys');
      const before = await get(key, `/v1/api-keys/${keyId}`);
      expect(before.json<{ lastUsedAt: string | null }>().lastUsedAt).toBeNull();
      await t.app.core.lastUsed.flush();
      const after = await get(key, `/v1/api-keys/${keyId}`);
      expect(after.json<{ lastUsedAt: string | null }>().lastUsedAt).not.toBeNull();
    });

    it('records every key change in the workspace audit log', async () => {
      const { key, keyId } = await t.workspaceWithKey(['*']);
      const created = await t.request({ method: 'POST', url: '/v1/api-keys', token: key, json: { name: 'n', scopes: ['events:read'] } });
      const id = created.json<{ id: string }>().id;
      await t.request({ method: 'POST', url: `/v1/api-keys/${id}/rotate`, token: key, json: { gracePeriodSeconds: 0 } });
      await t.request({ method: 'DELETE', url: `/v1/api-keys/${id}`, token: key });
      const log = await get(key, '/v1/audit-log');
      const actions = log.json<{ data: { action: string; actor: { id: string } }[] }>().data;
      expect(actions.map((e) => e.action)).toEqual(['api_key.create', 'api_key.create', 'api_key.rotate', 'api_key.revoke']);
      expect(actions.slice(1).every((e) => e.actor.id === keyId)).toBe(true);
    });
  });
});
