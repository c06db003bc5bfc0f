// The systems the e2e benchmark compares, each started as its own child process that takes
// Bulkhead's batch-ingest body at POST /v1/events/batch and delivers to the same receiver:
//   bulkhead     `node dist/main.js serve`, role all, default settings (bench/api.mjs)
//   hand-rolled  the PostgreSQL queue a team writes in a day (bench/baselines/hand-rolled-pg.mjs)
//   bullmq       BullMQ on Redis (bench/baselines/bullmq.mjs)
// and the meters read around them: a database's backends' CPU and its transaction count.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchDatabase } from './api.mjs';
import { startChild } from './lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

/** CPU seconds (user + system) a process has used, from /proc (Linux); null elsewhere or once it is gone. */
export async function cpuSeconds(pid) {
  try {
    const { readFile } = await import('node:fs/promises');
    const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

/**
 * The CPU used by one database's backends (the processes PostgreSQL forks per connection) since
 * `start()`. `sample()` lists the database's backends in `pg_stat_activity` and reads each one's
 * /proc; a backend that appears later counts from zero (its fork and login are part of the
 * cost), one that exits between samples loses what it used since the last sample. Background
 * processes (WAL writer, checkpointer) are not counted: they serve every database on the server.
 */
export function backendCpu(admin, datname) {
  const seen = new Map();
  let started = false;
  return {
    async sample() {
      const { rows } = await admin.query('SELECT pid FROM pg_stat_activity WHERE datname = $1', [datname]);
      for (const { pid } of rows) {
        const cpu = await cpuSeconds(pid);
        if (cpu === null) continue;
        const entry = seen.get(pid);
        if (entry) entry.last = cpu;
        else seen.set(pid, { first: started ? 0 : cpu, last: cpu });
      }
      started = true;
    },
    total: () => [...seen.values()].reduce((a, e) => a + e.last - e.first, 0),
  };
}

/** Committed + rolled-back transactions of one database so far (backends report them up to ~1 s late, idle ones up to 10 s). */
export async function transactions(admin, datname) {
  const { rows } = await admin.query('SELECT (xact_commit + xact_rollback)::bigint AS n FROM pg_stat_database WHERE datname = $1', [datname]);
  return Number(rows[0]?.n ?? NaN);
}

const webhookSecret = () => `whsec_${randomBytes(32).toString('base64')}`;
const stats = (url) => fetch(`${url}/stats`).then((r) => r.json());

/** The hand-rolled PostgreSQL queue in its own fresh database, dropped by `stop()`. */
export async function startHandRolled(postgresUrl, receiver) {
  const database = await benchDatabase(postgresUrl, 'bench_handrolled', `bench_handrolled_${process.pid}`);
  let child;
  try {
    child = await startChild([path.join(here, 'baselines/hand-rolled-pg.mjs')], { DATABASE_URL: database.url, RECEIVER_URL: `${receiver.url}/handrolled`, WEBHOOK_SECRET: webhookSecret() });
  } catch (error) {
    await database.drop();
    throw error;
  }
  return {
    name: 'hand-rolled',
    label: 'handrolled',
    url: child.url,
    key: 'unused',
    pid: child.child.pid,
    store: 'postgres',
    database: database.name,
    async verify() {
      const counts = await stats(child.url);
      const left = Object.entries(counts).filter(([status, n]) => status !== 'done' && n > 0);
      if (left.length > 0) throw new Error(`hand-rolled: deliveries left ${left.map(([s, n]) => `${n} ${s}`).join(', ')}; the run is not valid`);
    },
    async stop() {
      await child.stop();
      await database.drop();
    },
  };
}

/** BullMQ on Redis with a queue name of its own; `stop()` obliterates it and removes any key left. */
export async function startBullmq(redisUrl, receiver) {
  const { Redis } = await import('ioredis');
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  const redisPid = Number(/process_id:(\d+)/.exec(await redis.info('server'))?.[1]);
  const queue = `bench-e2e-${process.pid}-${randomBytes(4).toString('hex')}`;
  let child;
  try {
    child = await startChild([path.join(here, 'baselines/bullmq.mjs')], { REDIS_URL: redisUrl, QUEUE: queue, RECEIVER_URL: `${receiver.url}/bullmq`, WEBHOOK_SECRET: webhookSecret() });
  } catch (error) {
    redis.disconnect();
    throw error;
  }
  return {
    name: 'bullmq',
    label: 'bullmq',
    url: child.url,
    key: 'unused',
    pid: child.child.pid,
    store: 'redis',
    storePid: Number.isFinite(redisPid) ? redisPid : null,
    async verify() {
      const counts = await stats(child.url);
      const left = Object.entries(counts).filter(([state, n]) => state !== 'completed' && n > 0);
      if (left.length > 0) throw new Error(`bullmq: jobs left ${left.map(([s, n]) => `${n} ${s}`).join(', ')}; the run is not valid`);
    },
    async stop() {
      await child.stop();
      // The child obliterates its queue on SIGTERM; whatever a crash left behind goes here.
      const keys = [];
      let cursor = '0';
      do {
        const [next, batch] = await redis.scan(cursor, 'MATCH', `bull:${queue}:*`, 'COUNT', 1000);
        cursor = next;
        keys.push(...batch);
      } while (cursor !== '0');
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
      return { leftoverKeys: keys.length };
    },
  };
}

/** Whether Redis answers at `redisUrl` within a second. */
export async function redisReachable(redisUrl) {
  const { Redis } = await import('ioredis');
  const redis = new Redis(redisUrl, { lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  try {
    await redis.connect();
    await redis.ping();
    return true;
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}
