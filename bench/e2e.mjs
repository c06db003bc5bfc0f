// Benchmark "e2e": events ingested → delivered (signed, sent, recorded) to a local receiver, by
// Bulkhead and, in the same run and under the same load, by two baselines doing the same job with
// none of Bulkhead's guarantees beyond at-least-once delivery (bench/e2e-systems.mjs):
//   hand-rolled  the PostgreSQL queue a team writes in a day (bench/baselines/hand-rolled-pg.mjs)
//   bullmq       BullMQ on Redis (bench/baselines/bullmq.mjs)
// plus the old raw figure: undici posting the same signed body to the same receiver, no queue.
// Bulkhead runs as users run it by default: one `serve` process, role `all`, default settings.
//
// Each round measures the raw client for `durationSeconds`, then each system in turn (the order
// rotates per round so drift hits each alike): batch ingest (BATCH events per request from
// INGEST_CONNECTIONS closed loops, as fast as it goes while at most MAX_BACKLOG events wait) for
// `durationSeconds` ("sustained": deliveries per second at the receiver while ingest continues),
// then ingest stops and the backlog left behind drains ("drain": backlog / time to its last
// delivery). Every event must arrive exactly once (distinct webhook-ids per receiver label) and
// the system must hold nothing undelivered, or the run is invalid. Per system the run also reads
// the CPU of its process and of its store (the PostgreSQL backends of its database, or the Redis
// server), and for PostgreSQL the transactions of its database.
//
// Targets on PostgreSQL: Bulkhead's sustained rate ≥ the hand-rolled queue's (issue 13); ≥ 5,000
// deliveries/s and ≥ 10% of the raw rate (issues 4 and 5).
import { createHmac } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { json, pct, ratio, rssMb, startChild, undiciLoad } from './lib.mjs';
import { startBulkhead } from './api.mjs';
import { backendCpu, cpuSeconds, redisReachable, startBullmq, startHandRolled, transactions } from './e2e-systems.mjs';

export { cpuSeconds };

const here = path.dirname(fileURLToPath(import.meta.url));
const TARGET_PER_SECOND = 5000;
const TARGET_RATIO = 0.1;
const TARGET_HAND_ROLLED = 1.0;
const TARGET_STATEMENTS = 0.2;
/** The bench destination's `maxInFlight` (see where it is provisioned). */
const DESTINATION_MAX_IN_FLIGHT = 256;
const BATCH = 100;
const INGEST_CONNECTIONS = 2;
const MAX_BACKLOG = 2000;
const DRAIN_TIMEOUT_MS = 90_000;
// A backlog smaller than this at the end of ingest means the system kept up: no drain rate.
const MIN_BACKLOG = 200;
// Backends report their transaction counts at most once a second, and one that goes idle with
// counts unreported holds them up to 10 s: a window's count is read this long after it closed
// (while the other systems are measured).
const XACT_SETTLE_MS = 11_000;
const STORE_SAMPLE_MS = 250;
const IDLE_GAP_MIN_MS = 2000;

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
export async function provisionRoute(bulkhead, slug, url, type, destinationSettings = {}) {
  const admin = bulkhead.adminToken;
  const tenant = await json('POST', `${bulkhead.url}/v1/tenants`, admin, { name: slug, slug });
  const workspace = await json('POST', `${bulkhead.url}/v1/tenants/${tenant.id}/workspaces`, admin, { name: 'production', environment: 'production' });
  const key = await json('POST', `${bulkhead.url}/v1/workspaces/${workspace.id}/api-keys`, admin, { name: 'bench', scopes: ['*'] });
  const destination = await json('POST', `${bulkhead.url}/v1/destinations`, key.key, { url, ...destinationSettings });
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
const batch = () => Array.from({ length: BATCH }, () => ({ type: 'invoice.paid', payload: PAYLOAD }));
const delivered = async (receiver, label) => (await receiverStats(receiver)).labels[label]?.unique ?? 0;

/** What a system's store used: its database's backends (PostgreSQL), the Redis server, or nothing to read (PGlite lives in the process). */
function storeMeter(system, admin) {
  if (system.store === 'postgres') return backendCpu(admin, system.database);
  if (system.store === 'redis' && system.storePid !== null) {
    let first = null;
    let last = null;
    return {
      async sample() {
        const cpu = await cpuSeconds(system.storePid);
        if (cpu !== null) { first ??= cpu; last = cpu; }
      },
      total: () => (first === null ? null : last - first),
    };
  }
  return { sample: () => Promise.resolve(), total: () => null };
}

/** A few batches, all delivered, before anything is measured (JIT, pools, caches). */
async function warmUp(system, receiver, admin) {
  const warm = await ingestUntil({ url: system.url, key: system.key, until: performance.now() + 1000, connections: 1, events: batch });
  system.expected = warm.accepted;
  for (const deadline = performance.now() + DRAIN_TIMEOUT_MS; (await delivered(receiver, system.label)) < system.expected;) {
    if (performance.now() > deadline) throw new Error(`${system.name}: the warm-up's ${system.expected} events were not delivered within ${DRAIN_TIMEOUT_MS} ms`);
    await sleep(100);
  }
  // The warm-up's transactions must be reported before the first window opens; the count then
  // starts the first idle gap (see measure).
  if (system.database) system.xactPending = settledTransactions(system, admin);
}

/** The database's transaction count once XACT_SETTLE_MS have passed, kept as the start of an idle gap. */
async function settledTransactions(system, admin) {
  await sleep(XACT_SETTLE_MS);
  const n = await transactions(admin, system.database);
  system.lastXact = { n, at: performance.now() };
  return n;
}

/** One round of one system: sustained under ingest, then the drain of what ingest left behind. */
async function measure(system, { receiver, admin, durationSeconds }) {
  const { label } = system;
  await system.xactPending;
  // Between the last settled count and this window only idle work (polling) runs: its rate is
  // subtracted from the settle time counted in each window. A gap too short to say is widened.
  if (system.lastXact) await sleep(IDLE_GAP_MIN_MS - (performance.now() - system.lastXact.at));
  const store = storeMeter(system, admin);
  const startCount = await delivered(receiver, label);
  if (startCount !== system.expected) throw new Error(`${system.name}: ${startCount} delivered before the round, ${system.expected} expected`);
  const xact0 = system.database ? await transactions(admin, system.database) : null;
  if (xact0 !== null && system.lastXact) system.idleXactPerSecond.push((xact0 - system.lastXact.n) / ((performance.now() - system.lastXact.at) / 1000));
  await store.sample();
  const statements0 = system.statements ? await system.statements() : null;
  const [cpu0, machine0] = [await cpuSeconds(system.pid), await machineCpu()];

  // Sustained: the receiver's count between a sample one fifth into the window (past the
  // pipeline filling) and its end.
  const samples = [];
  const ingestStarted = performance.now();
  const until = ingestStarted + durationSeconds * 1000;
  let sampling = true;
  let metering = true;
  const sampler = (async () => {
    while (sampling) {
      samples.push({ at: performance.now(), count: await delivered(receiver, label) });
      await sleep(100);
    }
  })();
  const meter = (async () => {
    while (metering) {
      await sleep(STORE_SAMPLE_MS);
      await store.sample();
    }
  })();
  // Ingest as fast as it goes while at most MAX_BACKLOG events wait: the system is never starved,
  // and the drain after the window stays bounded however fast ingest is.
  let submitted = system.expected;
  const nextBatch = async () => {
    while (submitted - (samples.at(-1)?.count ?? startCount) >= MAX_BACKLOG) {
      if (performance.now() >= until) return null;
      await sleep(10);
    }
    if (performance.now() >= until) return null;
    submitted += BATCH;
    return batch();
  };
  const ingest = await ingestUntil({ url: system.url, key: system.key, until, connections: INGEST_CONNECTIONS, events: nextBatch });
  sampling = false;
  await sampler;
  const ingestEnded = performance.now();
  system.expected += ingest.accepted;
  const from = samples.find((s) => s.at >= ingestStarted + (durationSeconds * 1000) / 5) ?? samples[0];
  const to = samples.at(-1);
  const sustained = Math.round((to.count - from.count) / ((to.at - from.at) / 1000));

  // Drain: what ingest left behind, with nothing else going on.
  const drainStart = epochNow();
  await store.sample();
  const [drainCpu0, drainStore0, drainMachine0] = [await cpuSeconds(system.pid), store.total(), await machineCpu()];
  let stats = await receiverStats(receiver);
  const backlog = system.expected - (stats.labels[label]?.unique ?? 0);
  for (const deadline = performance.now() + DRAIN_TIMEOUT_MS; (stats.labels[label]?.unique ?? 0) < system.expected; stats = await receiverStats(receiver)) {
    if (performance.now() > deadline) throw new Error(`${system.name}: ${system.expected - (stats.labels[label]?.unique ?? 0)} of ${system.expected} events not delivered ${DRAIN_TIMEOUT_MS} ms after ingest stopped; the run is not valid`);
    await sleep(50);
  }
  metering = false;
  await meter;
  await store.sample();
  const [cpu1, storeCpu, machine1] = [await cpuSeconds(system.pid), store.total(), await machineCpu()];
  const statements1 = system.statements ? await system.statements() : null;
  const windowEnded = performance.now();
  const entry = stats.labels[label];
  if (entry.count !== entry.unique) throw new Error(`${system.name}: ${entry.count - entry.unique} deliveries arrived twice; the run is not valid`);
  await system.verify();

  const drainSeconds = (entry.lastAt - drainStart) / 1000;
  const events = ingest.accepted;
  const perMs = (seconds, n) => (seconds === null || n === 0 ? null : (seconds * 1000) / n);
  const out = {
    ingest: { events, eventsPerSecond: Math.round(events / ((ingestEnded - ingestStarted) / 1000)), deliveredMeanwhile: to.count - startCount },
    sustained: { deliveriesPerSecond: sustained },
    drain: { backlog, seconds: drainSeconds, deliveriesPerSecond: backlog >= MIN_BACKLOG ? Math.round(backlog / drainSeconds) : null },
    // Per event over the whole window (ingest and delivery), and per delivery over the drain alone.
    cpuMsPerEvent: { process: perMs(cpu0 === null ? null : cpu1 - cpu0, events), store: perMs(storeCpu, events) },
    cpuMsPerDrainedDelivery: { process: perMs(drainCpu0 === null ? null : cpu1 - drainCpu0, backlog), store: perMs(storeCpu === null ? null : storeCpu - drainStore0, backlog) },
    machineBusyShare: busyShare(machine0, machine1),
    drainMachineBusyShare: busyShare(drainMachine0, machine1),
    transactions: null,
    // Bulkhead's own driver counter (bulkhead_db_statements_total): every statement, BEGIN and COMMIT included.
    statementsPerEvent: statements0 === null || statements1 === null ? null : (statements1 - statements0) / events,
  };
  if (system.database) {
    system.xactPending = settledTransactions(system, admin).then((n) => {
      out.transactions = { count: n - xact0, events, settleSeconds: (performance.now() - windowEnded) / 1000 };
    }).catch((error) => { out.transactions = { error: error.message }; });
  }
  return out;
}

const fmt = (v, digits = 2) => (v === null || v === undefined || Number.isNaN(v) ? 'n/a' : v.toFixed(digits));
const share = (v) => (v === null || v === undefined ? 'n/a' : `${Math.round(v * 100)}%`);
const times = (r) => (Number.isFinite(r) ? `${r.toFixed(2)}×` : 'n/a');
const storeName = (system) => ({ postgres: 'PostgreSQL backends', redis: 'Redis server', pglite: 'embedded PGlite (in the process)' })[system.store];

function roundLine(system, out) {
  const drain = out.drain.deliveriesPerSecond === null ? `backlog ${out.drain.backlog}: kept up` : `drain of ${out.drain.backlog}: ${out.drain.deliveriesPerSecond}/s in ${out.drain.seconds.toFixed(1)} s`;
  const store = system.store === 'pglite' ? '' : ` + ${system.store === 'redis' ? 'Redis' : 'PG'} ${fmt(out.cpuMsPerEvent.store)}`;
  return `  ${system.name.padEnd(11)} sustained ${String(out.sustained.deliveriesPerSecond).padStart(5)}/s (ingest ${out.ingest.eventsPerSecond} events/s) | ${drain} | CPU ms per event: process ${fmt(out.cpuMsPerEvent.process)}${store} | machine ${share(out.machineBusyShare)} busy`;
}

const mean = (values) => {
  const known = values.filter((v) => v !== null && v !== undefined && !Number.isNaN(v));
  return known.length > 0 ? known.reduce((a, b) => a + b, 0) / known.length : null;
};

function summarise(system, rounds) {
  const m = (f) => mean(rounds.map(f));
  const round = (v) => (v === null ? null : Math.round(v));
  const idle = mean(system.idleXactPerSecond ?? []);
  return {
    store: system.store,
    sustained: { deliveriesPerSecond: round(m((r) => r.sustained.deliveriesPerSecond)) },
    drain: { deliveriesPerSecond: round(m((r) => r.drain.deliveriesPerSecond)) },
    ingest: { eventsPerSecond: round(m((r) => r.ingest.eventsPerSecond)) },
    cpuMsPerEvent: { process: m((r) => r.cpuMsPerEvent.process), store: m((r) => r.cpuMsPerEvent.store) },
    cpuMsPerDrainedDelivery: { process: m((r) => r.cpuMsPerDrainedDelivery.process), store: m((r) => r.cpuMsPerDrainedDelivery.store) },
    transactionsPerEvent: m((r) => (r.transactions?.count === undefined ? null : r.transactions.count / r.transactions.events)),
    statementsPerEvent: m((r) => r.statementsPerEvent ?? null),
    // The same with the idle rate over the settle time taken out: what the events cost.
    transactionsPerEventLessIdle: idle === null ? null : m((r) => (r.transactions?.count === undefined ? null : (r.transactions.count - idle * r.transactions.settleSeconds) / r.transactions.events)),
    idleTransactionsPerSecond: idle,
    events: system.expected,
    rssMb: rssMb(system.pid),
    rounds,
  };
}

/** Bulkhead's count of the SQL statements it sent so far, from its /metrics. */
async function statementsSent(bulkhead) {
  const text = await (await fetch(`${bulkhead.url}/metrics`, { headers: { authorization: `Bearer ${bulkhead.adminToken}` } })).text();
  const line = text.split('\n').find((l) => l.startsWith('bulkhead_db_statements_total '));
  return line === undefined ? null : Number(line.split(' ')[1]);
}

/** Whether pg_stat_statements is loaded on the server (it can only be enabled by a restart, which the bench never does). */
async function statementsAvailable(admin) {
  const { rows } = await admin.query('SHOW shared_preload_libraries');
  return rows[0].shared_preload_libraries.split(',').map((s) => s.trim()).includes('pg_stat_statements');
}

export async function run({ durationSeconds, rounds, postgresUrl, engines, log }) {
  const worker = await engineSettings();
  const concurrency = Number(worker.BULKHEAD_WORKER_CONCURRENCY);
  const redisUrl = process.env.BULKHEAD_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
  const results = {
    benchmark: 'e2e', durationSeconds, rounds,
    target: { bulkheadOverHandRolled: TARGET_HAND_ROLLED, perSecondOnPostgres: TARGET_PER_SECOND, ratioOfRaw: TARGET_RATIO },
    setup: { role: 'all', worker, ingest: { batch: BATCH, connections: INGEST_CONNECTIONS, maxBacklog: MAX_BACKLOG }, rawConcurrency: concurrency },
    engines: {},
  };
  let pass = true;
  // The baselines need PostgreSQL (hand-rolled) and Redis (BullMQ) whatever Bulkhead's engine is.
  const admin = new pg.Client({ connectionString: postgresUrl, connectionTimeoutMillis: 3000 });
  const pgUp = await admin.connect().then(() => true, (error) => { log(`\n!!! PostgreSQL unreachable at ${postgresUrl} (${error.message}): no hand-rolled baseline !!!`); return false; });
  const redisUp = await redisReachable(redisUrl);
  if (!redisUp) log(`\n!!! Redis unreachable at ${redisUrl}: no BullMQ baseline !!!`);
  const statements = pgUp && (await statementsAvailable(admin));
  try {
    for (const engine of engines) {
      log(`\n== e2e on ${engine}: Bulkhead one \`serve\` process, role all (${describeSettings(worker)}; the destination's maxInFlight ${DESTINATION_MAX_IN_FLIGHT}); hand-rolled PostgreSQL queue; BullMQ on Redis; raw undici with ${concurrency} in flight ==`);
      if (engine !== 'postgres') log('   (the baselines run on PostgreSQL and Redis whatever Bulkhead\'s engine is)');
      const receiver = await startReceiver();
      const systems = [];
      let bulkhead;
      try {
        bulkhead = await startBulkhead(engine, postgresUrl, { BULKHEAD_EGRESS_ALLOW_CIDRS: '127.0.0.1/32' });
        // The receiver's own in-flight cap, as a platform sets it for a receiver that takes the
        // load: the baselines have none (the hand-rolled queue holds 2 × 100 claimed rows over 64
        // connections); Bulkhead's default per destination (16) is there to protect receivers.
        const route = await provisionRoute(bulkhead, `e2e-${engine}`, `${receiver.url}/e2e`, 'invoice.paid', { maxInFlight: DESTINATION_MAX_IN_FLIGHT });
        systems.push({
          name: 'bulkhead', label: 'e2e', url: bulkhead.url, key: route.key, pid: bulkhead.child.pid,
          store: engine === 'postgres' ? 'postgres' : 'pglite', database: engine === 'postgres' ? bulkhead.database : null,
          verify: () => assertAllDelivered(bulkhead, route.key, 'bulkhead'), stop: () => Promise.resolve(),
          statements: () => statementsSent(bulkhead),
        });
        if (pgUp) systems.push(await startHandRolled(postgresUrl, receiver));
        if (redisUp) systems.push(await startBullmq(redisUrl, receiver));
        for (const system of systems) {
          system.idleXactPerSecond = [];
          system.rounds = [];
        }

        // The raw client sends what the engine sends: the same body shape and size, Standard Webhooks headers.
        const sample = body('invoice.paid', PAYLOAD);
        const timestamp = String(Math.floor(Date.now() / 1000));
        const messageId = 'dlv_01jd0000000000000000000000';
        const signature = createHmac('sha256', Buffer.from(route.destination.secret.slice('whsec_'.length), 'base64')).update(`${messageId}.${timestamp}.${sample}`).digest('base64');
        const rawRequest = {
          url: `${receiver.url}/base`,
          method: 'POST',
          headers: { 'content-type': 'application/json', 'user-agent': 'Bulkhead-Webhooks/1', 'webhook-id': messageId, 'webhook-timestamp': timestamp, 'webhook-signature': `v1,${signature}` },
          body: sample,
          concurrency,
        };
        await undiciLoad({ ...rawRequest, durationSeconds: 1 });
        for (const system of systems) await warmUp(system, receiver, admin);

        const rawRuns = [];
        for (let round = 0; round < rounds; round++) {
          const raw = await undiciLoad({ ...rawRequest, durationSeconds });
          if (raw.errors > 0 || raw.non2xx > 0) throw new Error(`raw undici: ${raw.errors} errors, ${raw.non2xx} non-2xx; the run is not valid`);
          rawRuns.push(raw);
          log(`round ${round + 1}: raw undici ${raw.requestsPerSecond} req/s (p99 ${raw.p99Ms.toFixed(1)} ms)`);
          const order = systems.map((_, i) => systems[(i + round) % systems.length]);
          for (const system of order) {
            const out = await measure(system, { receiver, admin, durationSeconds });
            system.rounds.push(out);
            log(roundLine(system, out));
          }
        }
        await Promise.all(systems.map((s) => s.xactPending));

        const summary = Object.fromEntries(systems.map((s) => [s.name, summarise(s, s.rounds)]));
        const rawRps = Math.round(mean(rawRuns.map((r) => r.requestsPerSecond)));
        const b = summary.bulkhead;
        const overHandRolled = summary['hand-rolled'] ? { sustained: ratio(b.sustained.deliveriesPerSecond, summary['hand-rolled'].sustained.deliveriesPerSecond), drain: ratio(b.drain.deliveriesPerSecond, summary['hand-rolled'].drain.deliveriesPerSecond) } : null;
        const overBullmq = summary.bullmq ? { sustained: ratio(b.sustained.deliveriesPerSecond, summary.bullmq.sustained.deliveriesPerSecond), drain: ratio(b.drain.deliveriesPerSecond, summary.bullmq.drain.deliveriesPerSecond) } : null;
        const ofRaw = ratio(b.sustained.deliveriesPerSecond, rawRps);
        const handRolledOk = overHandRolled !== null && overHandRolled.sustained >= TARGET_HAND_ROLLED;
        const absoluteOk = b.sustained.deliveriesPerSecond >= TARGET_PER_SECOND;
        const rawOk = ofRaw >= TARGET_RATIO;
        const ok = engine !== 'postgres' || (handRolledOk && absoluteOk && rawOk);
        pass &&= ok;

        log(`e2e ${engine}, mean of ${rounds} round(s):`);
        log(`  ${'system'.padEnd(11)} ${'sustained/s'.padStart(11)} ${'drain/s'.padStart(8)} ${'ingest/s'.padStart(9)}  CPU ms per event (process + store)   CPU ms per drained delivery   transactions per event`);
        for (const system of systems) {
          const s = summary[system.name];
          const storeCol = (v) => (system.store === 'pglite' ? 'in process' : fmt(v));
          const cpu = `${fmt(s.cpuMsPerEvent.process)} + ${storeCol(s.cpuMsPerEvent.store)}`;
          const drainCpu = `${fmt(s.cpuMsPerDrainedDelivery.process)} + ${storeCol(s.cpuMsPerDrainedDelivery.store)}`;
          const xact = !system.database ? 'n/a' : s.transactionsPerEventLessIdle === null ? `${fmt(s.transactionsPerEvent, 3)} (idle polling not measured, included)` : `${fmt(s.transactionsPerEventLessIdle, 3)} (idle ${fmt(s.idleTransactionsPerSecond, 1)}/s subtracted)`;
          log(`  ${system.name.padEnd(11)} ${String(s.sustained.deliveriesPerSecond).padStart(11)} ${String(s.drain.deliveriesPerSecond ?? 'n/a').padStart(8)} ${String(s.ingest.eventsPerSecond).padStart(9)}  ${cpu.padEnd(35)}  ${drainCpu.padEnd(28)}  ${xact}`);
        }
        log(`  ${'raw undici'.padEnd(11)} ${String(rawRps).padStart(11)} req/s, no queue`);
        log(`  store: ${systems.map((s) => `${s.name} → ${storeName(s)}`).join('; ')}; Redis CPU is the whole server's`);
        const perEvent = summary.bulkhead?.statementsPerEvent;
        const statementsOk = perEvent !== null && perEvent !== undefined && perEvent <= TARGET_STATEMENTS;
        log(`  SQL statements per event, Bulkhead (its driver counter, BEGIN and COMMIT included, ingest and delivery; idle polling too): ${fmt(perEvent, 3)} | target ≤ ${TARGET_STATEMENTS}: ${statementsOk ? 'PASS' : 'FAIL'}${statements ? '' : ' (pg_stat_statements is not loaded, so the baselines have none: by construction the hand-rolled queue sends ~0.03)'}`);
        if (overHandRolled) log(`  bulkhead / hand-rolled: sustained ${times(overHandRolled.sustained)}, drain ${times(overHandRolled.drain)} | target sustained ≥ ${TARGET_HAND_ROLLED.toFixed(1)}×: ${handRolledOk ? 'PASS' : 'FAIL'}`);
        if (overBullmq) log(`  bulkhead / bullmq:      sustained ${times(overBullmq.sustained)}, drain ${times(overBullmq.drain)}`);
        log(`  bulkhead / raw undici:  ${pct(ofRaw)} | target ≥ ${pct(TARGET_RATIO)}: ${rawOk ? 'PASS' : 'FAIL'} | target ≥ ${TARGET_PER_SECOND} deliveries/s: ${absoluteOk ? 'PASS' : 'FAIL'}${engine === 'postgres' ? '' : ' (the targets apply to PostgreSQL; PGlite is for reference)'}`);
        log(`  every event delivered exactly once (${systems.map((s) => `${s.name} ${s.expected}`).join(', ')}) and nothing left queued; RSS ${systems.map((s) => `${s.name} ${rssMb(s.pid)} MiB`).join(', ')}`);
        results.engines[engine] = { systems: summary, raw: { requestsPerSecond: rawRps, runs: rawRuns }, bulkheadOverHandRolled: overHandRolled, bulkheadOverBullmq: overBullmq, bulkheadOfRaw: ofRaw, pass: ok, handRolledOk, absoluteOk, rawOk };
      } finally {
        for (const system of systems.toReversed()) {
          try {
            const left = await system.stop();
            if (left?.leftoverKeys > 0) log(`  (${left.leftoverKeys} Redis keys of ${system.name}'s queue were left after obliterate; deleted)`);
          } catch (error) {
            log(`  stopping ${system.name} failed: ${error.message}`);
          }
        }
        await bulkhead?.cleanup();
        await receiver.stop();
      }
    }
  } finally {
    if (pgUp) await admin.end();
  }
  return { results, pass };
}
