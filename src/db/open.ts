import path from 'node:path';
import type { Config } from '../config.js';
import { BulkheadError } from '../errors.js';
import { type DataFolderLock, describeHolder, type LockHolder, lockDataFolder } from './data-folder-lock.js';
import { openPGlite } from './pglite.js';
import { openPostgres } from './postgres.js';
import type { Database } from './types.js';

export interface OpenOptions {
  /** The data folder's lock, taken earlier by `lockEmbeddedDataFolder` (the server takes it before it listens). */
  readonly lock?: DataFolderLock | undefined;
  /** Told when a stale lock (its holder gone) is taken over. */
  readonly onTakeover?: ((message: string, stale: LockHolder | undefined) => void) | undefined;
}

/**
 * The embedded database's data folder lock, or undefined on PostgreSQL (which serialises its
 * clients itself, so any number of processes may share it). Throws `data_folder_locked` naming
 * the holder while another live process has the folder.
 */
export async function lockEmbeddedDataFolder(config: Config, options: Pick<OpenOptions, 'onTakeover'> = {}): Promise<DataFolderLock | undefined> {
  if (config.databaseUrl !== undefined) return undefined;
  return lockFolder(config.dataDir, options);
}

const lockFolder = (dataDir: string, options: Pick<OpenOptions, 'onTakeover'>) =>
  lockDataFolder(dataDir, {
    onTakeover: (stale, reason) => options.onTakeover?.(`took over the data folder lock of ${stale === undefined ? 'an unknown holder' : describeHolder(stale)}: ${reason}`, stale),
  });

/** PostgreSQL when DATABASE_URL is set, else PGlite persisted under the data folder (taking its lock). */
export async function openDatabase(config: Config, options: OpenOptions = {}): Promise<Database> {
  if (config.databaseUrl !== undefined) {
    return openPostgres({ url: config.databaseUrl, appUrl: config.databaseAppUrl, poolSize: config.pgPoolSize, connectTimeoutMs: config.pgConnectTimeoutMs });
  }
  const lock = options.lock ?? (await lockFolder(config.dataDir, options));
  return openPGlite({ dataDir: path.join(config.dataDir, 'pgdata'), lock });
}

/**
 * The database as it becomes available. The HTTP server listens (and answers /healthz) while the
 * embedded database is still starting; until `set` is called, anything that needs the database
 * gets `not_ready` (503) instead of waiting.
 */
export interface DatabaseRef {
  get(): Database;
  set(db: Database): void;
  readonly ready: boolean;
  /** Resolves with the database once it is set (at once if it already is). */
  whenReady(): Promise<Database>;
}

export function databaseRef(initial?: Database): DatabaseRef {
  let current = initial;
  let resolveReady: ((db: Database) => void) | undefined;
  const ready = initial === undefined ? new Promise<Database>((resolve) => { resolveReady = resolve; }) : Promise.resolve(initial);
  return {
    get() {
      if (!current) throw new BulkheadError('not_ready', 'the database is still starting');
      return current;
    },
    set(db) {
      current = db;
      resolveReady?.(db);
    },
    get ready() {
      return current !== undefined;
    },
    whenReady: () => ready,
  };
}
