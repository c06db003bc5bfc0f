/**
 * Rotation keeps every connection usable: workspace-key rotation with the background re-seal and
 * the ratchet, and root rotation followed by removal of the old root key.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCore } from '../app.js';
import { databaseRef } from '../db/open.js';
import { createLogger } from '../logging.js';
import { startTestApp, testSecrets, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import { startUpstream, type Upstream } from '../testing/upstream.js';
import { sealedKeyVersion } from './envelope.js';

describe.each(backends)('key rotation with live connections on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    let upstream: Upstream;
    beforeAll(async () => {
      upstream = await startUpstream();
      t = await startTestApp(backend, { config: { egressAllowCidrs: ['127.0.0.1/32'], keyRingCacheTtlMs: 0 } });
      await t.admin('POST', '/v1/providers', { key: 'rot', name: 'Rot', authType: 'api_key', baseUrls: [upstream.url], apiKey: { in: 'header', name: 'X-Api-Key' } });
    });
    afterAll(async () => {
      await t.close();
      await upstream.close();
    });

    const versions = async (workspaceId: string) =>
      (await t.database.db.owner.query<{ credentials: Uint8Array }>('SELECT credentials FROM connections WHERE workspace_id = $1 ORDER BY id', [workspaceId])).rows.map((r) => sealedKeyVersion(r.credentials));

    it('re-seals old values in the background, refuses an early ratchet, and keeps the relay working', async () => {
      const { key, workspaceId } = await t.workspaceWithKey(['*']);
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const created = await t.request({ method: 'POST', url: '/v1/connections', token: key, json: { provider: 'rot', name: `c${String(i)}`, credentials: { apiKey: `key-number-${String(i)}-0123456789` } } });
        ids.push(created.json<{ id: string }>().id);
      }
      const core = t.app.core;
      await core.withWorkspace(workspaceId, (tx) => core.vault.rotateWorkspaceKey(tx));
      expect(await versions(workspaceId)).toEqual([1, 1, 1]);
      await expect(core.resealer.ratchet(workspaceId, 2)).rejects.toMatchObject({ code: 'conflict', details: { remaining: { 'connections.credentials': 3 } } });

      const pass = await core.resealer.runOnce();
      expect(pass.resealed).toBeGreaterThanOrEqual(3);
      expect(await versions(workspaceId)).toEqual([2, 2, 2]);
      expect(await core.resealer.ratchet(workspaceId, 2)).toEqual({ current: 2, min: 2 });

      core.connections.forget(workspaceId);
      for (const [i, id] of ids.entries()) {
        upstream.requests.length = 0;
        expect((await t.request({ method: 'GET', url: `/v1/proxy/${id}/x`, token: key })).statusCode).toBe(200);
        expect(upstream.requests[0]?.headers['x-api-key']).toBe(`key-number-${String(i)}-0123456789`);
      }
    });

    it('after root rotation the old root key can be removed and every connection still opens', async () => {
      const { key, workspaceId } = await t.workspaceWithKey(['*']);
      const id = (await t.request({ method: 'POST', url: '/v1/connections', token: key, json: { provider: 'rot', name: 'r', credentials: { apiKey: 'root-rotation-secret-0123' } } })).json<{ id: string }>().id;
      const v2 = { version: 2, key: Buffer.alloc(32, 42) };
      const processWith = (rootKeys: typeof testSecrets.rootKeys) => {
        const db = databaseRef();
        db.set(t.database.db);
        return createCore({ config: t.config, secrets: { ...testSecrets, rootKeys }, logger: createLogger({ level: 'silent' }), db, runtime: t.clock });
      };
      const both = processWith([...testSecrets.rootKeys, v2]);
      await both.withPlatform((tx) => both.vault.rewrapRoot(tx));
      const onlyNew = processWith([v2]);
      const usable = await onlyNew.connections.use(workspaceId, id);
      expect(usable.credential).toEqual({ type: 'api_key', apiKey: 'root-rotation-secret-0123' });
      const onlyOld = processWith(testSecrets.rootKeys);
      await expect(onlyOld.connections.use(workspaceId, id)).rejects.toMatchObject({ code: 'root_key_missing' });
      for (const core of [both, onlyNew, onlyOld]) {
        await core.relayLog.stop();
        await core.egress.close();
      }
    });
  });
});
