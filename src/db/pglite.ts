/**
 * Embedded database: real PostgreSQL compiled to WASM, in this process, persisted to a folder.
 * PGlite has a single connection, so owner and app are the same pool; tenant transactions still
 * switch to the application role, and PGlite serialises transactions for us.
 */
import { PGlite } from '@electric-sql/pglite';
import type { DataFolderLock } from './data-folder-lock.js';
import type { Database, Pool, Queryable, QueryResult } from './types.js';
import { countStatements } from './statements.js';

/**
 * In memory (tests), optionally from a data-dir tarball (`dumpDataDir`: tests clone a migrated
 * template); or persisted to a folder, which needs that folder's lock (two processes on one
 * folder corrupt it: see data-folder-lock.ts). The lock is released when the database closes.
 */
export type PGliteOptions =
  | { readonly dataDir?: undefined; readonly loadDataDir?: Blob | File | undefined }
  | { readonly dataDir: string; readonly lock: DataFolderLock; readonly loadDataDir?: undefined };

function wrap(runner: Pick<PGlite, 'query' | 'exec'>): Queryable {
  return {
    async query<R extends object>(text: string, params: readonly unknown[] = []): Promise<QueryResult<R>> {
      countStatements();
      const result = await runner.query<R>(text, params as unknown[]);
      return { rows: result.rows, rowCount: result.affectedRows ?? result.rows.length };
    },
    async exec(script: string): Promise<void> {
      countStatements();
      await runner.exec(script);
    },
  };
}

export async function openPGlite(options: PGliteOptions = {}): Promise<Database & { readonly pglite: PGlite }> {
  const lock = options.dataDir === undefined ? undefined : options.lock;
  let pglite: PGlite;
  try {
    pglite = await PGlite.create({
      ...(options.dataDir === undefined ? {} : { dataDir: options.dataDir }),
      ...(options.loadDataDir === undefined ? {} : { loadDataDir: options.loadDataDir }),
    });
  } catch (error) {
    await lock?.release();
    throw error;
  }
  const pool: Pool = {
    ...wrap(pglite),
    transaction: (fn) => {
      // PGlite sends BEGIN and COMMIT (or ROLLBACK) itself, outside wrap: counted here.
      countStatements(2);
      return pglite.transaction((tx) => fn(wrap(tx)));
    },
  };
  return {
    kind: 'pglite',
    pglite,
    owner: pool,
    app: pool,
    // One process, one connection: a notification comes back to this same instance, on commit.
    listen(channel, handlers) {
      let closed = false;
      const unlisten = pglite.listen(channel, (payload) => {
        if (!closed) handlers.onNotification(payload);
      }).then(
        (stop) => {
          if (!closed) handlers.onListening();
          return stop;
        },
        (error: unknown) => {
          handlers.onDisconnected(error instanceof Error ? error : new Error(String(error)));
          return undefined;
        },
      );
      return {
        async close() {
          closed = true;
          const stop = await unlisten;
          // The database may already be closed, which ends the subscription as well.
          await stop?.().catch(() => undefined);
        },
      };
    },
    async close() {
      try {
        await pglite.close();
      } finally {
        await lock?.release();
      }
    },
  };
}
