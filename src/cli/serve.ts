/**
 * `bulkhead serve`: listen first (so /healthz answers while the embedded database starts), then
 * open the database, migrate where appropriate, and become ready.
 */
import path from 'node:path';
import { Redis } from 'ioredis';
import { buildApp } from '../app.js';
import type { Config } from '../config.js';
import { migrate, schemaIsCurrent } from '../db/migrate.js';
import { databaseRef, lockEmbeddedDataFolder, openDatabase } from '../db/open.js';
import type { Database } from '../db/types.js';
import { createLogger } from '../logging.js';
import { systemRuntime } from '../runtime.js';
import { exitOnSignals } from './shutdown.js';
import { resolveSecrets } from '../secrets.js';

export type ServeRole = 'api' | 'worker' | 'all';

export async function serve(config: Config, role: ServeRole): Promise<void> {
  const logger = createLogger({ level: config.logLevel });
  // Before anything listens: a second server (or worker) on the same embedded data folder would
  // corrupt it, so it stops here, naming the holder (`data_folder_locked`). Its takeover warning
  // waits until the admin token line is out, so that line is the first thing a first start prints.
  let takeover: { message: string; stale: unknown } | undefined;
  const lock = await lockEmbeddedDataFolder(config, { onTakeover: (message, stale) => { takeover = { message, stale }; } });
  const resolved = await resolveSecrets(config);
  // Deliberately not through the logger, and before any JSON line: this is the one time the admin
  // token is shown, on the operator's terminal, and log pipelines must never carry it.
  if (resolved.generated.includes('adminToken') && resolved.file !== undefined) {
    process.stdout.write(`${adminTokenLine(resolved.secrets.adminToken, resolved.file)}\n`);
  }
  if (takeover !== undefined) logger.warn({ stale: takeover.stale }, takeover.message);
  if (resolved.generated.length > 0) {
    logger.warn({ file: resolved.file, generated: resolved.generated }, 'generated missing secrets into the data folder (development mode only)');
  }

  const db = databaseRef();
  const redis = config.redisUrl === undefined ? undefined : new Redis(config.redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 1 });
  redis?.on('error', (error) => { logger.warn({ err: error }, 'redis unavailable; rate limits fall back to per-process budgets'); });
  const app = await buildApp({ config, secrets: resolved.secrets, logger, db, runtime: systemRuntime, redis, role });
  const address = await app.http.listen({ host: config.host, port: config.port });
  app.core.setListeningOn(address);

  process.stdout.write(`Bulkhead ${role} listening on ${address}\n`);

  let database: Database | undefined;
  // From here a signal drains and exits, also while the database is still opening.
  exitOnSignals({
    graceMs: config.shutdownGraceMs,
    logger,
    stop: async (graceMs) => {
      await app.close(graceMs);
      await database?.close();
      await lock?.release(); // when the database never opened; a no-op after its close
      redis?.disconnect();
    },
  });
  try {
    database = await openDatabase(config, { lock });
    const embedded = config.databaseUrl === undefined;
    if (embedded || config.env === 'development') {
      const result = await migrate(database, config.appRole);
      if (result.applied.length > 0) logger.info({ applied: result.applied }, 'migrations applied');
    } else if (!(await schemaIsCurrent(database.owner))) {
      logger.error('database schema is behind this build: run `bulkhead migrate`; /readyz reports not ready until then');
    }
    db.set(database);
    logger.info({ database: database.kind }, 'ready');
  } catch (error) {
    logger.fatal({ err: error }, 'could not open the database');
    await app.close();
    await database?.close();
    await lock?.release();
    redis?.disconnect();
    process.exitCode = 1;
    return;
  }
}

/**
 * The first start's one plain line: the token, and the file it stays in (absolute, so it can be
 * found again from any directory; `jq -r .adminToken FILE` reads it back).
 */
export function adminTokenLine(adminToken: string, file: string): string {
  return `Admin token (first start; kept in ${path.resolve(file)} as "adminToken"): ${adminToken}`;
}
