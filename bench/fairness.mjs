// Benchmark "fairness": a quiet workspace's delivery latency while a noisy workspace has a large
// backlog, against the quiet workspace's latency on the idle system, in the same run and the same
// process. Bulkhead runs as in "e2e": one `serve` process (role all), default worker settings.
//
// The quiet workspace (its own tenant) sends one event at a time, one every 50 ms, to a fast
// receiver path; its latency is from the 202 of `POST /v1/events` to the receiver reading the
// body (matched by a probe id in the payload). Measured first on the idle system, then after the
// noisy workspace (another tenant) queued `backlog` deliveries (batch ingest, 500 per batch) to a
// slow receiver path (answers after SLOW_MS), so the backlog is still there while the quiet
// workspace is measured; the run is invalid if it drained first.
//
// Two layouts: the default single process (`serve`, role all), and on PostgreSQL also the API
// and the delivery worker as separate processes (`serve --role api` taking the events,
// `serve --role worker` delivering them), each from a fresh database.
//
// Target (issue 5): quiet p99 with the backlog ≤ 2× quiet p99 on the idle system.
import { json, pct } from './lib.mjs';
import { startBulkhead } from './api.mjs';
import { describeSettings, engineSettings, epochNow, ingestUntil, provisionRoute, receiverStats, sleep, startReceiver } from './e2e.mjs';

const TARGET_RATIO = 2;
const SLOW_MS = 100;
const PROBE_INTERVAL_MS = 50;
const BATCH = 500;
const BUILD_CONNECTIONS = 4;
const ARRIVAL_TIMEOUT_MS = 60_000;

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

/** Sends `count` quiet events, one every PROBE_INTERVAL_MS, and waits for each to reach the receiver. */
export async function probe({ bulkhead, receiver, key, phase, count, type = 'quiet.happened' }) {
  const sent = [];
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    const due = started + i * PROBE_INTERVAL_MS;
    if (performance.now() < due) await sleep(due - performance.now());
    const id = `${phase}-${i}`;
    const posted = performance.now();
    const event = await json('POST', `${bulkhead.url}/v1/events`, key, { type, payload: { probe: id } });
    sent.push({ id, eventId: event.id, acceptedAt: epochNow(), ingestMs: performance.now() - posted });
  }
  let stats = await receiverStats(receiver);
  for (const deadline = performance.now() + ARRIVAL_TIMEOUT_MS; sent.some((s) => stats.probes[s.id] === undefined); stats = await receiverStats(receiver)) {
    if (performance.now() > deadline) break;
    await sleep(50);
  }
  const missing = sent.filter((s) => stats.probes[s.id] === undefined).length;
  const latencies = sent.map((s) => (stats.probes[s.id] ?? Infinity) - s.acceptedAt).sort((a, b) => a - b);
  const ingest = sent.map((s) => s.ingestMs).sort((a, b) => a - b);
  return {
    sent,
    missing,
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
    maxMs: latencies.at(-1),
    ingestP99Ms: quantile(ingest, 0.99),
  };
}

/** Where a probe's latency went: 202 → the attempt started (queue wait), from the delivery records (8 reads at a time). */
async function breakdown(bulkhead, key, sent) {
  const waits = [];
  const queue = [...sent];
  const reader = async () => {
    for (let s = queue.shift(); s; s = queue.shift()) {
      const event = await json('GET', `${bulkhead.url}/v1/events/${s.eventId}`, key);
      const delivery = event.deliveries[0] && (await json('GET', `${bulkhead.url}/v1/deliveries/${event.deliveries[0].id}`, key));
      const attempt = delivery?.attempts[0];
      if (attempt) waits.push(Date.parse(attempt.startedAt) - s.acceptedAt);
    }
  };
  await Promise.all(Array.from({ length: 8 }, reader));
  waits.sort((a, b) => a - b);
  return { queueP50Ms: quantile(waits, 0.5), queueP99Ms: quantile(waits, 0.99) };
}

export async function run({ durationSeconds, postgresUrl, engines, backlog, log }) {
  // 20 quiet events per second of --duration and phase: 200 events (10 s) at the default 5 s.
  const probes = Math.max(50, Math.round(durationSeconds * 40));
  const worker = await engineSettings();
  const results = { benchmark: 'fairness', durationSeconds, backlog, probes, target: { p99Ratio: TARGET_RATIO }, setup: { roles: ['all', 'api + worker (PostgreSQL)'], worker, noisyReceiverMs: SLOW_MS, probeIntervalMs: PROBE_INTERVAL_MS }, engines: {} };
  let pass = true;
  const layouts = [];
  for (const engine of engines) {
    layouts.push({ engine, separate: false, name: engine });
    // The embedded database admits one process, so the separate worker is PostgreSQL's only.
    if (engine === 'postgres') layouts.push({ engine, separate: true, name: `${engine}, separate worker` });
  }
  for (const { engine, separate, name } of layouts) {
    const shape = separate ? 'two processes: `serve --role api` and `serve --role worker`' : 'one `serve` process, role all';
    log(`\n== fairness on ${name}: ${shape} (${describeSettings(worker)}); quiet: ${probes} events, one every ${PROBE_INTERVAL_MS} ms; noisy: ${backlog} deliveries to a receiver answering after ${SLOW_MS} ms ==`);
    const receiver = await startReceiver();
    let bulkhead;
    try {
      const env = { BULKHEAD_EGRESS_ALLOW_CIDRS: '127.0.0.1/32' };
      bulkhead = await startBulkhead(engine, postgresUrl, env, separate ? ['--role', 'api'] : []);
      if (separate) await bulkhead.startSibling(['--role', 'worker']);
      const noisy = await provisionRoute(bulkhead, `noisy-${engine}`, `${receiver.url}/slow/${SLOW_MS}/noisy`, 'noise.happened');
      const quiet = await provisionRoute(bulkhead, `quiet-${engine}`, `${receiver.url}/probe/quiet`, 'quiet.happened');
      // Warm the quiet path (JIT, pools, key and DEK caches) before anything is measured.
      await probe({ bulkhead, receiver, key: quiet.key, phase: 'warm', count: 10 });

      const idle = await probe({ bulkhead, receiver, key: quiet.key, phase: 'idle', count: probes });
      if (idle.missing > 0) throw new Error(`${name}: ${idle.missing} quiet events on the idle system never arrived; the run is not valid`);
      log(`idle     quiet latency p50 ${idle.p50Ms.toFixed(0)} ms, p99 ${idle.p99Ms.toFixed(0)} ms, max ${idle.maxMs.toFixed(0)} ms (ingest p99 ${idle.ingestP99Ms.toFixed(0)} ms)`);
      const idleWhere = await breakdown(bulkhead, quiet.key, idle.sent);

      const buildStarted = performance.now();
      let queued = 0;
      const built = await ingestUntil({
        url: bulkhead.url,
        key: noisy.key,
        until: Infinity,
        connections: BUILD_CONNECTIONS,
        events: () => {
          if (queued >= backlog) return null;
          const n = Math.min(BATCH, backlog - queued);
          queued += n;
          return Array.from({ length: n }, () => ({ type: 'noise.happened', payload: { id: 'in_123', amount: 4200, currency: 'eur', customer: { id: 'cus_1', country: 'DE' } } }));
        },
      });
      const buildSeconds = (performance.now() - buildStarted) / 1000;
      const before = (await receiverStats(receiver)).labels.noisy?.count ?? 0;
      log(`backlog  ${built.accepted} noisy events ingested in ${buildSeconds.toFixed(1)} s (${Math.round(built.accepted / buildSeconds)}/s, ${BUILD_CONNECTIONS} clients × ${BATCH} per batch); ${before} delivered meanwhile, ${built.accepted - before} pending`);

      const measureStarted = performance.now();
      const busy = await probe({ bulkhead, receiver, key: quiet.key, phase: 'busy', count: probes });
      const measureSeconds = (performance.now() - measureStarted) / 1000;
      const after = (await receiverStats(receiver)).labels.noisy?.count ?? 0;
      const pendingAfter = built.accepted - after;
      if (pendingAfter <= 0) throw new Error(`${name}: the noisy backlog drained during the measurement; the run is not valid (use a larger --backlog)`);
      const missing = busy.missing > 0 ? ` — ${busy.missing} never arrived within ${ARRIVAL_TIMEOUT_MS / 1000} s` : '';
      log(`backlog  quiet latency p50 ${busy.p50Ms.toFixed(0)} ms, p99 ${busy.p99Ms.toFixed(0)} ms, max ${busy.maxMs.toFixed(0)} ms (ingest p99 ${busy.ingestP99Ms.toFixed(0)} ms)${missing}; noisy delivered ${Math.round((after - before) / measureSeconds)}/s meanwhile, ${pendingAfter} still pending`);

      const busyWhere = await breakdown(bulkhead, quiet.key, busy.sent);
      const ms = (v) => `${Math.round(v)} ms`;
      log(`where    202 → attempt started (queue wait): idle p50 ${ms(idleWhere.queueP50Ms)}, p99 ${ms(idleWhere.queueP99Ms)} | backlog p50 ${ms(busyWhere.queueP50Ms)}, p99 ${ms(busyWhere.queueP99Ms)}`);

      const r = busy.p99Ms / idle.p99Ms;
      const ok = busy.missing === 0 && r <= TARGET_RATIO;
      pass &&= ok;
      log(`fairness ${name}: quiet p99 ${busy.p99Ms.toFixed(0)} ms with the backlog vs ${idle.p99Ms.toFixed(0)} ms idle = ${r.toFixed(2)}× (${pct(r)}; target ≤ ${TARGET_RATIO}×: ${ok ? 'PASS' : 'FAIL'})`);
      const summary = (p) => ({ p50Ms: p.p50Ms, p99Ms: p.p99Ms, maxMs: Number.isFinite(p.maxMs) ? p.maxMs : null, missing: p.missing, ingestP99Ms: p.ingestP99Ms });
      results.engines[name] = {
        layout: separate ? 'api + worker processes' : 'one process, role all',
        idle: { ...summary(idle), ...idleWhere },
        backlog: { ...summary(busy), ...busyWhere, queued: built.accepted, buildSeconds, deliveredBeforeMeasuring: before, pendingAfterMeasuring: pendingAfter, noisyDeliveriesPerSecond: Math.round((after - before) / measureSeconds) },
        ratio: r,
        pass: ok,
      };
    } finally {
      await bulkhead?.cleanup();
      await receiver.stop();
    }
  }
  return { results, pass };
}
