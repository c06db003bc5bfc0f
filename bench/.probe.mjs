// scratch (not committed): drain a backlog and print the engine's own histograms
import { startBulkhead } from './api.mjs';
import { provisionRoute, startReceiver, ingestUntil } from './e2e.mjs';
const N = Number(process.env.N ?? 20000);
const receiver = await startReceiver();
const bk = await startBulkhead('postgres', 'postgres://postgres@127.0.0.1:5432/postgres', { BULKHEAD_EGRESS_ALLOW_CIDRS: '127.0.0.1/32' }, []);
try {
  const r = await provisionRoute(bk, 'probe', `${receiver.url}/probehook`, 'probe.*');
  if (process.env.MIF) await fetch(`${bk.url}/v1/destinations/${r.destination.id}`, { method: 'PATCH', headers: { authorization: `Bearer ${r.key}`, 'content-type': 'application/json' }, body: JSON.stringify({ maxInFlight: Number(process.env.MIF) }) });
  let sent = 0;
  const t0 = performance.now();
  await ingestUntil({ url: bk.url, key: r.key, until: performance.now() + 60000, connections: 2, events: async () => (sent >= N ? null : (sent += 100, Array.from({ length: 100 }, (_, i) => ({ type: 'probe.x', payload: { i } })))) });
  const t1 = performance.now();
  for (;;) { const s = await (await fetch(`${receiver.url}/stats`)).json(); const got = s.labels.probehook?.unique ?? 0; if (got >= N || performance.now() - t1 > 60000) break; await new Promise((res) => setTimeout(res, 100)); }
  const t2 = performance.now();
  console.log(`ingest ${(N / ((t1 - t0) / 1000)).toFixed(0)}/s, all delivered after ${((t2 - t0) / 1000).toFixed(1)} s → ${(N / ((t2 - t0) / 1000)).toFixed(0)}/s`);
  const m = await (await fetch(`${bk.url}/metrics`, { headers: { authorization: `Bearer ${bk.adminToken}` } })).text();
  console.log(m.split('\n').filter((l) => /bulkhead_delivery_(claim_duration|record_duration|batch_size)_seconds?_(sum|count)|bulkhead_delivery_batch_size_(sum|count)/.test(l)).join('\n'));
} finally { await bk.cleanup(); console.log((bk.output?.() ?? "").split("\n").filter((l) => l.includes("CLAIMTIMES")).join("\n")); await receiver.stop(); }
