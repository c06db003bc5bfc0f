// Baseline "bullmq": webhook delivery the way a Node team would build it on BullMQ and Redis, as
// the e2e benchmark's second yardstick. Nothing more than the library's defaults and the obvious
// settings: no tenants, no attempt log, no per-destination fairness.
//
// - POST /v1/events/batch takes `{ events: [{ type, payload }] }` (Bulkhead's batch ingest body)
//   and enqueues one job per event with one `queue.addBulk` (10 attempts, exponential backoff,
//   completed jobs removed).
// - One Worker, concurrency 64, posts each job's body with Standard Webhooks headers (HMAC-SHA256,
//   `v1,<base64>`; webhook-id is the job id) over one undici Pool of 64 connections; a non-2xx
//   throws, so BullMQ retries it.
// - GET /stats: the queue's job counts.
//
// Environment: REDIS_URL, QUEUE (a name no one else uses: the caller makes one per run),
// RECEIVER_URL, WEBHOOK_SECRET (`whsec_…`). Prints "listening on <url>" when ready; SIGTERM closes
// the worker and obliterates the queue (the caller checks no key of it is left).
import { createHmac } from 'node:crypto';
import { Queue, Worker } from 'bullmq';
import Fastify from 'fastify';
import { Pool } from 'undici';

const CONCURRENCY = 64;
const receiver = new URL(process.env.RECEIVER_URL);
const secret = Buffer.from(process.env.WEBHOOK_SECRET.slice('whsec_'.length), 'base64');
const redis = new URL(process.env.REDIS_URL);
const connection = { host: redis.hostname, port: Number(redis.port || 6379), maxRetriesPerRequest: null };
const http = new Pool(receiver.origin, { connections: CONCURRENCY, keepAliveTimeout: 30_000 });
const queue = new Queue(process.env.QUEUE, {
  connection,
  defaultJobOptions: { attempts: 10, backoff: { type: 'exponential', delay: 1000 }, removeOnComplete: true, removeOnFail: false },
});

const worker = new Worker(process.env.QUEUE, async (job) => {
  const id = `bq_${job.id}`;
  const timestamp = String(Math.floor(Date.now() / 1000));
  const body = `{"type":${JSON.stringify(job.data.type)},"timestamp":${JSON.stringify(new Date(job.timestamp).toISOString())},"data":${JSON.stringify(job.data.data)}}`;
  const signature = createHmac('sha256', secret).update(`${id}.${timestamp}.${body}`).digest('base64');
  const response = await http.request({
    path: `${receiver.pathname}${receiver.search}`,
    method: 'POST',
    headers: { 'content-type': 'application/json', 'user-agent': 'bullmq-webhooks/1', 'webhook-id': id, 'webhook-timestamp': timestamp, 'webhook-signature': `v1,${signature}` },
    body,
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  await response.body.dump();
  if (response.statusCode < 200 || response.statusCode > 299) throw new Error(`receiver answered ${response.statusCode}`);
}, { connection, concurrency: CONCURRENCY });
worker.on('error', (error) => process.stderr.write(`worker: ${error.message}\n`));

const app = Fastify({ logger: false, bodyLimit: 4 * 1024 * 1024 });
app.post('/v1/events/batch', async (request, reply) => {
  const events = request.body?.events;
  if (!Array.isArray(events) || events.length === 0 || events.length > 500) return reply.code(400).send({ error: 'events: 1 to 500' });
  const jobs = await queue.addBulk(events.map((e) => ({ name: e.type, data: { type: e.type, data: e.payload } })));
  return reply.code(202).send({ data: jobs.map((j) => ({ id: j.id })) });
});
app.get('/stats', async () => queue.getJobCounts());

await worker.waitUntilReady();
await app.listen({ port: 0, host: '127.0.0.1' });
process.stdout.write(`listening on http://127.0.0.1:${app.server.address().port}\n`);
process.once('SIGTERM', async () => {
  await app.close();
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  await http.close();
});
