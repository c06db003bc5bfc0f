/**
 * Operator commands that open the database themselves: `migrate`, `keys …`, and the `--offline`
 * forms of the platform commands. Each opens the database the server would use, runs one service
 * call as the `cli` actor, prints JSON and closes. On the embedded database that needs the data
 * folder's lock, so they refuse (`data_folder_locked`, naming the holder) while a server runs;
 * on PostgreSQL they run beside it as they always have (PostgreSQL serialises its clients).
 */
import { hostname, userInfo } from 'node:os';
import { type Core, createCore } from '../app.js';
import { PLATFORM_CHAIN, type VerifyResult } from '../audit/chain.js';
import { parseCheckpoint } from '../audit/checkpoint.js';
import type { ActionContext } from '../audit/context.js';
import { platformAudit, workspaceAudit } from '../audit/store.js';
import type { Config } from '../config.js';
import { migrate } from '../db/migrate.js';
import type { Database } from '../db/types.js';
import { databaseRef, openDatabase } from '../db/open.js';
import { BulkheadError } from '../errors.js';
import type { Scope } from '../identity/scopes.js';
import { createLogger } from '../logging.js';
import { systemRuntime } from '../runtime.js';
import { addGeneratedRootKey, resolveSecrets } from '../secrets.js';
import { countBelow } from '../vault/reseal.js';

const cliContext = (): ActionContext => ({ actor: { type: 'cli', id: `${userInfo().username}@${hostname()}` } });

/** The database, or `data_folder_locked` saying that this command needs the server stopped. */
async function open(config: Config): Promise<Database> {
  try {
    return await openDatabase(config, { onTakeover: (message) => process.stderr.write(`${message}\n`) });
  } catch (error) {
    if (error instanceof BulkheadError && error.code === 'data_folder_locked') {
      throw new BulkheadError('data_folder_locked', `${error.message} This command opens the embedded database itself, so it runs only while no server does: stop the server, run it, start the server again (tenant, workspace, api-key and audit commands go through the running server without --offline).`, { cause: error, details: error.details ?? {} });
    }
    throw error;
  }
}

/**
 * Opens the database (the lock first: nothing is touched while a server has the folder), runs
 * `prepare` (which may change the secrets file), then builds the core with the secrets as they are.
 */
async function withCore<T>(config: Config, fn: (core: Core) => Promise<T>, prepare?: () => Promise<void>): Promise<T> {
  const database = await open(config);
  try {
    await prepare?.();
    const { secrets } = await resolveSecrets(config);
    // The embedded database has no separate deployment step: bring its schema up to date here too.
    if (config.databaseUrl === undefined) await migrate(database, config.appRole);
    const core = createCore({ config, secrets, logger: createLogger({ level: 'warn' }), db: databaseRef(database), runtime: systemRuntime });
    const result = await fn(core);
    await core.lastUsed.stop();
    await core.relayLog.stop();
    await core.egress.close();
    return result;
  } finally {
    await database.close();
  }
}

export async function runMigrate(config: Config): Promise<unknown> {
  const database = await open(config);
  try {
    return await migrate(database, config.appRole);
  } finally {
    await database.close();
  }
}

export const createTenant = (config: Config, input: { name: string; slug: string }) =>
  withCore(config, (core) => core.tenancy.createTenant(cliContext(), input));

export const createWorkspace = (config: Config, input: { tenantId: string; name: string; environment: string }) =>
  withCore(config, (core) => core.tenancy.createWorkspace(cliContext(), input.tenantId, { name: input.name, environment: input.environment }));

export const createApiKey = (config: Config, input: { workspaceId: string; name: string; scopes: Scope[]; allowedCidrs: string[]; expiresAt?: string | undefined }) =>
  withCore(config, async (core) => {
    const workspace = await core.tenancy.getWorkspace(input.workspaceId);
    const { view, key } = await core.withWorkspace(workspace.id, (tx) =>
      core.apiKeys.create(tx, cliContext(), { name: input.name, scopes: input.scopes, allowedCidrs: input.allowedCidrs, expiresAt: input.expiresAt }, { environment: workspace.environment }),
    );
    return { ...view, key };
  });

export interface ChainReport extends VerifyResult {
  readonly chain: string;
}

/**
 * Verifies one workspace's chain, or (without one) the platform chain and every workspace's.
 * With a checkpoint (the text of a file kept outside Bulkhead), the one chain it was signed for.
 */
export const verifyAudit = (config: Config, workspaceId: string | undefined, checkpointText?: string) =>
  withCore(config, async (core): Promise<ChainReport[]> => {
    if (checkpointText !== undefined) {
      const checkpoint = parseCheckpoint(checkpointText);
      const chain = workspaceId ?? checkpoint.chain;
      core.auditCheckpoints.check(checkpoint, chain);
      const anchor = { seq: checkpoint.seq, hash: checkpoint.hash };
      if (chain === PLATFORM_CHAIN) return [{ chain, ...(await core.withPlatform((tx) => platformAudit.verify(tx, anchor))) }];
      await core.tenancy.getWorkspace(chain);
      return [{ chain, ...(await core.withWorkspace(chain, (tx) => workspaceAudit.verify(tx, anchor))) }];
    }
    if (workspaceId !== undefined) {
      await core.tenancy.getWorkspace(workspaceId);
      return [{ chain: workspaceId, ...(await core.withWorkspace(workspaceId, (tx) => workspaceAudit.verify(tx))) }];
    }
    const reports: ChainReport[] = [{ chain: 'platform', ...(await core.withPlatform((tx) => platformAudit.verify(tx))) }];
    const ids = await core.withPlatform(async (tx) => (await tx.query<{ id: string }>('SELECT id FROM workspaces ORDER BY id')).rows.map((r) => r.id));
    for (const id of ids) reports.push({ chain: id, ...(await core.withWorkspace(id, (tx) => workspaceAudit.verify(tx))) });
    return reports;
  });

/** `keys rotate-root`: every data key rewrapped under the newest root version (development: one is generated first). */
export async function rotateRoot(config: Config): Promise<unknown> {
  let generatedVersion: number | undefined;
  const generate = async () => {
    if (config.env !== 'production' && config.rootKeys === undefined) {
      await resolveSecrets(config); // a fresh folder gets its secrets file first
      generatedVersion = await addGeneratedRootKey(config);
    }
  };
  return withCore(config, async (core) => {
    const result = await core.withPlatform(async (tx) => {
      const rewrapped = await core.vault.rewrapRoot(tx);
      await platformAudit.append(tx, systemRuntime, { ...cliContext(), action: 'keys.rotate_root', outcome: 'success', details: { ...rewrapped } });
      return rewrapped;
    });
    return { ...result, generatedVersion: generatedVersion ?? null, note: 'older root key versions may now be removed from the configuration' };
  }, generate);
}

export const rotateWorkspaceKey = (config: Config, workspaceId: string) =>
  withCore(config, async (core) => {
    const workspace = await core.tenancy.getWorkspace(workspaceId);
    const ring = await core.withWorkspace(workspace.id, async (tx) => {
      const rotated = await core.vault.rotateWorkspaceKey(tx);
      await workspaceAudit.append(tx, systemRuntime, { ...cliContext(), action: 'keys.rotate_workspace', outcome: 'success', details: { ...rotated } });
      return rotated;
    });
    // Re-seal now rather than waiting for the worker; the worker would do the same.
    const reseal = await core.resealer.resealWorkspace(workspace.id);
    return { ...ring, resealed: reseal.resealed, next: `bulkhead keys ratchet --workspace ${workspace.id} --min ${String(ring.current)}` };
  });

export const resealWorkspace = (config: Config, workspaceId: string) =>
  withCore(config, async (core) => core.resealer.resealWorkspace((await core.tenancy.getWorkspace(workspaceId)).id));

export const ratchetWorkspaceKey = (config: Config, workspaceId: string, minVersion: number) =>
  withCore(config, async (core) => {
    const workspace = await core.tenancy.getWorkspace(workspaceId);
    const ring = await core.resealer.ratchet(workspace.id, minVersion);
    await core.withWorkspace(workspace.id, (tx) => workspaceAudit.append(tx, systemRuntime, { ...cliContext(), action: 'keys.ratchet', outcome: 'success', details: { ...ring } }));
    return ring;
  });

export const keyStatus = (config: Config, workspaceId: string) =>
  withCore(config, async (core) => {
    const workspace = await core.tenancy.getWorkspace(workspaceId);
    return core.withWorkspace(workspace.id, async (tx) => {
      const ring = await core.vault.ring(tx);
      return { ...ring, sealedBelowCurrent: await countBelow(tx, ring.current) };
    });
  });
