/**
 * Prometheus metrics on `GET /metrics` (platform admin token: the figures describe every tenant
 * together, so they are not public). A registry per app, never the global one, so tests can build
 * several apps. Counters owned by other modules (the egress client's refusals) are read at scrape
 * time rather than mirrored.
 */
import { collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { EgressMetrics } from '../egress/client.js';
import type { InboundMetrics } from '../inbound/index.js';
import type { HttpServer } from '../http/server.js';

export function createMetrics(deps: { egress: EgressMetrics; inbound?: InboundMetrics | undefined }) {
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
  return {
    registry,
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
