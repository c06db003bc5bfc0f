// Benchmark "transform": the latency a trivial rule transform adds to a delivery. Bulkhead runs as
// in "fairness" (one `serve` process, role all, default settings). Two workspaces on the same
// server route to the same receiver: one with a plain rule, one with the same rule carrying a
// trivial transform. Their events alternate, one every 50 ms; latency is from the 202 of
// `POST /v1/events` to the receiver reading the body. The figure is the difference of the
// medians (and of the p99s), i.e. what the queued execution, the sandboxed run (a fresh QuickJS
// runtime) and the extra transaction cost a delivery, measured against the plain path in the
// same run.
import { json } from './lib.mjs';
import { startBulkhead } from './api.mjs';
import { provisionRoute, startReceiver } from './e2e.mjs';
import { probe } from './fairness.mjs';

const TRANSFORM = 'function transform(event) { return { probe: event.payload.probe, shaped: true }; }';

export async function run({ durationSeconds, postgresUrl, engines, log }) {
  const count = Math.max(50, Math.round(durationSeconds * 20));
  const results = { benchmark: 'transform', durationSeconds, probes: count, engines: {} };
  for (const engine of engines) {
    log(`\n== transform on ${engine}: latency 202 → delivered, a plain rule vs the same rule with a trivial transform, ${count} events each ==`);
    const receiver = await startReceiver();
    let bulkhead;
    try {
      bulkhead = await startBulkhead(engine, postgresUrl, { BULKHEAD_EGRESS_ALLOW_CIDRS: '127.0.0.1/32' });
      const plain = await provisionRoute(bulkhead, `plain-${engine}`, `${receiver.url}/probe/plain`, 'plain.happened');
      const shaped = await provisionRoute(bulkhead, `shaped-${engine}`, `${receiver.url}/probe/shaped`, 'shaped.happened');
      await json('PATCH', `${bulkhead.url}/v1/rules/${shaped.rule.id}`, shaped.key, { transform: { language: 'javascript', code: TRANSFORM } });
      // Warm both paths (JIT, pools, caches, the sandbox's worker threads).
      await probe({ bulkhead, receiver, key: plain.key, phase: 'warm-plain', count: 10, type: 'plain.happened' });
      await probe({ bulkhead, receiver, key: shaped.key, phase: 'warm-shaped', count: 10, type: 'shaped.happened' });
      const rounds = { plain: [], shaped: [] };
      // Alternate in slices so drift on a shared machine lands on both sides.
      for (let i = 0; i < 4; i++) {
        rounds.plain.push(await probe({ bulkhead, receiver, key: plain.key, phase: `plain-${i}`, count: Math.ceil(count / 4), type: 'plain.happened' }));
        rounds.shaped.push(await probe({ bulkhead, receiver, key: shaped.key, phase: `shaped-${i}`, count: Math.ceil(count / 4), type: 'shaped.happened' }));
      }
      const merge = (list) => {
        const missing = list.reduce((n, r) => n + r.missing, 0);
        const p50 = list.map((r) => r.p50Ms).sort((a, b) => a - b);
        const p99 = list.map((r) => r.p99Ms).sort((a, b) => a - b);
        return { missing, p50Ms: p50[Math.floor(p50.length / 2)], p99Ms: p99[Math.floor(p99.length / 2)] };
      };
      const a = merge(rounds.plain);
      const b = merge(rounds.shaped);
      if (a.missing + b.missing > 0) throw new Error(`${engine}: ${a.missing + b.missing} events never arrived; the run is not valid`);
      const added50 = b.p50Ms - a.p50Ms;
      const added99 = b.p99Ms - a.p99Ms;
      log(`plain    p50 ${a.p50Ms.toFixed(1)} ms, p99 ${a.p99Ms.toFixed(1)} ms (median of 4 slices)`);
      log(`shaped   p50 ${b.p50Ms.toFixed(1)} ms, p99 ${b.p99Ms.toFixed(1)} ms`);
      log(`transform ${engine}: adds ${added50.toFixed(1)} ms at p50 and ${added99.toFixed(1)} ms at p99 to a delivery (${(b.p50Ms / a.p50Ms).toFixed(2)}× the plain p50)`);
      results.engines[engine] = { plain: a, shaped: b, addedP50Ms: added50, addedP99Ms: added99, ratioP50: b.p50Ms / a.p50Ms };
    } finally {
      await bulkhead?.cleanup();
      await receiver.stop();
    }
  }
  // A report, not a target: the issue asks for the figure.
  return { results, pass: true };
}
