/**
 * The delivery queue survives crashing workers: three real `bulkhead serve --role worker`
 * processes share one PostgreSQL database while events stream in through the API and one worker
 * at a time is SIGKILLed and restarted. Every event must arrive, and a delivery that was in
 * flight in a killed worker arrives again, after its lease expires, with the same `webhook-id`
 * and the same body. The workers run with a 2 s lease (BULKHEAD_DELIVERY_LEASE_MS) so the test
 * stays well inside its 60 s bound.
 */
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, testSecrets, type TestApp } from '../testing/app.js';
import { backends, type TestDatabase } from '../testing/databases.js';
import { type BulkheadProcess, pidOfClientSocket, processGroup } from '../testing/processes.js';

const WORKERS = 3;
const LEASE_MS = 2000;
const MIN_KILLS = 3;
const KILL_EVERY_MS = 1200;
/**
 * Events arrive at 40 a second (a busy 2-core runner keeps up) until MIN_EVENTS, then at 8 a
 * second until MIN_KILLS: a kill needs a second ready worker, and a restarted one boots in 3 s on an
 * idle 2-core machine but 20 s on a loaded one.
 */
const BATCH = 8;
const BATCH_EVERY_MS = 200;
const TRICKLE_EVERY_MS = 1000;
const MIN_EVENTS = 300;
/** The receiver holds each answer this long, so a killed worker has requests open. */
const ANSWER_DELAY_MS = 100;
/** From the start of the test; the hard timeout is 60 s. */
const STREAM_DEADLINE_MS = 30_000;
const DRAIN_DEADLINE_MS = 52_000;

/** Which worker sent a request is read from /proc (the engine does not say, and must not be changed to). */
const procfs = existsSync('/proc/net/tcp');

interface Hit {
  readonly webhookId: string;
  readonly body: string;
  readonly verified: boolean;
  readonly pid: number | undefined;
  readonly receivedAt: number;
  answered: boolean;
}

interface Kill {
  readonly pid: number;
  readonly killedAt: number;
  /** webhook-ids the victim had sent and was still waiting on when it died. */
  readonly inFlight: readonly string[];
}

const postgres = backends.filter((b) => b.name === 'postgres');

function groupBy<T, K>(items: readonly T[], key: (item: T) => K): Map<K, T[]> {
  const groups = new Map<K, T[]>();
  for (const item of items) {
    const k = key(item);
    const group = groups.get(k);
    if (group) group.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}

describe.each(postgres)('delivery with crashing worker processes on $name', (backend) => {
  const unavailable = backend.unavailable ?? (procfs ? null : 'needs Linux /proc to tell which worker sent each request');
  describe.skipIf(unavailable !== null)(`(${unavailable ?? 'available'})`, () => {
    const group = processGroup();
    let database: TestDatabase | undefined;
    let app: TestApp | undefined;
    let dataDir: string | undefined;
    let receiver: Server | undefined;
    let workerEnv: Record<string, string>;
    const hits: Hit[] = [];
    const socketPids = new Map<Socket, Promise<number | undefined>>();
    let verifier: Webhook | undefined;

    interface Worker {
      readonly process: BulkheadProcess;
      readonly spawnedAt: number;
      readyAt: number | undefined;
      startError: Error | undefined;
    }
    const workers: Worker[] = [];
    function startWorker(): Worker {
      const worker: Worker = { process: group.spawn(['serve', '--role', 'worker'], workerEnv), spawnedAt: Date.now(), readyAt: undefined, startError: undefined };
      workers.push(worker);
      // "ready" is logged once the database is open and the engine is claiming.
      worker.process.waitForOutput(/"msg":"ready"/, 45_000).then(
        () => {
          worker.readyAt = Date.now();
        },
        (error: unknown) => {
          worker.startError = error as Error;
        },
      );
      return worker;
    }
    const outputs = () => workers.map((w) => `--- worker ${String(w.process.pid)}${w.process.alive ? '' : ' (exited)'}\n${w.process.output().slice(-1500)}`).join('\n');

    beforeAll(async () => {
      const server = createServer((req, res: ServerResponse) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          const headers = { 'webhook-id': String(req.headers['webhook-id']), 'webhook-timestamp': String(req.headers['webhook-timestamp']), 'webhook-signature': String(req.headers['webhook-signature']) };
          let verified = false;
          try {
            verifier?.verify(body, headers);
            verified = verifier !== undefined;
          } catch {
            verified = false;
          }
          void (socketPids.get(req.socket) ?? Promise.resolve(undefined)).then((pid) => {
            const hit: Hit = { webhookId: headers['webhook-id'], body, verified, pid, receivedAt: Date.now(), answered: false };
            hits.push(hit);
            setTimeout(() => {
              hit.answered = true;
              res.writeHead(200).end('ok');
            }, ANSWER_DELAY_MS);
          });
        });
      });
      receiver = server;
      const port = () => (server.address() as AddressInfo).port;
      server.on('connection', (socket: Socket) => {
        socketPids.set(socket, pidOfClientSocket(socket.remotePort ?? 0, port(), group.processes.map((p) => p.pid)));
      });
      // A killed worker's sockets die mid-request; that is the point, not an error.
      server.on('clientError', (_error, socket) => socket.destroy());
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');

      const db = await backend.open();
      database = db;
      app = await startTestApp(backend, { database: db, config: { egressAllowCidrs: ['127.0.0.1/32'] } });
      dataDir = await mkdtemp(path.join(tmpdir(), 'bk-crash-'));
      workerEnv = {
        DATABASE_URL: db.url ?? '',
        BULKHEAD_DB_APP_ROLE: db.appRole,
        BULKHEAD_ADMIN_TOKEN: testSecrets.adminToken,
        BULKHEAD_API_KEY_PEPPER: testSecrets.apiKeyPepper,
        BULKHEAD_ROOT_KEYS: testSecrets.rootKeys.map((k) => `${String(k.version)}:${k.key.toString('base64')}`).join(','),
        BULKHEAD_DATA_DIR: dataDir,
        BULKHEAD_EGRESS_ALLOW_CIDRS: '127.0.0.1/32',
        BULKHEAD_WORKER_CONCURRENCY: '8',
        BULKHEAD_WORKER_POLL_MS: '50',
        BULKHEAD_DELIVERY_TIMEOUT_MS: '1000',
        BULKHEAD_DELIVERY_LEASE_MS: String(LEASE_MS),
        BULKHEAD_RETRY_SCHEDULE: '1,1,1,1,1',
        BULKHEAD_PG_POOL_SIZE: '4',
        BULKHEAD_JOB_INTERVAL_MS: '3600000',
        PORT: '0',
        LOG_LEVEL: 'info',
      };
      for (let i = 0; i < WORKERS; i++) startWorker();
      const deadline = Date.now() + 45_000;
      while (workers.some((w) => w.readyAt === undefined)) {
        const failed = workers.find((w) => w.startError);
        if (failed?.startError) throw failed.startError;
        if (Date.now() > deadline) throw new Error(`workers not ready within 45 s:\n${outputs()}`);
        await sleep(50);
      }
    }, 60_000);

    afterAll(async () => {
      // Children first, whatever else failed: they must not outlive the test.
      await group.killAll();
      await app?.close();
      receiver?.closeAllConnections();
      receiver?.close();
      await database?.close();
      if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
    });

    it('delivers every event while workers are SIGKILLed; a repeat carries the same webhook-id and body', async () => {
      const started = Date.now();
      if (!app || !receiver) throw new Error('the set-up did not finish');
      const t = app;
      const w = await t.workspaceWithKey(['*']);
      const call = (method: 'GET' | 'POST', url: string, json?: unknown) => t.request({ method, url, token: w.key, ...(json === undefined ? {} : { json }) });
      const destination = (await call('POST', '/v1/destinations', { url: `http://127.0.0.1:${String((receiver.address() as AddressInfo).port)}/hook` })).json<{ id: string; secret: string }>();
      expect(destination.id).toBeTruthy();
      verifier = new Webhook(destination.secret);
      expect((await call('POST', '/v1/rules', { name: 'all', eventTypes: ['*'], destinationIds: [destination.id] })).statusCode).toBe(201);

      // An observer of who holds which lease, and for how long it was granted.
      const owners = new Set<string>();
      const leaseLengths = new Set<number>();
      const lastOwner = new Map<string, string>();
      const takenOver = new Set<string>();
      const running = { sampler: true, stream: true };
      const streaming = () => running.stream;
      const samplerErrors: string[] = [];
      const sampler = (async () => {
        while (running.sampler) {
          try {
            const { rows } = await t.database.db.owner.query<{ id: string; lease_owner: string; lease_until: Date; updated_at: Date }>(
              "SELECT id, lease_owner, lease_until, updated_at FROM deliveries WHERE status = 'delivering'",
            );
            for (const row of rows) {
              owners.add(row.lease_owner);
              leaseLengths.add(row.lease_until.getTime() - row.updated_at.getTime());
              const before = lastOwner.get(row.id);
              if (before !== undefined && before !== row.lease_owner) takenOver.add(row.id);
              lastOwner.set(row.id, row.lease_owner);
            }
          } catch (error) {
            // Reported, not fatal: the observer only counts.
            samplerErrors.push((error as Error).message);
          }
          await sleep(100);
        }
      })();

      const eventBySeq = new Map<number, string>();
      const kills: Kill[] = [];
      let streamedAt: number | undefined;
      const summary = () => {
        const perPid = [...groupBy(hits, (h) => h.pid).entries()].map(([pid, list]) => `${String(pid)}:${String(list.length)}`).join(' ');
        const repeats = [...groupBy(hits, (h) => h.webhookId).values()].filter((group) => group.length > 1).length;
        const boots = workers.map((x) => (x.readyAt === undefined ? '-' : String(x.readyAt - x.spawnedAt))).join('/');
        return (
          `${String(eventBySeq.size)} events, ${String(hits.length)} requests, ${String(repeats)} repeated webhook-ids, ` +
          `kills at ${kills.map((k) => `${String(k.killedAt - started)} ms (${String(k.inFlight.length)} open)`).join(', ')}, ${String(owners.size)} lease owners, ` +
          `${String(takenOver.size)} leases seen taken over, requests per pid ${perPid}, boots ${boots} ms, ` +
          `streamed by ${String(streamedAt)} ms, now ${String(Date.now() - started)} ms` +
          (samplerErrors.length > 0 ? `, observer errors: ${samplerErrors.slice(0, 3).join('; ')}` : '')
        );
      };
      const stream = (async () => {
        let seq = 0;
        for (let next = Date.now(); (seq < MIN_EVENTS || kills.length < MIN_KILLS) && Date.now() - started < STREAM_DEADLINE_MS; next += seq < MIN_EVENTS ? BATCH_EVERY_MS : TRICKLE_EVERY_MS) {
          await sleep(next - Date.now());
          const events = Array.from({ length: BATCH }, () => ({ type: 'crash.test', payload: { seq: seq++ } }));
          const res = await call('POST', '/v1/events/batch', { events });
          if (res.statusCode !== 202) throw new Error(`batch: ${String(res.statusCode)} ${res.body}`);
          const accepted = res.json<{ data: { id: string; deliveries: number }[] }>().data;
          accepted.forEach((e, i) => {
            expect(e.deliveries).toBe(1);
            eventBySeq.set(events[i]?.payload.seq ?? -1, e.id);
          });
        }
        running.stream = false;
      })();

      const killer = (async () => {
        while (streaming()) {
          await sleep(KILL_EVERY_MS);
          const ready = workers.filter((x) => x.process.alive && x.readyAt !== undefined).sort((a, b) => (a.readyAt ?? 0) - (b.readyAt ?? 0));
          // Always leave one ready worker; the victim is the one that has been working longest.
          const victim = ready.length >= 2 ? ready[0] : undefined;
          if (!victim || !streaming()) continue;
          // Strike while it has a request open at the receiver (sent, not yet answered, so not yet recorded).
          const open = () => hits.filter((h) => h.pid === victim.process.pid && !h.answered).map((h) => h.webhookId);
          for (const until = Date.now() + 1000; open().length === 0 && Date.now() < until; ) await sleep(5);
          const inFlight = open();
          if (inFlight.length === 0) continue; // idle: a kill now would prove nothing
          victim.process.kill('SIGKILL');
          kills.push({ pid: victim.process.pid, killedAt: Date.now(), inFlight });
          await victim.process.exited;
          startWorker();
        }
      })();

      try {
        await Promise.all([stream, killer]);
        streamedAt = Date.now() - started;
        // Drain: every delivery delivered, the killed workers' leases expired and re-claimed.
        let counts: Record<string, number> = {};
        for (;;) {
          const { rows } = await t.database.db.owner.query<{ status: string; n: number }>('SELECT status, count(*)::int AS n FROM deliveries WHERE workspace_id = $1 GROUP BY status', [w.workspaceId]);
          counts = Object.fromEntries(rows.map((r) => [r.status, r.n]));
          if (counts['delivered'] === eventBySeq.size && rows.length === 1) break;
          if (Date.now() - started > DRAIN_DEADLINE_MS) throw new Error(`not drained ${String(DRAIN_DEADLINE_MS)} ms into the test: ${JSON.stringify(counts)}; ${summary()}\n${outputs()}`);
          await sleep(100);
        }
      } finally {
        // On failure too: no kills or restarts may outlive this block.
        running.stream = false;
        await Promise.allSettled([stream, killer]);
        running.sampler = false;
        await sampler;
      }
      await sleep(ANSWER_DELAY_MS * 2); // late repeats still on the wire

      const { rows: deliveries } = await t.database.db.owner.query<{ id: string; event_id: string; status: string }>('SELECT id, event_id, status FROM deliveries WHERE workspace_id = $1', [w.workspaceId]);
      const deliveryById = new Map(deliveries.map((d) => [d.id, d]));
      expect(deliveries).toHaveLength(eventBySeq.size);
      expect(new Set(deliveries.map((d) => d.event_id))).toEqual(new Set(eventBySeq.values()));
      expect(deliveries.filter((d) => d.status !== 'delivered')).toEqual([]);

      // Nothing lost, nothing invented: the webhook-ids received are exactly the delivery ids.
      expect(new Set(hits.map((h) => h.webhookId))).toEqual(new Set(deliveryById.keys()));
      // Every request (repeats too) is signed for that destination and carries the delivery's own event.
      expect(hits.filter((h) => !h.verified)).toEqual([]);
      for (const hit of hits) {
        const seq = (JSON.parse(hit.body) as { data: { seq: number } }).data.seq;
        expect(eventBySeq.get(seq), hit.webhookId).toBe(deliveryById.get(hit.webhookId)?.event_id);
      }
      const byId = groupBy(hits, (h) => h.webhookId);
      const repeated = [...byId.values()].filter((group) => group.length > 1);
      for (const group of repeated) expect(new Set(group.map((h) => h.body)).size, group[0]?.webhookId).toBe(1);

      // The workers held leases of the configured length (the claim is the one place that sets them).
      expect([...leaseLengths]).toEqual([LEASE_MS]);
      // The crashes were real: at least three, each (by the killer's choice of moment) with a request
      // open in the victim, and each of those was sent again after the kill by another process (the
      // lease expired and was re-claimed).
      expect(kills.length).toBeGreaterThanOrEqual(MIN_KILLS);
      for (const kill of kills) {
        for (const id of kill.inFlight) expect((byId.get(id) ?? []).some((h) => h.receivedAt > kill.killedAt && h.pid !== kill.pid), id).toBe(true);
      }
      // Several processes delivered (each victim did, by the check above); none failed to start.
      const senders = new Set(hits.map((h) => h.pid));
      expect(senders.size).toBeGreaterThanOrEqual(2);
      expect(workers.flatMap((x) => (x.startError ? [x.startError.message] : []))).toEqual([]);

      process.stdout.write(`crash test: ${summary()}\n`);
      expect(Date.now() - started).toBeLessThan(60_000);
    }, 60_000);
  });
});
