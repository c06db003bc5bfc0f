// Benchmark "ingest": durable 202s per second through the full HTTP stack — authentication, rate
// limits, validation, quota check, rules evaluated, payload sealed, the event and its delivery
// committed in one transaction — against a bare Fastify route accepting the same body (no
// database) in the same run. The API process runs alone (`--role api`), so no delivery work
// competes. Target (issue 4): >= 5,000 events/s on PostgreSQL.
import { json, load, pct, rssMb } from './lib.mjs';
import { startBare, startBulkhead } from './api.mjs';

const TARGET_PER_SECOND = 5000;

export async function run({ durationSeconds, connections, rounds, postgresUrl, engines, log }) {
  const results = { benchmark: 'ingest', durationSeconds, connections, rounds, targetPerSecondOnPostgres: TARGET_PER_SECOND, engines: {} };
  let pass = true;
  for (const engine of engines) {
    log(`\n== ingest on ${engine} ==`);
    const bare = await startBare(engine, postgresUrl);
    const bulkhead = await startBulkhead(engine, postgresUrl, { BULKHEAD_EGRESS_ALLOW_CIDRS: '127.0.0.1/32' }, ['--role', 'api']);
    try {
      const admin = bulkhead.adminToken;
      const tenant = await json('POST', `${bulkhead.url}/v1/tenants`, admin, { name: 'Bench', slug: `bench-${engine}` });
      const workspace = await json('POST', `${bulkhead.url}/v1/tenants/${tenant.id}/workspaces`, admin, { name: 'p', environment: 'production' });
      const key = await json('POST', `${bulkhead.url}/v1/workspaces/${workspace.id}/api-keys`, admin, { name: 'bench', scopes: ['*'] });
      const destination = await json('POST', `${bulkhead.url}/v1/destinations`, key.key, { url: 'http://127.0.0.1:9/hook' });
      await json('POST', `${bulkhead.url}/v1/rules`, key.key, { name: 'invoices', eventTypes: ['invoice.*'], destinationIds: [destination.id] });
      const body = JSON.stringify({ type: 'invoice.paid', resource: 'invoice', resourceId: 'in_123', payload: { id: 'in_123', amount: 4200, currency: 'eur', customer: { id: 'cus_1', country: 'DE' } } });
      const headers = { authorization: `Bearer ${key.key}`, 'content-type': 'application/json' };
      const BATCH = 50;
      const batchBody = JSON.stringify({ events: Array.from({ length: BATCH }, () => JSON.parse(body)) });
      const sides = {
        bare: { url: `${bare.url}/bare`, method: 'POST', headers, body },
        bulkhead: { url: `${bulkhead.url}/v1/events`, method: 'POST', headers, body },
        batch: { url: `${bulkhead.url}/v1/events/batch`, method: 'POST', headers, body: batchBody },
      };
      for (const side of Object.values(sides)) await load({ ...side, durationSeconds: 1, connections });
      const runs = { bare: [], bulkhead: [], batch: [] };
      for (let r = 0; r < rounds; r++) {
        for (const [name, side] of Object.entries(sides)) {
          const measured = await load({ ...side, durationSeconds, connections });
          if (measured.errors > 0 || measured.non2xx > 0) throw new Error(`${engine} ${name}: ${measured.errors} errors, ${measured.non2xx} non-2xx; the run is not valid`);
          runs[name].push(measured);
        }
      }
      const mean = (list, field) => list.reduce((a, b) => a + b[field], 0) / list.length;
      const bareRps = Math.round(mean(runs.bare, 'requestsPerSecond'));
      const rps = Math.round(mean(runs.bulkhead, 'requestsPerSecond'));
      const p99 = mean(runs.bulkhead, 'p99Ms');
      const batchEvents = Math.round(mean(runs.batch, 'requestsPerSecond') * BATCH);
      const ok = engine !== 'postgres' || rps >= TARGET_PER_SECOND;
      pass &&= ok;
      log(`bare ${bareRps} req/s p99 ${mean(runs.bare, 'p99Ms').toFixed(1)} ms | bulkhead ${rps} durable events/s p99 ${p99.toFixed(1)} ms | ratio ${pct(rps / bareRps)}${engine === 'postgres' ? ` (target >= ${TARGET_PER_SECOND}/s: ${ok ? 'PASS' : 'FAIL'})` : ''}`);
      log(`batches of ${BATCH}: ${batchEvents} durable events/s (p99 ${mean(runs.batch, 'p99Ms').toFixed(1)} ms per batch)`);
      results.engines[engine] = { bare: { requestsPerSecond: bareRps }, bulkhead: { eventsPerSecond: rps, p99Ms: p99 }, batch: { size: BATCH, eventsPerSecond: batchEvents }, ratio: rps / bareRps, pass: ok, rssMb: rssMb(bulkhead.child.pid), runs };
    } finally {
      await bulkhead.cleanup();
      await bare.cleanup();
    }
  }
  return { results, pass };
}
