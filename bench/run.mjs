// `npm run bench [-- <name…>] [--duration S] [--connections N] [--rounds R] [--engine pglite|postgres] [--backlog N]`
//
// Each benchmark measures Bulkhead against a baseline in the same run and prints the ratio;
// machines are shared and noisy, so the ratio is the figure that matters, not the absolute
// numbers. Results also go to bench/results/<name>-<time>.json (git-ignored). Exit code 1 when a
// target is missed or a run was invalid (errors or non-2xx answers).
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';

const here = path.dirname(fileURLToPath(import.meta.url));
const benchmarks = { api: () => import('./api.mjs'), vault: () => import('./vault.mjs'), relay: () => import('./relay.mjs'), ingest: () => import('./ingest.mjs'), e2e: () => import('./e2e.mjs'), fairness: () => import('./fairness.mjs'), sandbox: () => import('./sandbox.mjs'), transform: () => import('./transform.mjs') };

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    duration: { type: 'string', default: '5' },
    connections: { type: 'string', default: '20' },
    rounds: { type: 'string', default: '2' },
    engine: { type: 'string', multiple: true },
    // fairness: deliveries queued in the noisy workspace before the quiet one is measured.
    backlog: { type: 'string', default: '100000' },
  },
});
const names = positionals.length > 0 ? positionals : Object.keys(benchmarks);
for (const name of names) if (!(name in benchmarks)) throw new Error(`unknown benchmark ${name}; known: ${Object.keys(benchmarks).join(', ')}`);

const postgresUrl = process.env.BULKHEAD_BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
let engines = values.engine ?? ['pglite', 'postgres'];
if (engines.includes('postgres')) {
  const client = new pg.Client({ connectionString: postgresUrl, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.end();
  } catch (error) {
    if (values.engine) throw error;
    process.stderr.write(`\n!!! PostgreSQL is not reachable at ${postgresUrl} (${error.message}); benchmarking PGlite only !!!\n\n`);
    engines = engines.filter((e) => e !== 'postgres');
  }
}

const log = (line) => process.stdout.write(`${line}\n`);
log(`node ${process.version}, ${names.join(', ')}; ${values.duration} s × ${values.rounds} rounds per side, ${values.connections} connections`);
let allPass = true;
await mkdir(path.join(here, 'results'), { recursive: true });
for (const name of names) {
  const { run } = await benchmarks[name]();
  const { results, pass } = await run({
    durationSeconds: Number(values.duration),
    connections: Number(values.connections),
    rounds: Number(values.rounds),
    postgresUrl,
    engines,
    backlog: Number(values.backlog),
    log,
  });
  allPass &&= pass;
  const file = path.join(here, 'results', `${name}-${new Date().toISOString().replaceAll(':', '-')}.json`);
  await writeFile(file, `${JSON.stringify({ node: process.version, at: new Date().toISOString(), ...results }, null, 2)}\n`);
  log(`${name}: ${pass ? 'PASS' : 'FAIL'} (${path.relative(process.cwd(), file)})`);
}
process.exitCode = allPass ? 0 : 1;
