/**
 * Crypto-shredding: a deleted workspace's wrapped data keys are deleted before its rows, in the
 * same owner transaction, and dropped from this process's memory. Backups taken earlier still
 * hold ciphertexts, but after the keys are gone (and the backups of the key tables expire) no root
 * key can open them. The audit entry for the deletion records how many key versions died.
 */
import type { PlatformTx } from '../db/tenant-tx.js';
import type { Vault } from './vault.js';

export async function destroyWorkspaceKeys(tx: PlatformTx, vault: Vault, workspaceId: string): Promise<Record<string, unknown>> {
  const destroyed = await tx.query('DELETE FROM workspace_keys WHERE workspace_id = $1', [workspaceId]);
  await tx.query('DELETE FROM workspace_key_rings WHERE workspace_id = $1', [workspaceId]);
  vault.forget(workspaceId);
  return { cryptoShredded: true, dataKeyVersionsDestroyed: destroyed.rowCount };
}
