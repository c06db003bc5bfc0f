// Benchmark "e2e": events ingested → delivered (signed, sent, attempt recorded) to a local
// receiver, against an undici client posting the same signed bodies to the same receiver with no
// queue, in the same run. Bulkhead runs as users run it by default: one `serve` process, role
// `all` (API and delivery worker together), default worker settings.
//
// Each round: the baseline for `durationSeconds`, then Bulkhead under concurrent batch ingest for
// `durationSeconds` ("sustained": deliveries per second while ingest continues; ingest goes as
// fast as it can while at most MAX_BACKLOG events wait), then ingest stops and the backlog left
// behind drains ("drain": backlog / time to the last delivery). Every event must arrive exactly
// once and no delivery may be left undelivered, or the run is invalid.
//
// Target (issue 5): sustained ≥ 5,000 deliveries/s on PostgreSQL, i.e. ≥ 10% of the raw rate.
import { createHmac } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { json, pct, ratio, rssMb, startChild, undiciLoad } from './lib.mjs';
import { startBulkhead } from './api.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const TARGET_PER_SECOND = 5000;
const TARGET_RATIO = 0.1;
const BATCH = 100;
const INGEST_CONNECTIONS = 2;
const MAX_BACKLOG = 2000;
const DRAIN_TIMEOUT_MS = 90_000;

/**
 * The settings that bound delivery throughput, as the child will see them: the bench's own
 * environment (passed through to Bulkhead, so `BULKHEAD_WORKER_CONCURRENCY=64 npm run bench …`
 * measures a tuned worker) or the built defaults.
 */
export async function engineSettings() {
  const { settings } = await import('../dist/config.js');
  return Object.fromEntries(Object.values(settings)
    .filter((s) => /^BULKHEAD_(WORKER_|DESTINATION_MAX_IN_FLIGHT|PG_POOL_SIZE)/.test(s.name))
    .map((s) => [s.name, process.env[s.name] || s.default]));
}
export const describeSettings = (values) => Object.entries(values).map(([name, value]) => `${name.replace('BULKHEAD_', '')}=${value}`).join(', ');

export const epochNow = () => performance.timeOrigin + performance.now();
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
export const startReceiver = () => startChild([path.join(here, 'receiver.mjs')], {});
export const receiverStats = (receiver) => fetch(`${receiver.url}/stats`).then((r) => r.json());

/** A tenant, a workspace, a `*` key, one destination at `url` and one rule sending `type` there. */
export async function provisionRoute(bulkhead, slug, url, type) {
  const admin = bulkhead.adminToken;
  const tenant = await json('POST', `${bulkhead.url}/v1/tenants`, admin, { name: slug, slug });
  const workspace = await json('POST', `${bulkhead.url}/v1/tenants/${tenant.id}/workspaces`, admin, { name: 'production', environment: 'production' });
  const key = await json('POST', `${bulkhead.url}/v1/workspaces/${workspace.id}/api-keys`, admin, { name: 'bench', scopes: ['*'] });
  const destination = await json('POST', `${bulkhead.url}/v1/destinations`, key.key, { url });
  const rule = await json('POST', `${bulkhead.url}/v1/rules`, key.key, { name: slug, eventTypes: [type], destinationIds: [destination.id] });
  return { workspaceId: workspace.id, key: key.key, destination, rule };
}

/** Posts batches of `await events()` from `connections` closed loops until `until` (performance.now()) or `events()` gives null; every non-202 is an error. */
export async function ingestUntil({ url, key, until, connections, events }) {
  const { Agent, request } = await import('undici');
  const dispatcher = new Agent({ connections, keepAliveTimeout: 30_000 });
  let accepted = 0;
  let requests = 0;
  const started = performance.now();
  const loop = async () => {
    while (performance.now() < until) {
      const list = await events();
      if (list === null) return;
      const response = await request(`${url}/v1/events/batch`, { dispatcher, method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ events: list }) });
      const text = await response.body.text();
      if (response.statusCode !== 202) throw new Error(`batch ingest → ${response.statusCode}: ${text.slice(0, 300)}`);
      accepted += list.length;
      requests++;
    }
  };
  await Promise.all(Array.from({ length: connections }, loop));
  await dispatcher.close();
  return { accepted, requests, seconds: (performance.now() - started) / 1000 };
}

/** Throws unless the workspace has no delivery left in any state but `delivered`. */
export async function assertAllDelivered(bulkhead, key, label) {
  for (const status of ['pending', 'retrying', 'delivering', 'failed', 'cancelled']) {
    const page = await json('GET', `${bulkhead.url}/v1/deliveries?status=${status}&limit=1`, key);
    if (page.data.length > 0) throw new Error(`${label}: a delivery is still ${status} (${page.data[0].id}, last error ${page.data[0].lastError ?? page.data[0].lastStatus}); the run is not valid`);
  }
}

/** CPU seconds (user + system) a process has used, from /proc (Linux); null elsewhere. */
export async function cpuSeconds(pid) {
  try {
    const { readFile } = await import('node:fs/promises');
    const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

/** Busy and total jiffies of the whole machine, from /proc/stat; null elsewhere. */
export async function machineCpu() {
  try {
    const { readFile } = await import('node:fs/promises');
    const [, ...values] = (await readFile('/proc/stat', 'utf8')).split('\n')[0].trim().split(/\s+/).map(Number);
    const idle = values[3] + values[4];
    const total = values.reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  } catch {
    return null;
  }
}
const busyShare = (a, b) => (a && b && b.total > a.total ? (b.busy - a.busy) / (b.total - a.total) : null);

function body(type, payload) {
  return `{"type":${JSON.stringify(type)},"timestamp":${JSON.stringify(new Date().toISOString())},"data":${JSON.stringify(payload)}}`;
}

const PAYLOAD = { id: 'in_123', amount: 4200, currency: 'eur', customer: { id: 'cus_1', country: 'DE' } };

export async function run({ durationSeconds, rounds, postgresUrl, engines, log }) {
  const worker = await engineSettings();
  const concurrency = Number(worker.BULKHEAD_WORKER_CONCURRENCY);
  const results = { benchmark: 'e2e', durationSeconds, rounds, target: { perSecondOnPostgres: TARGET_PER_SECOND, ratio: TARGET_RATIO }, setup: { role: 'all', worker, ingest: { batch: BATCH, connections: INGEST_CONNECTIONS, maxBacklog: MAX_BACKLOG }, baselineConcurrency: concurrency }, engines: {} };
  let pass = true;
  for (const engine of engines) {
    log(`\n== e2e on ${engine}: one \`serve\` process, role all (${describeSettings(worker)}); baseline: undici, ${concurrency} in flight ==`);
    const receiver = await startReceiver();
    let bulkhead;
    try {
      bulkhead = await startBulkhead(engine, postgresUrl, { BULKHEAD_EGRESS_ALLOW_CIDRS: '127.0.0.1/32' });
      const route = await provisionRoute(bulkhead, `e2e-${engine}`, `${receiver.url}/e2e`, 'invoice.paid');
      // The baseline sends what the engine sends: the same body shape and size, Standard Webhooks headers.
      const sample = body('invoice.paid', PAYLOAD);
      const timestamp = String(Math.floor(Date.now() / 1000));
      const messageId = 'dlv_01jd0000000000000000000000';
      const signature = createHmac('sha256', Buffer.from(route.destination.secret.slice('whsec_'.length), 'base64')).update(`${messageId}.${timestamp}.${sample}`).digest('base64');
      const baselineRequest = {
        url: `${receiver.url}/base`,
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'Bulkhead-Webhooks/1', 'webhook-id': messageId, 'webhook-timestamp': timestamp, 'webhook-signature': `v1,${signature}` },
        body: sample,
        concurrency,
      };
      await undiciLoad({ ...baselineRequest, durationSeconds: 1 });
      // Warm Bulkhead too (JIT, pools, key and DEK caches): a few batches, delivered before anything is measured.
      const warm = await ingestUntil({ url: bulkhead.url, key: route.key, until: performance.now() + 1000, connections: 1, events: () => Array.from({ length: BATCH }, () => ({ type: 'invoice.paid', payload: PAYLOAD })) });
      let expected = warm.accepted;
      for (let deadline = performance.now() + DRAIN_TIMEOUT_MS; ((await receiverStats(receiver)).labels.e2e?.unique ?? 0) < expected;) {
        if (performance.now() > deadline) throw new Error(`${engine}: the warm-up's ${expected} events were not delivered within ${DRAIN_TIMEOUT_MS} ms`);
        await sleep(100);
      }

      const baselineRuns = [];
      const roundsOut = [];
      for (let round = 0; round < rounds; round++) {
        const [clientCpu0, receiverCpu0] = [process.cpuUsage(), await cpuSeconds(receiver.child.pid)];
        const baseline = await undiciLoad({ ...baselineRequest, durationSeconds });
        const clientCpu = process.cpuUsage(clientCpu0);
        const baselineCpuMs = ((clientCpu.user + clientCpu.system) / 1000 + ((await cpuSeconds(receiver.child.pid)) - receiverCpu0) * 1000) / baseline.requests;
        if (baseline.errors > 0 || baseline.non2xx > 0) throw new Error(`${engine} baseline: ${baseline.errors} errors, ${baseline.non2xx} non-2xx; the run is not valid`);
        baselineRuns.push(baseline);

        // Sustained: deliveries while ingest goes on. The rate is the receiver's count between a
        // sample one fifth into the window (past the first poll and the pipeline filling) and its end.
        const samples = [];
        const startCount = (await receiverStats(receiver)).labels.e2e.unique;
        const ingestStarted = performance.now();
        const until = ingestStarted + durationSeconds * 1000;
        const [cpu0, machine0] = [await cpuSeconds(bulkhead.child.pid), await machineCpu()];
        let sampling = true;
        const sampler = (async () => {
          while (sampling) {
            samples.push({ at: performance.now(), count: (await receiverStats(receiver)).labels.e2e.unique });
            await sleep(100);
          }
        })();
        // Ingest as fast as it goes while at most MAX_BACKLOG events wait: the engine is never
        // starved, and the drain after the window stays bounded however fast ingest is.
        let submitted = expected;
        const nextBatch = async () => {
          while (submitted - (samples.at(-1)?.count ?? startCount) >= MAX_BACKLOG) {
            if (performance.now() >= until) return null;
            await sleep(10);
          }
          if (performance.now() >= until) return null;
          submitted += BATCH;
          return Array.from({ length: BATCH }, () => ({ type: 'invoice.paid', payload: PAYLOAD }));
        };
        const ingest = await ingestUntil({ url: bulkhead.url, key: route.key, until, connections: INGEST_CONNECTIONS, events: nextBatch });
        sampling = false;
        await sampler;
        const [cpu1, machine1] = [await cpuSeconds(bulkhead.child.pid), await machineCpu()];
        const ingestEnded = performance.now();
        expected += ingest.accepted;
        const from = samples.find((s) => s.at >= ingestStarted + (durationSeconds * 1000) / 5) ?? samples[0];
        const to = samples.at(-1);
        const sustained = Math.round((to.count - from.count) / ((to.at - from.at) / 1000));

        // Drain: what ingest left behind, with nothing else going on.
        const drainStart = epochNow();
        const drainCpu0 = await cpuSeconds(bulkhead.child.pid);
        const drainMachine0 = await machineCpu();
        let stats = await receiverStats(receiver);
        const backlog = expected - stats.labels.e2e.unique;
        for (const deadline = performance.now() + DRAIN_TIMEOUT_MS; stats.labels.e2e.unique < expected; stats = await receiverStats(receiver)) {
          if (performance.now() > deadline) throw new Error(`${engine}: ${expected - stats.labels.e2e.unique} of ${expected} events not delivered ${DRAIN_TIMEOUT_MS} ms after ingest stopped; the run is not valid`);
          await sleep(50);
        }
        const drainSeconds = (stats.labels.e2e.lastAt - drainStart) / 1000;
        const drainCpu = (await cpuSeconds(bulkhead.child.pid)) - drainCpu0;
        const drainMachine = busyShare(drainMachine0, await machineCpu());
        const drain = backlog > 0 ? Math.round(backlog / drainSeconds) : null;
        if (stats.labels.e2e.count !== stats.labels.e2e.unique) throw new Error(`${engine}: ${stats.labels.e2e.count - stats.labels.e2e.unique} deliveries arrived twice; the run is not valid`);
        await assertAllDelivered(bulkhead, route.key, engine);
        const out = {
          baseline: { requestsPerSecond: baseline.requestsPerSecond, p50Ms: baseline.p50Ms, p99Ms: baseline.p99Ms, cpuMsPerRequest: baselineCpuMs },
          ingest: { events: ingest.accepted, eventsPerSecond: Math.round(ingest.accepted / ((ingestEnded - ingestStarted) / 1000)), delivered: samples.at(-1).count - startCount },
          sustained: { deliveriesPerSecond: sustained, bulkheadCpuShare: cpu0 === null ? null : (cpu1 - cpu0) / ((ingestEnded - ingestStarted) / 1000), machineBusyShare: busyShare(machine0, machine1) },
          drain: { backlog, seconds: drainSeconds, deliveriesPerSecond: drain, bulkheadCpuShare: drainCpu0 === null ? null : drainCpu / drainSeconds, bulkheadCpuMsPerDelivery: drainCpu0 === null || backlog === 0 ? null : (drainCpu * 1000) / backlog, machineBusyShare: drainMachine },
        };
        roundsOut.push(out);
        const share = (v) => (v === null || v === undefined ? 'n/a' : `${Math.round(v * 100)}%`);
        const cpuMs = (v) => (v === null || v === undefined ? 'n/a' : `${v.toFixed(2)} ms`);
        log(`round ${round + 1}: baseline ${baseline.requestsPerSecond} req/s (p99 ${baseline.p99Ms.toFixed(1)} ms; client + receiver CPU ${cpuMs(baselineCpuMs)} per request)`);
        log(`         sustained ${sustained} deliveries/s while ingesting ${out.ingest.eventsPerSecond} events/s (bulkhead CPU ${share(out.sustained.bulkheadCpuShare)} of a core, machine ${share(out.sustained.machineBusyShare)} busy)`);
        log(`         drain of ${backlog}: ${drain ?? 'n/a'} deliveries/s in ${drainSeconds.toFixed(1)} s (bulkhead CPU ${share(out.drain.bulkheadCpuShare)} of a core, ${cpuMs(out.drain.bulkheadCpuMsPerDelivery)} per delivery, ${engine === 'pglite' ? 'embedded database included' : 'PostgreSQL not counted'}; machine ${share(out.drain.machineBusyShare)} busy)`);
      }
      const mean = (f) => roundsOut.reduce((a, r) => a + f(r), 0) / roundsOut.length;
      const baselineRps = Math.round(mean((r) => r.baseline.requestsPerSecond));
      const sustained = Math.round(mean((r) => r.sustained.deliveriesPerSecond));
      const drains = roundsOut.map((r) => r.drain.deliveriesPerSecond).filter((d) => d !== null);
      const drain = drains.length > 0 ? Math.round(drains.reduce((a, b) => a + b, 0) / drains.length) : null;
      const r = ratio(sustained, baselineRps);
      const absoluteOk = sustained >= TARGET_PER_SECOND;
      const ratioOk = r >= TARGET_RATIO;
      const ok = engine !== 'postgres' || (absoluteOk && ratioOk);
      pass &&= ok;
      log(`e2e ${engine}: sustained ${sustained} deliveries/s | drain ${drain ?? 'n/a'} deliveries/s | baseline ${baselineRps} req/s | sustained/baseline ${pct(r)}`);
      log(`  target ≥ ${TARGET_PER_SECOND} deliveries/s: ${absoluteOk ? 'PASS' : 'FAIL'} | target ≥ ${pct(TARGET_RATIO)} of baseline: ${ratioOk ? 'PASS' : 'FAIL'}${engine === 'postgres' ? '' : ' (the target applies to PostgreSQL; PGlite is for reference)'}`);
      log(`  all ${expected} events delivered exactly once and recorded as delivered; RSS ${rssMb(bulkhead.child.pid)} MiB`);
      results.engines[engine] = { baseline: { requestsPerSecond: baselineRps }, sustained: { deliveriesPerSecond: sustained }, drain: { deliveriesPerSecond: drain }, ratio: r, pass: ok, absoluteOk, ratioOk, events: expected, rssMb: rssMb(bulkhead.child.pid), rounds: roundsOut, baselineRuns };
    } finally {
      await bulkhead?.cleanup();
      await receiver.stop();
    }
  }
  return { results, pass };
}
