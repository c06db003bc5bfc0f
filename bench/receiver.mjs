// The webhook receiver for the e2e and fairness benchmarks: a bare node:http server in its own
// process that answers 200 and keeps score. The first path segment is a label counted on its own
// (`/base`, `/e2e`, `/noisy`…); `/slow/<ms>/<label>` answers after <ms> milliseconds;
// `/probe/<label>` also records when each body's `data.probe` arrived. `GET /stats` returns the
// score and the number of TCP connections accepted. Times are epoch milliseconds
// (`performance.timeOrigin + performance.now()`), comparable with the same clock in the bench
// process on the same machine.
import { createServer } from 'node:http';

const now = () => performance.timeOrigin + performance.now();
const labels = new Map();
const probes = {};
let connections = 0;
const ok = '{"ok":true}';

function score(label, id) {
  let entry = labels.get(label);
  if (!entry) {
    entry = { count: 0, ids: new Set(), firstAt: 0, lastAt: 0 };
    labels.set(label, entry);
  }
  const at = now();
  entry.count++;
  if (id !== undefined) entry.ids.add(id);
  if (entry.firstAt === 0) entry.firstAt = at;
  entry.lastAt = at;
}

const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/stats') {
    const body = JSON.stringify({
      labels: Object.fromEntries([...labels].map(([label, e]) => [label, { count: e.count, unique: e.ids.size, firstAt: e.firstAt, lastAt: e.lastAt }])),
      probes,
      connections,
    });
    res.writeHead(200, { 'content-type': 'application/json' }).end(body);
    return;
  }
  const parts = (req.url ?? '/').split('?')[0].split('/').filter(Boolean);
  const slowMs = parts[0] === 'slow' ? Number(parts[1]) : 0;
  const probe = parts[0] === 'probe';
  const label = parts[0] === 'slow' ? parts[2] ?? 'slow' : probe ? parts[1] ?? 'probe' : parts[0] ?? 'root';
  const chunks = [];
  req.on('data', (chunk) => { if (probe) chunks.push(chunk); });
  req.on('end', () => {
    score(label, req.headers['webhook-id']);
    if (probe) {
      try {
        const key = JSON.parse(Buffer.concat(chunks).toString()).data?.probe;
        if (typeof key === 'string') probes[key] ??= now();
      } catch { /* not ours: counted, not recorded */ }
    }
    const answer = () => res.writeHead(200, { 'content-type': 'application/json', 'content-length': ok.length }).end(ok);
    if (slowMs > 0) setTimeout(answer, slowMs);
    else answer();
  });
});
server.on('connection', () => { connections++; });
server.keepAliveTimeout = 30_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`listening on http://127.0.0.1:${server.address().port}\n`);
});
process.once('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
});
