// Benchmark "api": the authenticated request path through the full stack (key checksum, HMAC
// lookup, cache, scope, three rate-limit budgets, workspace transaction with RLS, audit append on
// writes) against a bare Fastify route in the same run, on PGlite and on PostgreSQL.
//
// Target (issue 2): the authenticated read keeps at least 50% of the bare route's throughput.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { json, load, msUntilOk, pct, ratio, rssMb, startChild } from './lib.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const READ_TARGET = 0.5;

const secret = () => randomBytes(32).toString('base64url');

/** A fresh PostgreSQL database for one side of a run; `drop()` removes it (and `role`, if given). */
export async function benchDatabase(postgresUrl, prefix, name = `${prefix}_${randomBytes(4).toString('hex')}`) {
  const sql = async (text) => {
    const admin = new pg.Client({ connectionString: postgresUrl });
    await admin.connect();
    try {
      await admin.query(text);
    } finally {
      await admin.end();
    }
  };
  await sql(`CREATE DATABASE ${name}`);
  const url = new URL(postgresUrl);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    async drop(role) {
      await sql(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      if (role !== undefined) await sql(`DROP ROLE IF EXISTS ${role}`);
    },
  };
}

export async function startBulkhead(engine, postgresUrl, extraEnv = {}, args = []) {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'bulkhead-bench-'));
  const env = {
    BULKHEAD_ENV: 'development',
    BULKHEAD_DATA_DIR: dataDir,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    BULKHEAD_ADMIN_TOKEN: secret(),
    BULKHEAD_API_KEY_PEPPER: secret(),
    BULKHEAD_ROOT_KEYS: `1:${randomBytes(32).toString('base64')}`,
    // The bench measures the request path, not the limiter refusing it: budgets far above the load.
    BULKHEAD_RATE_LIMIT_KEY_PER_MINUTE: '10000000',
    BULKHEAD_RATE_LIMIT_WORKSPACE_PER_MINUTE: '10000000',
    BULKHEAD_RATE_LIMIT_TENANT_PER_MINUTE: '10000000',
  };
  const database = engine === 'postgres' ? await benchDatabase(postgresUrl, 'bk_bench') : undefined;
  if (database) {
    env.DATABASE_URL = database.url;
    env.BULKHEAD_DB_APP_ROLE = `${database.name}_app`;
  }
  const childEnv = { ...env, DATABASE_URL: env.DATABASE_URL ?? '', ...extraEnv };
  const serveArgs = (more) => [...(process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : []), path.join(root, 'dist/main.js'), 'serve', ...more];
  const server = await startChild(serveArgs(args), childEnv);
  const extra = [];
  const cleanup = async () => {
    for (const child of extra) await child.stop();
    await server.stop();
    await rm(dataDir, { recursive: true, force: true });
    await database?.drop(env.BULKHEAD_DB_APP_ROLE);
  };
  try {
    const healthzMs = await msUntilOk(`${server.url}/healthz`, server.startedAt);
    const readyzMs = await msUntilOk(`${server.url}/readyz`, server.startedAt);
    /** Another `serve` process on the same database and secrets (e.g. `['--role', 'worker']`); stopped by cleanup. */
    const startSibling = async (siblingArgs) => {
      if (!database) throw new Error('a second process needs PostgreSQL: the embedded database admits one process');
      const sibling = await startChild(serveArgs(siblingArgs), { ...childEnv, PORT: '0' });
      extra.push(sibling);
      await msUntilOk(`${sibling.url}/readyz`, sibling.startedAt);
      return sibling;
    };
    return { ...server, adminToken: env.BULKHEAD_ADMIN_TOKEN, database: database?.name ?? null, healthzMs, readyzMs, cleanup, startSibling };
  } catch (error) {
    // A server that never became ready must not outlive the run (nor its database).
    await cleanup();
    throw error;
  }
}

async function provision(bulkhead) {
  const admin = bulkhead.adminToken;
  const tenant = await json('POST', `${bulkhead.url}/v1/tenants`, admin, { name: 'Bench', slug: `bench-${randomBytes(3).toString('hex')}` });
  const workspace = await json('POST', `${bulkhead.url}/v1/tenants/${tenant.id}/workspaces`, admin, { name: 'production', environment: 'production' });
  const key = await json('POST', `${bulkhead.url}/v1/workspaces/${workspace.id}/api-keys`, admin, { name: 'bench', scopes: ['keys:manage', 'audit:read'] });
  return key;
}

function check(label, run) {
  if (run.errors > 0 || run.non2xx > 0) throw new Error(`${label}: ${run.errors} errors and ${run.non2xx} non-2xx answers; the run is not valid`);
  return run;
}

export async function startBare(engine, postgresUrl) {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'bulkhead-bench-bare-'));
  const database = engine === 'postgres' ? await benchDatabase(postgresUrl, 'bk_bench_bare') : undefined;
  const env = { BARE_DATA_DIR: dataDir, BARE_DATABASE_URL: database?.url ?? '' };
  const bare = await startChild([path.join(root, 'bench/bare-server.mjs')], env);
  const firstResponseMs = await msUntilOk(`${bare.url}/healthz`, bare.startedAt);
  return {
    ...bare,
    firstResponseMs,
    async cleanup() {
      await bare.stop();
      await rm(dataDir, { recursive: true, force: true });
      await database?.drop();
    },
  };
}

const mean = (list, field) => list.reduce((sum, r) => sum + r[field], 0) / list.length;

/** Runs every side of a scenario `rounds` times, alternating, so drift on a shared machine hits all alike. */
async function measure(label, sides, { rounds, durationSeconds, connections }) {
  const runs = Object.fromEntries(Object.keys(sides).map((side) => [side, []]));
  for (let round = 0; round < rounds; round++) {
    for (const [side, request] of Object.entries(sides)) {
      runs[side].push(check(`${label} ${side}`, await load({ ...request, durationSeconds, connections })));
    }
  }
  return Object.fromEntries(Object.entries(runs).map(([side, list]) => [side, {
    requestsPerSecond: Math.round(mean(list, 'requestsPerSecond')),
    p99Ms: mean(list, 'p99Ms'),
    runs: list,
  }]));
}

const line = (name, r) => `${name} ${String(r.requestsPerSecond).padStart(6)} req/s p99 ${r.p99Ms.toFixed(1).padStart(5)} ms`;

export async function run({ durationSeconds, connections, rounds, postgresUrl, engines, log }) {
  const results = { benchmark: 'api', durationSeconds, connections, rounds, target: { readVsBare: READ_TARGET }, engines: {} };
  const options = { rounds, durationSeconds, connections };
  let pass = true;
  for (const engine of engines) {
    log(`\n== api on ${engine} ==`);
    const bare = await startBare(engine, postgresUrl);
    const bulkhead = await startBulkhead(engine, postgresUrl);
    try {
      const key = await provision(bulkhead);
      await json('PUT', `${bare.url}/bare-db/${key.id}`, 'none');
      const auth = { authorization: `Bearer ${key.key}` };
      const write = { ...auth, 'content-type': 'application/json' };
      const writeBody = JSON.stringify({ name: 'bench write', scopes: ['audit:read'] });
      const read = {
        bare: { url: `${bare.url}/bare/${key.id}` },
        bareDb: { url: `${bare.url}/bare-db/${key.id}` },
        bulkhead: { url: `${bulkhead.url}/v1/api-keys/${key.id}`, headers: auth },
      };
      // Warm every side (JIT, pools, the key cache) before anything is measured.
      for (const request of Object.values(read)) await load({ ...request, durationSeconds: 1, connections });

      const readResult = await measure(`${engine} read`, read, options);
      const readVsBare = ratio(readResult.bulkhead.requestsPerSecond, readResult.bare.requestsPerSecond);
      const readVsBareDb = ratio(readResult.bulkhead.requestsPerSecond, readResult.bareDb.requestsPerSecond);
      const readPass = readVsBare >= READ_TARGET;
      pass &&= readPass;
      log(`read   ${line('bare', readResult.bare)} | ${line('bare+db', readResult.bareDb)} | ${line('bulkhead', readResult.bulkhead)}`);
      log(`       bulkhead/bare ${pct(readVsBare)} (target ≥ ${pct(READ_TARGET)}: ${readPass ? 'PASS' : 'FAIL'}) | bulkhead/bare+db ${pct(readVsBareDb)}`);

      const writeResult = await measure(`${engine} write`, {
        bare: { url: `${bare.url}/bare`, method: 'POST', headers: write, body: writeBody },
        bulkhead: { url: `${bulkhead.url}/v1/api-keys`, method: 'POST', headers: write, body: writeBody },
      }, options);
      const writeVsBare = ratio(writeResult.bulkhead.requestsPerSecond, writeResult.bare.requestsPerSecond);
      log(`write  ${line('bare', writeResult.bare)} | ${line('bulkhead', writeResult.bulkhead)} | bulkhead/bare ${pct(writeVsBare)}`);

      const engineResult = {
        read: { ...readResult, ratioVsBare: readVsBare, ratioVsBareDb: readVsBareDb, pass: readPass },
        write: { ...writeResult, ratioVsBare: writeVsBare },
        startup: { bareFirstResponseMs: Math.round(bare.firstResponseMs), healthzMs: Math.round(bulkhead.healthzMs), readyzMs: Math.round(bulkhead.readyzMs) },
        rssMb: { bare: rssMb(bare.child.pid), bulkhead: rssMb(bulkhead.child.pid) },
      };
      log(`start  bare first response ${engineResult.startup.bareFirstResponseMs} ms | bulkhead /healthz ${engineResult.startup.healthzMs} ms, /readyz ${engineResult.startup.readyzMs} ms (fresh data folder, migrations included)`);
      log(`rss    after load: bare ${engineResult.rssMb.bare} MiB | bulkhead ${engineResult.rssMb.bulkhead} MiB`);
      results.engines[engine] = engineResult;
    } finally {
      await bulkhead.cleanup();
      await bare.cleanup();
    }
  }
  return { results, pass };
}
