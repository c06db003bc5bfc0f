import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import { createTxGroups } from './tx-groups.js';

describe.each(backends)('grouped workspace transactions on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startTestApp(backend);
    });
    afterAll(async () => {
      await t.close();
    });

    it('shares one transaction among units that wait together, and a failing unit fails alone', async () => {
      const { workspaceId } = await t.workspaceWithKey(['*']);
      const groups = createTxGroups(t.app.core.withWorkspace, 64);
      const txid = (tx: Parameters<Parameters<typeof groups.run>[1]>[0]) => tx.query<{ id: string }>('SELECT txid_current()::text AS id').then((r) => r.rows[0]?.id);
      const units = Array.from({ length: 20 }, (_, i) => groups.run(workspaceId, async (tx) => {
        if (i === 7) await tx.query('SELECT 1 / 0');
        return txid(tx);
      }));
      const settled = await Promise.allSettled(units);
      expect(settled.filter((s) => s.status === 'rejected')).toHaveLength(1);
      expect(settled[7]?.status).toBe('rejected');
      const ids = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
      expect(ids).toHaveLength(19);
      // The first starts alone; the rest waited and shared (their group failed once, then ran alone).
      // Without the failure they share: try again.
      const clean = await Promise.all(Array.from({ length: 20 }, () => groups.run(workspaceId, txid)));
      expect(new Set(clean).size).toBeLessThanOrEqual(3);
      // Each unit still runs as the workspace (the shared transaction is a workspace transaction).
      expect(await groups.run(workspaceId, async (tx) => (await tx.query<{ ws: string }>("SELECT current_setting('bulkhead.workspace_id') AS ws")).rows[0]?.ws)).toBe(workspaceId);
    });
  });
});
