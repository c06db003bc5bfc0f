// Baseline "hand-rolled": the webhook queue a team writes in a day on PostgreSQL, as the e2e
// benchmark's yardstick for Bulkhead's delivery engine. Deliberately nothing more: no tenants, no
// RLS, no sealed payloads, no attempt log, no per-destination fairness, no rate limits.
//
//   events(id, payload jsonb, created_at)
//   deliveries(id, event_id, url, status, attempts, next_attempt_at, locked_until)
//
// - POST /v1/events/batch takes `{ events: [{ type, payload }] }` (the body Bulkhead's batch
//   ingest takes, so the same load generator drives both) and writes the events and one delivery
//   each with ONE statement, one commit: `WITH e AS (INSERT … RETURNING id) INSERT INTO deliveries …`.
// - Two worker loops each claim up to 100 due rows with `UPDATE … WHERE id IN (SELECT … FOR UPDATE
//   SKIP LOCKED LIMIT 100) RETURNING …` as a 60 s lease, post them concurrently over one undici
//   Pool of 64 connections with Standard Webhooks headers (HMAC-SHA256, `v1,<base64>`), then mark
//   the batch done with one `UPDATE` (the failures with one more, with exponential backoff). A loop
//   whose claim came back empty sleeps POLL_MS.
// - GET /stats: deliveries by status.
//
// Environment: DATABASE_URL (a database this process may create tables in; the caller creates
// and drops it), RECEIVER_URL (where every delivery goes), WEBHOOK_SECRET (`whsec_…`).
// Prints "listening on <url>" when ready; SIGTERM stops the loops and closes everything.
import { createHmac } from 'node:crypto';
import Fastify from 'fastify';
import pg from 'pg';
import { Pool } from 'undici';

const CLAIM = 100;
const LOOPS = 2;
const HTTP_CONNECTIONS = 64;
const LEASE_SECONDS = 60;
const POLL_MS = 100;
const MAX_ATTEMPTS = 10;

const receiver = new URL(process.env.RECEIVER_URL);
const secret = Buffer.from(process.env.WEBHOOK_SECRET.slice('whsec_'.length), 'base64');
const db = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 10 });
const http = new Pool(receiver.origin, { connections: HTTP_CONNECTIONS, keepAliveTimeout: 30_000 });

await db.query(`
CREATE TABLE IF NOT EXISTS events (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  payload jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS deliveries (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  event_id bigint NOT NULL REFERENCES events (id),
  url text NOT NULL,
  status text NOT NULL DEFAULT 'pending',
  attempts int NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  locked_until timestamptz
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
`);

const app = Fastify({ logger: false, bodyLimit: 4 * 1024 * 1024 });
app.post('/v1/events/batch', async (request, reply) => {
  const events = request.body?.events;
  if (!Array.isArray(events) || events.length === 0 || events.length > 500) return reply.code(400).send({ error: 'events: 1 to 500' });
  const stored = events.map((e) => ({ type: e.type, data: e.payload }));
  const { rows } = await db.query(
    `WITH e AS (INSERT INTO events (payload) SELECT value FROM jsonb_array_elements($1::jsonb) RETURNING id)
     INSERT INTO deliveries (event_id, url) SELECT id, $2 FROM e RETURNING event_id`,
    [JSON.stringify(stored), receiver.href],
  );
  return reply.code(202).send({ data: rows.map((r) => ({ id: String(r.event_id) })) });
});
app.get('/stats', async () => {
  const { rows } = await db.query('SELECT status, count(*)::int AS n FROM deliveries GROUP BY status');
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
});

/** One attempt: true on a 2xx. */
async function deliver(row) {
  const id = `hr_${row.id}`;
  const timestamp = String(Math.floor(Date.now() / 1000));
  const body = `{"type":${JSON.stringify(row.payload.type)},"timestamp":${JSON.stringify(row.created_at.toISOString())},"data":${JSON.stringify(row.payload.data)}}`;
  const signature = createHmac('sha256', secret).update(`${id}.${timestamp}.${body}`).digest('base64');
  try {
    const response = await http.request({
      path: `${receiver.pathname}${receiver.search}`,
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'hand-rolled/1', 'webhook-id': id, 'webhook-timestamp': timestamp, 'webhook-signature': `v1,${signature}` },
      body,
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    });
    await response.body.dump();
    return response.statusCode >= 200 && response.statusCode < 300;
  } catch {
    return false;
  }
}

let running = true;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
async function workerLoop() {
  while (running) {
    try {
      const { rows } = await db.query(
        `UPDATE deliveries d SET locked_until = now() + make_interval(secs => $1), attempts = d.attempts + 1
           FROM events e
          WHERE e.id = d.event_id
            AND d.id IN (SELECT id FROM deliveries
                          WHERE status = 'pending' AND next_attempt_at <= now() AND (locked_until IS NULL OR locked_until < now())
                          ORDER BY next_attempt_at
                          LIMIT $2 FOR UPDATE SKIP LOCKED)
        RETURNING d.id, d.attempts, e.payload, e.created_at`,
        [LEASE_SECONDS, CLAIM],
      );
      if (rows.length === 0) {
        await sleep(POLL_MS);
        continue;
      }
      const outcomes = await Promise.all(rows.map(deliver));
      const done = rows.filter((_, i) => outcomes[i]).map((r) => r.id);
      const failed = rows.filter((_, i) => !outcomes[i]).map((r) => r.id);
      if (done.length > 0) await db.query(`UPDATE deliveries SET status = 'done', locked_until = NULL WHERE id = ANY($1::bigint[])`, [done]);
      if (failed.length > 0) {
        await db.query(
          `UPDATE deliveries SET locked_until = NULL,
                  status = CASE WHEN attempts >= $2 THEN 'dead' ELSE 'pending' END,
                  next_attempt_at = now() + make_interval(secs => power(2, attempts))
            WHERE id = ANY($1::bigint[])`,
          [failed, MAX_ATTEMPTS],
        );
      }
    } catch (error) {
      if (!running) return;
      process.stderr.write(`worker: ${error.message}\n`);
      await sleep(POLL_MS);
    }
  }
}

const loops = Array.from({ length: LOOPS }, workerLoop);
await app.listen({ port: 0, host: '127.0.0.1' });
process.stdout.write(`listening on http://127.0.0.1:${app.server.address().port}\n`);
process.once('SIGTERM', async () => {
  running = false;
  await app.close();
  await Promise.all(loops);
  await http.close();
  await db.end();
});
