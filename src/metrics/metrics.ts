/**
 * Prometheus metrics on `GET /metrics` (platform admin token: the figures describe every tenant
 * together, so they are not public). A registry per app, never the global one, so tests can build
 * several apps. Counters owned by other modules (the egress client's refusals, the relay's
 * outcomes) are read at scrape time rather than mirrored; the delivery engine reports through
 * the observer returned here. docs/METRICS.md lists every metric.
 *
 * No label carries a tenant, workspace or any other id: each label has a small closed set of
 * values (per-workspace figures are `GET /v1/usage`'s).
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { statementsSent } from '../db/statements.js';
import type { DeliveryObserver } from '../delivery/engine.js';
import type { EgressMetrics } from '../egress/client.js';
import type { InboundMetrics } from '../inbound/index.js';
import type { RetentionMetrics } from '../jobs/retention.js';
import type { HttpServer } from '../http/server.js';
import type { RelayMetrics } from '../relay/relay.js';
import type { SandboxStats } from '../sandbox/index.js';
import { DELIVERY_QUEUE_STATES, EXECUTION_QUEUE_STATES, type QueueFigures } from './queue-figures.js';

export function createMetrics(deps: {
  egress: EgressMetrics;
  inbound?: InboundMetrics | undefined;
  relay?: RelayMetrics | undefined;
  sandbox?: (() => SandboxStats) | undefined;
  /** The queues' figures (cached by their owner: see queue-figures.ts). */
  queues?: (() => Promise<QueueFigures>) | undefined;
  retention?: RetentionMetrics | undefined;
}) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'bulkhead_' });
  const requests = new Histogram({
    name: 'bulkhead_http_request_duration_seconds',
    help: 'HTTP requests by route, method and status class',
    labelNames: ['route', 'method', 'status'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  new Gauge({
    name: 'bulkhead_egress_blocked_total',
    help: 'Outbound requests refused by the egress policy, by reason (never sent)',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      for (const [reason, count] of Object.entries(deps.egress.blocked)) this.set({ reason }, count);
    },
  });
  new Gauge({
    name: 'bulkhead_egress_requests_total',
    help: 'Outbound requests sent (each redirect hop counts)',
    registers: [registry],
    collect() {
      this.set(deps.egress.requests);
    },
  });
  const { inbound } = deps;
  if (inbound) {
    new Gauge({
      name: 'bulkhead_inbound_accepted_total',
      help: 'Inbound webhook requests verified and turned into events (or answered as duplicates), by scheme',
      labelNames: ['scheme'],
      registers: [registry],
      collect() {
        for (const [scheme, count] of inbound.accepted) this.set({ scheme }, count);
      },
    });
    new Gauge({
      name: 'bulkhead_inbound_rejected_total',
      help: 'Inbound webhook requests refused (nothing stored), by scheme (none: no such source) and reason',
      labelNames: ['scheme', 'reason'],
      registers: [registry],
      collect() {
        for (const { scheme, reason, count } of inbound.rejected.values()) this.set({ scheme, reason }, count);
      },
    });
  }
  new Counter({
    name: 'bulkhead_db_statements_total',
    help: 'SQL statements this process sent to its databases (BEGIN and COMMIT included)',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(statementsSent());
    },
  });
  const attempts = new Counter({
    name: 'bulkhead_delivery_attempts_total',
    help: 'Delivery attempts made by this process, by outcome class (2xx…5xx: the receiver answered; timeout; error: network or egress refusal)',
    labelNames: ['outcome'],
    registers: [registry],
  });
  const claims = new Histogram({
    name: 'bulkhead_delivery_claim_duration_seconds',
    help: 'Time one claim of due deliveries takes (one transaction across destinations)',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [registry],
  });
  const batchSizes = new Histogram({
    name: 'bulkhead_delivery_batch_size',
    help: 'Deliveries per claim (step "claim") and finished attempts per recording transaction (step "record")',
    labelNames: ['step'],
    buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500],
    registers: [registry],
  });
  const records = new Histogram({
    name: 'bulkhead_delivery_record_duration_seconds',
    help: 'Time one recording transaction takes (a workspace\'s finished attempts: states, attempts, destination health)',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [registry],
  });
  const delivery: DeliveryObserver = {
    claimed(seconds, size) {
      claims.observe(seconds);
      if (size > 0) batchSizes.observe({ step: 'claim' }, size);
    },
    attempted(outcome) { attempts.inc({ outcome }); },
    recorded(seconds, size) {
      records.observe(seconds);
      batchSizes.observe({ step: 'record' }, size);
    },
  };
  const { queues } = deps;
  if (queues) {
    // A database that does not answer leaves the queue gauges out of the scrape rather than failing it.
    const figures = () => queues().catch(() => undefined);
    new Gauge({
      name: 'bulkhead_deliveries',
      help: 'Deliveries in the queue, by state (terminal states are not counted: see bulkhead_delivery_attempts_total)',
      labelNames: ['state'],
      registers: [registry],
      async collect() {
        this.reset();
        const f = await figures();
        if (f) for (const state of DELIVERY_QUEUE_STATES) this.set({ state }, f.deliveries[state]);
      },
    });
    new Gauge({
      name: 'bulkhead_delivery_lag_seconds',
      help: 'Age of the oldest delivery waiting past its due time (0 when none waits)',
      registers: [registry],
      async collect() {
        this.reset();
        const f = await figures();
        if (f) this.set(f.deliveryLagSeconds);
      },
    });
    new Gauge({
      name: 'bulkhead_executions',
      help: 'Executions not yet finished, by status',
      labelNames: ['status'],
      registers: [registry],
      async collect() {
        this.reset();
        const f = await figures();
        if (f) for (const status of EXECUTION_QUEUE_STATES) this.set({ status }, f.executions[status]);
      },
    });
  }
  const { sandbox } = deps;
  if (sandbox) {
    new Gauge({
      name: 'bulkhead_sandbox_queue_depth',
      help: 'Executions waiting for a sandbox worker in this process',
      registers: [registry],
      collect() { this.set(sandbox().queued); },
    });
    new Gauge({
      name: 'bulkhead_sandbox_workers',
      help: 'Sandbox worker threads in this process, by state (busy: running an execution)',
      labelNames: ['state'],
      registers: [registry],
      collect() {
        const s = sandbox();
        this.set({ state: 'busy' }, s.busy);
        this.set({ state: 'idle' }, s.workers - s.busy);
      },
    });
  }
  const { relay } = deps;
  if (relay) {
    new Counter({
      name: 'bulkhead_relay_requests_total',
      help: 'Relay (proxy) calls by outcome: ok, upstream_error (5xx), blocked, timeout, failed, refused (not sent: connection or target refused)',
      labelNames: ['outcome'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [outcome, count] of relay.outcomes) this.inc({ outcome }, count);
      },
    });
  }
  const { retention } = deps;
  if (retention) {
    new Counter({
      name: 'bulkhead_retention_removed_total',
      help: 'Rows removed by retention in this process, by table (events, deliveries, delivery_attempts, relay_log, operational_events)',
      labelNames: ['table'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [table, count] of retention.removed) this.inc({ table }, count);
      },
    });
  }
  return {
    registry,
    delivery,
    register(app: HttpServer) {
      app.addHook('onResponse', async (request, reply) => {
        const route = request.routeOptions.url ?? 'unmatched';
        requests.observe({ route, method: request.method, status: `${String(Math.floor(reply.statusCode / 100))}xx` }, reply.elapsedTime / 1000);
      });
      app.get('/metrics', { config: { auth: 'admin' as const }, schema: { hide: true } }, async (_request, reply) =>
        reply.header('content-type', registry.contentType).send(await registry.metrics()),
      );
    },
  };
}
