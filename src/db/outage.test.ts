/**
 * Fault test: PostgreSQL stopped and started under load. A real `bulkhead serve` process (role
 * all: API, delivery engine, runner and jobs in one) runs against a PostgreSQL cluster of this
 * file's own while clients send events; the cluster is stopped mid-load, first with `-m fast`
 * (sessions end with an error message), then with `-m immediate` (the server dies; crash recovery
 * at the next start). Throughout, every answer is 202 or 503 `database_unavailable` with
 * Retry-After, none takes longer than a bound, and the process stays up; after each restart the
 * same process answers 202 again within a bound; at the end every event that got a 202 has been
 * delivered to the receiver. A client that got a 503 retries with the same Idempotency-Key, as a
 * client should.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testSecrets } from '../testing/app.js';
import { type OwnPostgres, ownPostgresUnavailable, type StopMode, startOwnPostgres } from '../testing/own-postgres.js';
import { type BulkheadProcess, processGroup } from '../testing/processes.js';
import { startReceiver } from '../testing/receiver.js';
import { openPostgres } from './postgres.js';

const LOADERS = 4;
/** Between one loader's requests: enough to keep the process busy, not enough to starve a shared 2-core machine. */
const PACE_MS = 25;
/** After a 503 a loader tries again this soon (sooner than Retry-After asks, to keep requests arriving during the outage). */
const RETRY_MS = 200;
/** No answer may take longer: the pool's connect timeout (2 s here) plus slack. */
const ANSWER_BOUND_MS = 8_000;
const OUTAGE_MS = 2_500;
/** From the cluster's start until the process's first 202 to a request sent after it. */
const RECOVERY_BOUND_MS = 15_000;
const DRAIN_BOUND_MS = 40_000;
const LEASE_MS = 2_000;

interface Answer {
  readonly seq: number;
  readonly phase: string;
  readonly sentAt: number;
  readonly ms: number;
  readonly status: number | 'error';
  readonly code: string | undefined;
  readonly retryAfter: string | null;
  readonly error?: string;
}

describe.skipIf(ownPostgresUnavailable !== null)(`PostgreSQL stopped and started under load (${ownPostgresUnavailable ?? 'own cluster'})`, () => {
  const group = processGroup();
  let cluster: OwnPostgres | undefined;
  let receiver: Awaited<ReturnType<typeof startReceiver>> | undefined;
  let server: BulkheadProcess | undefined;
  let base = '';
  let dataDir: string | undefined;

  beforeAll(async () => {
    cluster = await startOwnPostgres();
    receiver = await startReceiver();
    dataDir = await mkdtemp(path.join(tmpdir(), 'bk-outage-'));
    server = group.spawn(['serve'], {
      DATABASE_URL: cluster.url(),
      BULKHEAD_ADMIN_TOKEN: testSecrets.adminToken,
      BULKHEAD_API_KEY_PEPPER: testSecrets.apiKeyPepper,
      BULKHEAD_ROOT_KEYS: testSecrets.rootKeys.map((k) => `${String(k.version)}:${k.key.toString('base64')}`).join(','),
      BULKHEAD_DATA_DIR: dataDir,
      BULKHEAD_EGRESS_ALLOW_CIDRS: '127.0.0.1/32',
      BULKHEAD_PG_POOL_SIZE: '6',
      BULKHEAD_PG_CONNECT_TIMEOUT_MS: '2000',
      BULKHEAD_WORKER_POLL_MS: '50',
      BULKHEAD_DELIVERY_TIMEOUT_MS: '1000',
      BULKHEAD_DELIVERY_LEASE_MS: String(LEASE_MS),
      BULKHEAD_RETRY_SCHEDULE: '1,1,1,1,1,1,1,1,1,1',
      // The jobs run during the outage too: they must fail quietly and carry on.
      BULKHEAD_JOB_INTERVAL_MS: '500',
      BULKHEAD_RATE_LIMIT_KEY_PER_MINUTE: '1000000',
      BULKHEAD_RATE_LIMIT_WORKSPACE_PER_MINUTE: '1000000',
      BULKHEAD_RATE_LIMIT_TENANT_PER_MINUTE: '1000000',
      PORT: '0',
      LOG_LEVEL: 'warn',
    });
    await server.waitForOutput(/listening on http:\/\/\S+/, 60_000);
    base = /listening on (http:\/\/\S+)/.exec(server.output())?.[1] ?? '';
    for (const deadline = Date.now() + 60_000; ; ) {
      const ready = await fetch(`${base}/readyz`).then((r) => r.status, () => 0);
      if (ready === 200) break;
      if (Date.now() > deadline || !server.alive) throw new Error(`bulkhead not ready within 60 s:\n${server.output().slice(-3000)}`);
      await sleep(100);
    }
  }, 120_000);

  afterAll(async () => {
    await group.killAll();
    await receiver?.close();
    await cluster?.destroy();
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
  });

  it('every answer is 202 or 503 database_unavailable with Retry-After, the process stays up and answers 202 again after each restart, and every event answered 202 is delivered', async () => {
    if (!cluster || !receiver || !server) throw new Error('the set-up did not finish');
    const pg = cluster;
    const bulkhead = server;
    const errorLines = bulkhead.watch(/"level":(50|60)/);
    const unavailableLines = bulkhead.watch(/"code":"database_unavailable"/);

    const call = async (method: string, url: string, token: string, body?: unknown, headers: Record<string, string> = {}) => {
      const res = await fetch(`${base}${url}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(ANSWER_BOUND_MS),
      });
      return { status: res.status, retryAfter: res.headers.get('retry-after'), json: (await res.json().catch(() => ({}))) as Record<string, unknown> };
    };
    const admin = (method: string, url: string, body?: unknown) => call(method, url, testSecrets.adminToken, body);
    const tenant = await admin('POST', '/v1/tenants', { name: 'outage', slug: 'outage' });
    expect(tenant.status).toBe(201);
    const workspace = await admin('POST', `/v1/tenants/${String(tenant.json['id'])}/workspaces`, { name: 'main', environment: 'production' });
    const workspaceId = String(workspace.json['id']);
    const created = await admin('POST', `/v1/workspaces/${workspaceId}/api-keys`, { name: 'load', scopes: ['*'] });
    const key = String(created.json['key']);
    const destination = await call('POST', '/v1/destinations', key, { url: `${receiver.url}/hook` });
    expect(destination.status).toBe(201);
    expect((await call('POST', '/v1/rules', key, { name: 'all', eventTypes: ['*'], destinationIds: [String(destination.json['id'])] })).status).toBe(201);

    const answers: Answer[] = [];
    const accepted = new Map<number, string>();
    let phase = 'up';
    let nextSeq = 0;
    let loading = true;
    const loader = async () => {
      while (loading) {
        const seq = nextSeq++;
        // A 503 is retried with the same Idempotency-Key until a 202 (or the load ends).
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- `loading` is cleared by the test body while this loop awaits
        while (loading) {
          const sentAt = Date.now();
          const sentIn = phase;
          let answer: Answer;
          try {
            const res = await call('POST', '/v1/events', key, { type: 'outage.test', payload: { seq } }, { 'idempotency-key': `outage-${String(seq)}` });
            answer = { seq, phase: sentIn, sentAt, ms: Date.now() - sentAt, status: res.status, code: res.json['code'] as string | undefined, retryAfter: res.retryAfter };
            if (res.status === 202) accepted.set(seq, String(res.json['id']));
          } catch (error) {
            answer = { seq, phase: sentIn, sentAt, ms: Date.now() - sentAt, status: 'error', code: undefined, retryAfter: null, error: (error as Error).message };
          }
          answers.push(answer);
          if (answer.status === 202) break;
          await sleep(RETRY_MS);
          if (answer.status !== 503) break;
        }
        await sleep(PACE_MS);
      }
    };
    const loaders = Array.from({ length: LOADERS }, loader);
    const summary = () => {
      const byKind = new Map<string, number>();
      for (const a of answers) {
        const kind = `${a.phase}:${String(a.status)}${a.code === undefined ? '' : ` ${a.code}`}`;
        byKind.set(kind, (byKind.get(kind) ?? 0) + 1);
      }
      return `${String(accepted.size)} accepted; answers ${JSON.stringify(Object.fromEntries(byKind))}; process ${bulkhead.alive ? 'alive' : 'EXITED'}`;
    };

    const recoveries: number[] = [];
    try {
      for (const mode of ['fast', 'immediate'] satisfies StopMode[]) {
        const before = accepted.size;
        for (const until = Date.now() + 5_000; accepted.size < before + 30 && Date.now() < until; ) await sleep(20);
        phase = `stopping(${mode})`;
        await pg.stop(mode);
        phase = `down(${mode})`;
        const downAnswers = answers.length;
        await sleep(OUTAGE_MS);
        expect(bulkhead.alive, `the process exited during the ${mode} outage:\n${bulkhead.output().slice(-3000)}`).toBe(true);
        // The outage was seen: requests were answered 503 while the server was down.
        expect(answers.slice(downAnswers).filter((a) => a.status === 503).length, summary()).toBeGreaterThan(0);

        phase = `starting(${mode})`;
        await pg.start();
        const startedAt = Date.now();
        phase = `recovered(${mode})`;
        for (;;) {
          if (answers.some((a) => a.status === 202 && a.sentAt >= startedAt)) break;
          if (Date.now() - startedAt > RECOVERY_BOUND_MS) throw new Error(`no 202 within ${String(RECOVERY_BOUND_MS)} ms after the ${mode} restart: ${summary()}\n${bulkhead.output().slice(-3000)}`);
          await sleep(20);
        }
        recoveries.push(Date.now() - startedAt);
        await sleep(1_000);
      }
    } finally {
      loading = false;
      await Promise.all(loaders);
    }

    // During the whole run: only 202 or 503 database_unavailable with Retry-After, each within the bound.
    const wrong = answers.filter((a) => !(a.status === 202 || (a.status === 503 && a.code === 'database_unavailable' && a.retryAfter === '2')) || a.ms > ANSWER_BOUND_MS);
    expect(wrong.slice(0, 10), summary()).toEqual([]);
    expect(bulkhead.alive).toBe(true);
    expect(answers.filter((a) => a.status === 503).length).toBeGreaterThan(0);
    // Logged as warnings, never as errors.
    expect(errorLines.lines.slice(0, 5), summary()).toEqual([]);
    expect(unavailableLines.count).toBeGreaterThan(0);

    // Nothing acknowledged is lost: every event that got a 202 reaches the receiver (at least once).
    const deliveredSeqs = () => new Set(receiver?.received.filter((r) => r.path === '/hook').map((r) => (JSON.parse(r.body) as { data: { seq: number } }).data.seq));
    const drainStarted = Date.now();
    let missing: number[];
    for (;;) {
      const seen = deliveredSeqs();
      missing = [...accepted.keys()].filter((seq) => !seen.has(seq));
      if (missing.length === 0 || Date.now() - drainStarted > DRAIN_BOUND_MS) break;
      await sleep(200);
    }
    expect(missing.slice(0, 20), `${String(missing.length)} events answered 202 were not delivered within ${String(DRAIN_BOUND_MS)} ms; ${summary()}`).toEqual([]);

    // And the queue agrees: each acknowledged event's delivery is recorded as delivered, none failed.
    const check = openPostgres({ url: pg.url(), poolSize: 1 });
    try {
      let notDelivered: string[];
      let failed: unknown[];
      // The receiver answers before the outcome is committed: allow the last few a moment.
      for (const until = Date.now() + 10_000; ; ) {
        const { rows } = await check.owner.query<{ event_id: string; status: string }>('SELECT event_id, status FROM deliveries WHERE workspace_id = $1', [workspaceId]);
        const statusOf = new Map(rows.map((r) => [r.event_id, r.status]));
        notDelivered = [...accepted.values()].filter((id) => statusOf.get(id) !== 'delivered');
        failed = rows.filter((r) => r.status === 'failed');
        if ((notDelivered.length === 0 && failed.length === 0) || Date.now() > until) break;
        await sleep(200);
      }
      expect(notDelivered.slice(0, 10)).toEqual([]);
      expect(failed).toEqual([]);
    } finally {
      await check.close();
    }

    const hooks = receiver.received.filter((r) => r.path === '/hook');
    const repeats = hooks.length - new Set(hooks.map((r) => String(r.headers['webhook-id']))).size;
    process.stdout.write(`outage test: ${summary()}; recovered after ${recoveries.join(' / ')} ms; ${String(hooks.length)} webhooks, ${String(repeats)} repeated webhook-ids\n`);
  }, 110_000);
});
