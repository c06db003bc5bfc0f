/** `GET /v1/workspaces/{id}/audit-log/verify`: the platform operator's check of a workspace's chain (what `bulkhead audit verify` calls). */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';

describe.each(backends)('an admin verifying a workspace chain on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startTestApp(backend);
    });
    afterAll(async () => t.close());

    it('sees what the workspace\'s own key sees, also once an entry is altered; an unknown workspace is 404; a workspace key is not let in', async () => {
      const ws = await t.workspaceWithKey(['*']);
      expect((await t.request({ method: 'POST', url: '/v1/api-keys', token: ws.key, json: { name: 'second', scopes: ['events:read'] } })).statusCode).toBe(201);
      const own = async () => (await t.request({ method: 'GET', url: '/v1/audit-log/verify', token: ws.key })).json<unknown>();
      const byAdmin = () => t.admin('GET', `/v1/workspaces/${ws.workspaceId}/audit-log/verify`);

      const clean = await byAdmin();
      expect(clean.statusCode).toBe(200);
      expect(clean.json()).toMatchObject({ valid: true, checked: 2, firstInvalid: null, head: { seq: 2 } });
      expect(clean.json()).toEqual(await own());

      await t.database.db.owner.query("UPDATE audit_log SET actor_id = 'someone-else' WHERE workspace_id = $1 AND seq = 1", [ws.workspaceId]);
      const tampered = await byAdmin();
      expect(tampered.json()).toMatchObject({ valid: false, firstInvalid: { seq: 1, reason: 'altered' } });
      expect(tampered.json()).toEqual(await own());

      const missing = await t.admin('GET', '/v1/workspaces/ws_01jz0000000000000000000000/audit-log/verify');
      expect([missing.statusCode, missing.json<{ code: string }>().code]).toEqual([404, 'not_found']);
      const withKey = await t.request({ method: 'GET', url: `/v1/workspaces/${ws.workspaceId}/audit-log/verify`, token: ws.key });
      expect(withKey.statusCode).toBe(401);
    });
  });
});
