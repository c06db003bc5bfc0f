/**
 * Re-sealing after a workspace-key rotation: every sealed column of the workspace is read, and
 * values sealed under an older data-key version are opened and sealed again under the current
 * one, in batches, inside the workspace's transaction. Once nothing old remains the minimum
 * version can be ratcheted up (`bulkhead keys ratchet`), after which old keys open nothing.
 *
 * New sealed columns must be listed here; the vault test fails for a sealed column that is not
 * (it seals through every registered column and checks that re-sealing reaches it).
 */
import type { WithPlatform, WithWorkspace, WorkspaceTx } from '../db/tenant-tx.js';
import { BulkheadError } from '../errors.js';
import type { Vault } from './vault.js';

export interface SealedColumn {
  readonly table: string;
  readonly idColumn: string;
  readonly column: string;
}

/** Workspace-scoped sealed columns (the platform's provider secrets use the platform key). */
export const sealedColumns: readonly SealedColumn[] = [
  { table: 'connections', idColumn: 'id', column: 'credentials' },
  { table: 'connect_sessions', idColumn: 'id', column: 'pkce_verifier' },
  { table: 'destination_secrets', idColumn: 'id', column: 'secret' },
  { table: 'events', idColumn: 'id', column: 'payload' },
  { table: 'delivery_attempts', idColumn: 'id', column: 'response_body' },
  { table: 'inbound_source_secrets', idColumn: 'id', column: 'secret' },
  { table: 'deliveries', idColumn: 'id', column: 'payload' },
  { table: 'instances', idColumn: 'id', column: 'secret_config' },
  { table: 'executions', idColumn: 'id', column: 'resume_state' },
  { table: 'executions', idColumn: 'id', column: 'payloads' },
];

// The data-key version sits in bytes 1–4 of every sealed value (see envelope.ts).
const versionOf = (column: string) => `((get_byte(${column}, 1) << 24) | (get_byte(${column}, 2) << 16) | (get_byte(${column}, 3) << 8) | get_byte(${column}, 4))`;

export async function countBelow(tx: WorkspaceTx, version: number): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const c of sealedColumns) {
    const { rows } = await tx.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${c.table} WHERE ${c.column} IS NOT NULL AND ${versionOf(c.column)} < $1`, [version]);
    counts[`${c.table}.${c.column}`] = rows[0]?.n ?? 0;
  }
  return counts;
}

export function createResealer(deps: { withWorkspace: WithWorkspace; withPlatform: WithPlatform; vault: Vault; batchSize?: number }) {
  const batchSize = deps.batchSize ?? 200;

  async function resealWorkspace(workspaceId: string): Promise<{ resealed: number; currentVersion: number }> {
    let resealed = 0;
    let current = 0;
    for (const c of sealedColumns) {
      for (;;) {
        const done = await deps.withWorkspace(workspaceId, async (tx) => {
          const ring = await deps.vault.ring(tx);
          current = ring.current;
          const { rows } = await tx.query<{ id: string; value: Uint8Array }>(
            `SELECT ${c.idColumn} AS id, ${c.column} AS value FROM ${c.table} WHERE ${c.column} IS NOT NULL AND ${versionOf(c.column)} < $1 ORDER BY ${c.idColumn} LIMIT $2 FOR UPDATE`,
            [ring.current, batchSize],
          );
          const sealer = deps.vault.workspace(tx);
          for (const row of rows) {
            const place = { table: c.table, rowId: row.id, column: c.column };
            const value = await sealer.seal(place, await sealer.open(place, row.value));
            await tx.query(`UPDATE ${c.table} SET ${c.column} = $2 WHERE ${c.idColumn} = $1`, [row.id, value]);
          }
          resealed += rows.length;
          return rows.length < batchSize;
        });
        if (done) break;
      }
    }
    return { resealed, currentVersion: current };
  }

  return {
    resealWorkspace,

    /** Raises the minimum decryption version, refusing while anything is still sealed below it. */
    ratchet: (workspaceId: string, minVersion: number) =>
      deps.withWorkspace(workspaceId, async (tx) => {
        const remaining = await countBelow(tx, minVersion);
        const total = Object.values(remaining).reduce((a, b) => a + b, 0);
        if (total > 0) {
          throw new BulkheadError('conflict', `${total} values are still sealed below version ${minVersion}; run \`bulkhead keys reseal\` first`, { details: { remaining } });
        }
        return deps.vault.ratchet(tx, minVersion);
      }),

    /**
     * One pass of the background job: workspaces whose ring has more than one live version are
     * re-sealed. Finding them is a named cross-workspace read (owner); the work itself runs in each
     * workspace's own transaction.
     */
    async runOnce(): Promise<{ workspaces: number; resealed: number }> {
      const candidates = await deps.withPlatform(async (tx) =>
        (await tx.query<{ workspace_id: string }>('SELECT workspace_id FROM workspace_key_rings WHERE current_version > min_decrypt_version ORDER BY workspace_id')).rows.map((r) => r.workspace_id),
      );
      let resealed = 0;
      for (const workspaceId of candidates) resealed += (await resealWorkspace(workspaceId)).resealed;
      return { workspaces: candidates.length, resealed };
    },
  };
}

export type Resealer = ReturnType<typeof createResealer>;
