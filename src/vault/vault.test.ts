import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCore } from '../app.js';
import { databaseRef } from '../db/open.js';
import { createLogger } from '../logging.js';
import { startTestApp, testSecrets, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import type { SealContext } from './envelope.js';

const here: SealContext = { table: 'connections', rowId: 'con_a', column: 'credentials' };

describe.each(backends)('vault on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startTestApp(backend);
    });
    afterAll(async () => t.close());

    const core = () => t.app.core;
    const seal = (ws: string, context: SealContext, text: string) => core().withWorkspace(ws, (tx) => core().vault.workspace(tx).seal(context, text));
    const open = (ws: string, context: SealContext, sealed: Buffer) => core().withWorkspace(ws, (tx) => core().vault.workspace(tx).openText(context, sealed));

    /** A second core on the same database with other root keys and cold caches: another process. */
    const otherProcess = (rootKeys = testSecrets.rootKeys) => {
      const db = databaseRef();
      db.set(t.database.db);
      return createCore({ config: t.config, secrets: { ...testSecrets, rootKeys }, logger: createLogger({ level: 'silent' }), db, runtime: t.clock });
    };

    it('creates a wrapped data key with the workspace and never stores it in the clear', async () => {
      const { workspaceId } = await t.workspaceWithKey();
      const { rows } = await t.database.db.owner.query<{ version: number; root_version: number; wrapped: Uint8Array }>(
        'SELECT version, root_version, wrapped FROM workspace_keys WHERE workspace_id = $1',
        [workspaceId],
      );
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ version: 1, root_version: 1 });
      expect(Buffer.from(rows[0]?.wrapped ?? []).length).toBe(12 + 32 + 16);
      const sealed = await seal(workspaceId, here, 'canary-plaintext');
      expect(sealed.toString('latin1')).not.toContain('canary-plaintext');
      expect(await open(workspaceId, here, sealed)).toBe('canary-plaintext');
    });

    it('refuses a ciphertext moved to another row, column, table or workspace, or altered', async () => {
      const a = await t.workspaceWithKey();
      const b = await t.workspaceWithKey();
      const sealed = await seal(a.workspaceId, here, 'secret');
      const invalid = { code: 'ciphertext_invalid' };
      await expect(open(a.workspaceId, { ...here, rowId: 'con_b' }, sealed)).rejects.toMatchObject(invalid);
      await expect(open(a.workspaceId, { ...here, column: 'other' }, sealed)).rejects.toMatchObject(invalid);
      await expect(open(a.workspaceId, { ...here, table: 'destinations' }, sealed)).rejects.toMatchObject(invalid);
      await expect(open(b.workspaceId, here, sealed)).rejects.toMatchObject(invalid);
      const altered = Buffer.from(sealed);
      altered[20] = (altered[20] ?? 0) ^ 1;
      await expect(open(a.workspaceId, here, altered)).rejects.toMatchObject(invalid);
      await expect(open(a.workspaceId, here, Buffer.from('not sealed at all, just text'))).rejects.toMatchObject(invalid);
      // The original still opens: the failures above are about place, not a broken key.
      expect(await open(a.workspaceId, here, sealed)).toBe('secret');
    });

    it('rotates a workspace key: old values open, new values use the new version, a ratchet retires the old one', async () => {
      const { workspaceId } = await t.workspaceWithKey();
      const old = await seal(workspaceId, here, 'before');
      const ring = await core().withWorkspace(workspaceId, (tx) => core().vault.rotateWorkspaceKey(tx));
      expect(ring).toEqual({ current: 2, min: 1 });
      const fresh = await seal(workspaceId, here, 'after');
      expect(fresh.readUInt32BE(1)).toBe(2);
      expect(old.readUInt32BE(1)).toBe(1);
      // Another process with cold caches reads both.
      const other = otherProcess();
      expect(await other.withWorkspace(workspaceId, (tx) => other.vault.workspace(tx).openText(here, old))).toBe('before');
      expect(await other.withWorkspace(workspaceId, (tx) => other.vault.workspace(tx).openText(here, fresh))).toBe('after');

      await core().withWorkspace(workspaceId, (tx) => core().vault.ratchet(tx, 2));
      await expect(open(workspaceId, here, old)).rejects.toMatchObject({ code: 'key_version_retired' });
      expect(await open(workspaceId, here, fresh)).toBe('after');
      await expect(core().withWorkspace(workspaceId, (tx) => core().vault.ratchet(tx, 1))).rejects.toMatchObject({ code: 'bad_request' });
    });

    it('shreds a deleted workspace: its keys are gone and its ciphertexts cannot be opened, even with the root key', async () => {
      const { workspaceId } = await t.workspaceWithKey();
      const sealed = await seal(workspaceId, here, 'shred me');
      const deleted = await t.admin('DELETE', `/v1/workspaces/${workspaceId}`);
      expect(deleted.statusCode).toBe(204);
      const { rows } = await t.database.db.owner.query<{ n: number }>(
        'SELECT (SELECT count(*) FROM workspace_keys WHERE workspace_id = $1)::int + (SELECT count(*) FROM workspace_key_rings WHERE workspace_id = $1)::int AS n',
        [workspaceId],
      );
      expect(rows[0]?.n).toBe(0);
      const other = otherProcess();
      await expect(other.withWorkspace(workspaceId, (tx) => other.vault.workspace(tx).openText(here, sealed))).rejects.toMatchObject({ code: 'workspace_key_missing' });
      await expect(open(workspaceId, here, sealed)).rejects.toMatchObject({ code: 'workspace_key_missing' });

      const audit = await t.admin('GET', '/v1/platform/audit-log?limit=100');
      const entry = audit.json<{ data: { action: string; target: { id: string }; details: Record<string, unknown> }[] }>().data.find(
        (e) => e.action === 'workspace.delete' && e.target.id === workspaceId,
      );
      expect(entry?.details).toMatchObject({ cryptoShredded: true, dataKeyVersionsDestroyed: 1 });
    });
    // Last: afterwards the suite's own app (root version 1 only) can no longer unwrap anything.
    it('rewraps every data key under a new root version without touching sealed values', async () => {
      const { workspaceId } = await t.workspaceWithKey();
      const sealed = await seal(workspaceId, here, 'survives root rotation');
      const v2 = { version: 2, key: Buffer.alloc(32, 9) };
      const both = otherProcess([...testSecrets.rootKeys, v2]);
      const result = await both.withPlatform((tx) => both.vault.rewrapRoot(tx));
      expect(result.rootVersion).toBe(2);
      expect(result.rewrapped).toBeGreaterThanOrEqual(1);
      const { rows } = await t.database.db.owner.query<{ n: number }>('SELECT count(*)::int AS n FROM workspace_keys WHERE root_version <> 2');
      expect(rows[0]?.n).toBe(0);

      // Only the new root key configured: everything opens. Only the old one: nothing does.
      const onlyNew = otherProcess([v2]);
      expect(await onlyNew.withWorkspace(workspaceId, (tx) => onlyNew.vault.workspace(tx).openText(here, sealed))).toBe('survives root rotation');
      const onlyOld = otherProcess(testSecrets.rootKeys);
      await expect(onlyOld.withWorkspace(workspaceId, (tx) => onlyOld.vault.workspace(tx).openText(here, sealed))).rejects.toMatchObject({ code: 'root_key_missing' });
    });

  });
});
