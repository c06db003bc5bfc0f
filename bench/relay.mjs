// Benchmark "relay": a call through `GET /v1/proxy/{connection}/...` (auth, cached credential,
// injection, egress policy, scrubbing, batched metadata log) against calling the same local
// upstream directly with undici, in the same run. Both sides are driven by the same undici load
// generator from this process; the upstream runs in its own process.
//
// Targets (issue 3): relay throughput >= 50% of direct, and <= 1 ms added p50 latency (measured
// with one request in flight, where latency is not queueing).
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { json, msUntilOk, pct, startChild, undiciLoad } from './lib.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const THROUGHPUT_TARGET = 0.5;
const ADDED_P50_TARGET_MS = 1;

export async function run({ durationSeconds, connections, rounds, log }) {
  log('\n== relay: through Bulkhead vs direct to the same upstream (PGlite; the steady state touches no database) ==');
  const upstream = await startChild([path.join(root, 'bench/upstream-server.mjs')], {});
  const dataDir = await mkdtemp(path.join(tmpdir(), 'bulkhead-bench-relay-'));
  const adminToken = randomBytes(32).toString('base64url');
  const bulkhead = await startChild([...(process.env.BENCH_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir=/tmp/prof-relay'] : []), path.join(root, 'dist/main.js'), 'serve'], {
    BULKHEAD_ENV: 'development',
    BULKHEAD_DATA_DIR: dataDir,
    DATABASE_URL: '',
    PORT: '0',
    LOG_LEVEL: 'warn',
    BULKHEAD_ADMIN_TOKEN: adminToken,
    BULKHEAD_EGRESS_ALLOW_CIDRS: '127.0.0.1/32',
    BULKHEAD_RATE_LIMIT_KEY_PER_MINUTE: '10000000',
    BULKHEAD_RATE_LIMIT_WORKSPACE_PER_MINUTE: '10000000',
    BULKHEAD_RATE_LIMIT_TENANT_PER_MINUTE: '10000000',
  });
  const bareProxy = await startChild([path.join(root, 'bench/bare-proxy.mjs')], { BARE_PROXY_UPSTREAM: upstream.url });
  try {
    await msUntilOk(`${bulkhead.url}/readyz`, bulkhead.startedAt);
    await json('POST', `${bulkhead.url}/v1/providers`, adminToken, { key: 'bench-api', name: 'Bench API', authType: 'api_key', baseUrls: [upstream.url], apiKey: { in: 'header', name: 'Authorization', prefix: 'Bearer ' } });
    const tenant = await json('POST', `${bulkhead.url}/v1/tenants`, adminToken, { name: 'Bench', slug: 'bench' });
    const workspace = await json('POST', `${bulkhead.url}/v1/tenants/${tenant.id}/workspaces`, adminToken, { name: 'p', environment: 'production' });
    const key = await json('POST', `${bulkhead.url}/v1/workspaces/${workspace.id}/api-keys`, adminToken, { name: 'bench', scopes: ['proxy', 'connections:write'] });
    const connection = await json('POST', `${bulkhead.url}/v1/connections`, key.key, { provider: 'bench-api', name: 'bench', credentials: { apiKey: `sk_bench_${randomBytes(16).toString('hex')}` } });

    const sides = {
      direct: { url: `${upstream.url}/v1/customers/cus_123`, headers: { authorization: 'Bearer sk_direct' } },
      bareProxy: { url: `${bareProxy.url}/v1/customers/cus_123` },
      relay: { url: `${bulkhead.url}/v1/proxy/${connection.id}/v1/customers/cus_123`, headers: { authorization: `Bearer ${key.key}` } },
    };
    for (const side of Object.values(sides)) await undiciLoad({ ...side, durationSeconds: 1, concurrency: connections });

    const results = {};
    for (const [mode, concurrency] of [['throughput', connections], ['latency', 1]]) {
      const runs = { direct: [], bareProxy: [], relay: [] };
      for (let r = 0; r < rounds; r++) {
        for (const [name, side] of Object.entries(sides)) {
          const measured = await undiciLoad({ ...side, durationSeconds, concurrency });
          if (measured.errors > 0 || measured.non2xx > 0) throw new Error(`${name}: ${measured.errors} errors, ${measured.non2xx} non-2xx; the run is not valid`);
          runs[name].push(measured);
        }
      }
      const mean = (list, field) => list.reduce((a, b) => a + b[field], 0) / list.length;
      results[mode] = Object.fromEntries(Object.entries(runs).map(([name, list]) => [name, {
        requestsPerSecond: Math.round(mean(list, 'requestsPerSecond')), p50Ms: mean(list, 'p50Ms'), p99Ms: mean(list, 'p99Ms'), runs: list,
      }]));
      const line = (name, r) => `${name} ${r.requestsPerSecond} req/s p50 ${r.p50Ms.toFixed(2)} ms p99 ${r.p99Ms.toFixed(2)} ms`;
      log(`${mode.padEnd(10)} (${concurrency} in flight) ${line('direct', results[mode].direct)} | ${line('bare proxy', results[mode].bareProxy)} | ${line('relay', results[mode].relay)}`);
    }
    const ratio = results.throughput.relay.requestsPerSecond / results.throughput.direct.requestsPerSecond;
    const addedP50 = results.latency.relay.p50Ms - results.latency.direct.p50Ms;
    const addedP99 = results.latency.relay.p99Ms - results.latency.direct.p99Ms;
    const vsBareProxy = results.throughput.relay.requestsPerSecond / results.throughput.bareProxy.requestsPerSecond;
    const bareProxyVsDirect = results.throughput.bareProxy.requestsPerSecond / results.throughput.direct.requestsPerSecond;
    const pass = ratio >= THROUGHPUT_TARGET && addedP50 <= ADDED_P50_TARGET_MS;
    log(`context: a bare Fastify+undici pass-through keeps ${pct(bareProxyVsDirect)} of direct; the relay keeps ${pct(vsBareProxy)} of that bare proxy`);
    log(`relay/direct throughput ${pct(ratio)} (target >= ${pct(THROUGHPUT_TARGET)}: ${ratio >= THROUGHPUT_TARGET ? 'PASS' : 'FAIL'}) | added p50 ${addedP50.toFixed(2)} ms (target <= ${ADDED_P50_TARGET_MS} ms: ${addedP50 <= ADDED_P50_TARGET_MS ? 'PASS' : 'FAIL'}) | added p99 ${addedP99.toFixed(2)} ms`);
    return { results: { benchmark: 'relay', durationSeconds, rounds, concurrency: connections, ...results, throughputRatio: ratio, relayVsBareProxy: vsBareProxy, bareProxyVsDirect, addedP50Ms: addedP50, addedP99Ms: addedP99, targets: { throughputRatio: THROUGHPUT_TARGET, addedP50Ms: ADDED_P50_TARGET_MS }, pass }, pass };
  } finally {
    await bulkhead.stop();
    await bareProxy.stop();
    await upstream.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}
