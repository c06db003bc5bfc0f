import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';

interface Verify {
  valid: boolean;
  checked: number;
  firstInvalid: { seq: number; id: string | null; reason: string } | null;
  head: { seq: number; hash: string };
}

describe.each(backends)('audit chains on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startTestApp(backend);
    });
    afterAll(async () => t.close());

    /** A workspace whose chain holds `n` entries (key creations), and a key that can read it. */
    async function chainOf(n: number) {
      const ws = await t.workspaceWithKey(['*']);
      for (let i = 1; i < n; i++) {
        const res = await t.request({ method: 'POST', url: '/v1/api-keys', token: ws.key, json: { name: `k${i}`, scopes: ['events:read'] } });
        expect(res.statusCode).toBe(201);
      }
      const verify = async () => (await t.request({ method: 'GET', url: '/v1/audit-log/verify', token: ws.key })).json<Verify>();
      const owner = (sql: string) => t.database.db.owner.query(sql, [ws.workspaceId]);
      return { ...ws, verify, owner };
    }

    it('an untouched chain verifies, and reports its head', async () => {
      const c = await chainOf(4);
      const result = await c.verify();
      expect(result).toMatchObject({ valid: true, checked: 4, firstInvalid: null, head: { seq: 4 } });
      expect(result.head.hash).toMatch(/^[0-9a-f]{64}$/);
    });

    it('an altered field is detected at that entry', async () => {
      const c = await chainOf(5);
      await c.owner("UPDATE audit_log SET details = jsonb_set(details, '{name}', '\"evil\"') WHERE workspace_id = $1 AND seq = 3");
      expect((await c.verify()).firstInvalid).toMatchObject({ seq: 3, reason: 'altered' });
    });

    it('a deleted entry in the middle is detected at the entry after it', async () => {
      const c = await chainOf(5);
      await c.owner('DELETE FROM audit_log WHERE workspace_id = $1 AND seq = 2');
      expect((await c.verify()).firstInvalid).toMatchObject({ seq: 3, reason: 'missing_entries' });
    });

    it('a deleted last entry is detected through the chain head', async () => {
      const c = await chainOf(4);
      await c.owner('DELETE FROM audit_log WHERE workspace_id = $1 AND seq = 4');
      expect((await c.verify()).firstInvalid).toMatchObject({ seq: 4, reason: 'truncated' });
    });

    it('two swapped entries are detected at the first of them', async () => {
      const c = await chainOf(5);
      // Reorder: entries 2 and 4 trade places in the sequence.
      await c.owner('UPDATE audit_log SET seq = -1 WHERE workspace_id = $1 AND seq = 2');
      await c.owner('UPDATE audit_log SET seq = 2 WHERE workspace_id = $1 AND seq = 4');
      await c.owner('UPDATE audit_log SET seq = 4 WHERE workspace_id = $1 AND seq = -1');
      expect((await c.verify()).firstInvalid).toMatchObject({ seq: 2 });
    });

    it("a key reads only its own workspace's chain", async () => {
      const a = await chainOf(2);
      const b = await chainOf(3);
      const log = await t.request({ method: 'GET', url: '/v1/audit-log', token: a.key });
      const entries = log.json<{ data: { target: { id: string } | null }[] }>().data;
      expect(entries).toHaveLength(2);
      expect(log.body).not.toContain(b.keyId);
    });

    it('concurrent appends produce a gapless, valid chain', async () => {
      const c = await chainOf(1);
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => t.request({ method: 'POST', url: '/v1/api-keys', token: c.key, json: { name: `p${i}`, scopes: ['events:read'] } })),
      );
      expect(results.map((r) => r.statusCode)).toEqual(Array.from({ length: 20 }, () => 201));
      expect(await c.verify()).toMatchObject({ valid: true, checked: 21 });
    });

    it('cursor pagination walks every entry exactly once', async () => {
      const c = await chainOf(7);
      const seqs: number[] = [];
      interface AuditPage { data: { seq: number }[]; nextCursor: string | null }
      const fetchPage = async (cursor: string | null): Promise<AuditPage> =>
        (await t.request({ method: 'GET', url: `/v1/audit-log?limit=3${cursor ? `&cursor=${cursor}` : ''}`, token: c.key })).json<AuditPage>();
      let page = await fetchPage(null);
      seqs.push(...page.data.map((e) => e.seq));
      while (page.nextCursor) {
        page = await fetchPage(page.nextCursor);
        seqs.push(...page.data.map((e) => e.seq));
      }
      expect(seqs).toEqual([1, 2, 3, 4, 5, 6, 7]);
    });

    it('platform actions are chained; a failed action writes no entry; a deleted workspace leaves its final head', async () => {
      const verifyPlatform = async () => (await t.admin('GET', '/v1/platform/audit-log/verify')).json<Verify>();
      const c = await chainOf(3);
      const before = await verifyPlatform();
      expect(before.valid).toBe(true);

      const dup = await t.admin('POST', '/v1/tenants', { name: 'dup', slug: 'dup-slug' });
      expect(dup.statusCode).toBe(201);
      const again = await t.admin('POST', '/v1/tenants', { name: 'dup', slug: 'dup-slug' });
      expect([again.statusCode, again.json<{ code: string }>().code]).toEqual([409, 'slug_taken']);
      expect((await verifyPlatform()).checked).toBe(before.checked + 1);

      expect((await t.admin('DELETE', `/v1/workspaces/${c.workspaceId}`)).statusCode).toBe(204);
      const { rows } = await t.database.db.owner.query<{ count: number }>('SELECT count(*)::int AS count FROM audit_log WHERE workspace_id = $1', [c.workspaceId]);
      expect(rows[0]?.count).toBe(0);
      const log = await t.admin('GET', '/v1/platform/audit-log?limit=200');
      const last = log.json<{ data: { action: string; target: { id: string }; details: { auditChainHead: { seq: number } } }[] }>().data.at(-1);
      expect(last).toMatchObject({ action: 'workspace.delete', target: { id: c.workspaceId }, details: { auditChainHead: { seq: 3 } } });
      expect((await verifyPlatform()).valid).toBe(true);
      expect((await t.request({ method: 'GET', url: '/v1/api-keys', token: c.key })).statusCode).toBe(401);
    });
  });
});
