/**
 * Composition root: builds every service from explicit dependencies and hands them to the
 * routes. Nothing here is a module-level singleton; tests build as many apps as they like.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { createCheckpointSigner } from './audit/checkpoint.js';
import { registerAuditRoutes } from './audit/routes.js';
import { listenForInvalidations } from './cache/invalidation.js';
import type { Config } from './config.js';
import type { DatabaseRef } from './db/open.js';
import { sharedPlacement } from './db/placement.js';
import { createTenantTransactions } from './db/tenant-tx.js';
import { createAuthHook } from './http/auth.js';
import { registerHealthRoutes } from './http/health-routes.js';
import { createHttpServer, type HttpServer } from './http/server.js';
import { createApiKeyService } from './identity/api-keys.js';
import { createKeyAuthenticator } from './identity/authenticate.js';
import { createLastUsedRecorder } from './identity/last-used.js';
import { registerApiKeyRoutes } from './identity/routes.js';
import { rememberUnknownKeys } from './identity/unknown-keys.js';
import type { Runtime } from './ids.js';
import { createAuthFailureLimiter, createRateLimiter } from './limits/rate-limit.js';
import type { Logger } from './logging.js';
import type { Secrets } from './secrets.js';
import { registerTenancyRoutes } from './tenancy/routes.js';
import { createTenancyService } from './tenancy/tenancy-service.js';
import { version } from './version.js';
import { loadCatalog } from './connections/catalog.js';
import { registerConnectRoutes } from './connections/connect/routes.js';
import { createConnectSessions } from './connections/connect/sessions.js';
import { registerConnectionRoutes } from './connections/connection-routes.js';
import { createConnectionService } from './connections/connections.js';
import { createOAuthFlow } from './connections/oauth/flow.js';
import { createTokenClient } from './connections/oauth/token-client.js';
import { registerProviderRoutes } from './connections/provider-routes.js';
import { createProviderService } from './connections/providers.js';
import { createEgressClient, type Resolver } from './egress/client.js';
import { registerWorkspaceLogRoutes } from './relay/log-routes.js';
import { createRelay } from './relay/relay.js';
import { createRelayLog } from './relay/relay-log.js';
import { registerRelayRoutes } from './relay/routes.js';
import { createLocalRootKeyProvider } from './vault/root-keys.js';
import { createResealer } from './vault/reseal.js';
import { createVault } from './vault/vault.js';
import { createMetrics } from './metrics/metrics.js';
import { createQueueFigures } from './metrics/queue-figures.js';
import { registerUsageRoutes } from './limits/routes.js';
import { createUsageService } from './limits/usage.js';
import { createEventService } from './events/ingest.js';
import { createDeliveryEngine, type DeliveryEngine } from './delivery/engine.js';
import { emitOperationalEvent } from './events/operational.js';
import { registerDeliveryRoutes } from './delivery/routes.js';
import { cancelDestinationDeliveries } from './delivery/sql/cancel.js';
import { registerEventRoutes } from './events/routes.js';
import { createDestinationService } from './routing/destinations.js';
import { createRuleService } from './routing/rules.js';
import { registerRoutingRoutes } from './routing/routes.js';
import { refreshJob, resealJob, startJobs } from './jobs/background.js';
import { createDueNotifier, listenForDue } from './jobs/due-signal.js';
import { destroyWorkspaceKeys } from './vault/shredding.js';
import { createInbound, MAX_SOURCES_PER_WORKSPACE, registerInboundRoutes } from './inbound/index.js';
import { createSandbox } from './sandbox/index.js';
import { createExecutionRunner, type ExecutionRunner } from './executions/runner.js';
import { cronJob } from './executions/scheduler.js';
import { executionRetentionJob } from './executions/retention.js';
import { retentionJob } from './jobs/retention.js';
import { registerExecutionRoutes } from './executions/routes.js';
import { createExecutionStore } from './executions/store.js';
import { createInstanceService } from './integrations/instances.js';
import { createIntegrationService } from './integrations/integrations.js';
import { registerInstanceRoutes, registerIntegrationCatalogRoutes, registerIntegrationRoutes } from './integrations/routes.js';

export interface CoreOptions {
  readonly config: Config;
  readonly secrets: Secrets;
  readonly logger: Logger;
  readonly db: DatabaseRef;
  readonly runtime: Runtime;
  /** How outbound requests resolve names (default: the system resolver). Tests point it at a DNS server of their own. */
  readonly resolve?: Resolver | undefined;
}

/** The services, without HTTP: shared by the server and the CLI. */
export function createCore(options: CoreOptions) {
  const { config, secrets, logger, runtime } = options;
  const placement = sharedPlacement(() => options.db.get());
  const { withWorkspace, withPlatform } = createTenantTransactions({ placement, appRole: config.appRole });
  const vault = createVault({
    rootKeys: createLocalRootKeyProvider(secrets.rootKeys),
    runtime,
    dekCacheTtlMs: config.dekCacheTtlMs,
    dekCacheMax: config.dekCacheMax,
    ringCacheTtlMs: config.keyRingCacheTtlMs,
  });
  const egress = createEgressClient({ allowCidrs: config.egressAllowCidrs, httpsOnly: config.env === 'production', ...(options.resolve ? { resolve: options.resolve } : {}) });
  const providers = createProviderService({ catalog: loadCatalog(), withPlatform, vault, runtime, allowHttp: config.env !== 'production' });
  const tokens = createTokenClient({ http: egress, now: () => runtime.now() });
  const connections = createConnectionService({ withWorkspace, vault, providers, tokens, runtime, cacheTtlMs: config.keyCacheTtlMs });
  let listeningOn: string | undefined;
  const publicUrl = () => config.publicUrl ?? listeningOn ?? `http://${config.host}:${String(config.port)}`;
  const maxConnections = (workspaceId: string) =>
    withPlatform(async (tx) => {
      const { rows } = await tx.query<{ limits: { connectionsPerWorkspace?: number } }>('SELECT t.limits FROM workspaces w JOIN tenants t ON t.id = w.tenant_id WHERE w.id = $1', [workspaceId]);
      return rows[0]?.limits.connectionsPerWorkspace ?? config.connectionsPerWorkspace;
    });
  const sessions = createConnectSessions({ withWorkspace, withPlatform, vault, runtime, publicUrl });
  const oauthFlow = createOAuthFlow({ withWorkspace, vault, sessions, providers, connections, tokens, runtime, stateSecret: secrets.apiKeyPepper, publicUrl, maxConnections });
  const events = createEventService({ vault, runtime });
  const relayLog = createRelayLog({ withWorkspace, runtime, flushMs: 1_000, onError: (error) => { logger.warn({ err: error }, 'could not write the relay log'); } });
  // Worker threads start on the first execution: an API-only process only ever parses code.
  const sandbox = createSandbox({
    ...(config.sandboxPoolSize > 0 ? { poolSize: config.sandboxPoolSize } : {}),
    limits: { memoryBytes: config.sandboxMemoryMb * 1024 * 1024, cpuTimeMs: config.sandboxCpuMs, wallTimeMs: config.sandboxWallMs },
    maxQueue: config.sandboxMaxQueue,
  });
  return {
    sandbox,
    auditCheckpoints: createCheckpointSigner(secrets.auditSigningKeys, () => runtime.now()),
    executions: createExecutionStore({ vault, runtime }),
    integrations: createIntegrationService({ withPlatform, runtime, compile: (source, language) => sandbox.compile(source, language) }),
    instances: createInstanceService({ vault, runtime }),
    placement,
    withWorkspace,
    withPlatform,
    vault,
    resealer: createResealer({ withWorkspace, withPlatform, vault }),
    events,
    inbound: createInbound({ withPlatform, withWorkspace, vault, events, runtime, publicUrl, defaults: { eventPayloadBytes: config.eventPayloadBytes, eventsPerMonth: config.eventsPerMonth } }),
    destinations: createDestinationService({ vault, runtime, checkUrl: (url) => egress.checkUrl(url), cancelDeliveries: cancelDestinationDeliveries }),
    rules: createRuleService({ runtime }),
    egress,
    providers,
    connections,
    sessions,
    oauthFlow,
    maxConnections,
    relayLog,
    relay: createRelay({ connections, http: egress, log: relayLog, runtime }),
    /** Where this server was reached, once it listens (connect links and the OAuth redirect URI use it). */
    setListeningOn(url: string) {
      listeningOn = url;
    },
    tenancy: createTenancyService({
      withPlatform,
      runtime,
      setupSteps: [(tx, workspaceId) => vault.createWorkspaceKey(tx, workspaceId)],
      // Keys first: once they are gone, every ciphertext of the workspace is noise, whatever
      // happens to the rows (backups included).
      purgeSteps: [(tx, workspaceId) => destroyWorkspaceKeys(tx, vault, workspaceId)],
    }),
    apiKeys: createApiKeyService({ runtime, pepper: secrets.apiKeyPepper }),
    authenticator: createKeyAuthenticator({
      registry: () => placement.registry().owner,
      pepper: secrets.apiKeyPepper,
      cacheTtlMs: config.keyCacheTtlMs,
      now: () => runtime.now(),
    }),
    lastUsed: createLastUsedRecorder({
      withWorkspace,
      flushMs: config.lastUsedFlushMs,
      onError: (error) => { logger.warn({ err: error }, 'could not record API key last-used times'); },
    }),
  };
}

export type Core = ReturnType<typeof createCore>;

export interface AppOptions extends CoreOptions {
  readonly redis?: Redis | undefined;
  /** `api` serves the whole API; `worker` serves only health routes (background work arrives with later capabilities). */
  readonly role?: 'api' | 'worker' | 'all';
  /** Background jobs run in the worker and all roles unless this is false (tests drive them directly). */
  readonly startJobs?: boolean;
}

export interface App {
  readonly http: HttpServer;
  readonly core: Core;
  readonly engine: DeliveryEngine;
  readonly runner: ExecutionRunner;
  /**
   * Stops accepting, lets requests and background work in flight finish for up to `graceMs`, then
   * cuts what is left (see `abort`) and closes. Resolves once everything is closed.
   */
  close(graceMs?: number): Promise<void>;
  /**
   * Cuts everything still in flight: outbound requests and their streams, sandbox runs, and every
   * client connection. Work cut this way is not recorded as failed; its lease is handed back.
   */
  abort(): void;
}

export async function buildApp(options: AppOptions): Promise<App> {
  const { config, secrets, logger, runtime } = options;
  const core = createCore(options);
  const rateLimiter = createRateLimiter(config.rateLimits, options.redis);
  const authFailures = createAuthFailureLimiter(config.authFailuresPerMinute, options.redis);

  const http = await createHttpServer({
    logger,
    bodyLimit: config.bodyLimitBytes,
    trustProxy: config.trustProxy,
    version,
    connections: { requestTimeoutMs: config.requestTimeoutMs, uploadsPerAddress: config.uploadsPerAddress },
  });
  http.addHook('onRequest', createAuthHook({ adminToken: secrets.adminToken, authenticator: rememberUnknownKeys(core.authenticator), rateLimiter, authFailures, lastUsed: core.lastUsed, now: () => runtime.now() }));
  registerHealthRoutes(http, options.db);
  const retention = retentionJob({ withPlatform: core.withPlatform, withWorkspace: core.withWorkspace, runtime, defaultDays: config.retentionDays, intervalMs: config.retentionIntervalMs, batch: config.retentionBatch });
  const metrics = createMetrics({
    retention: retention.metrics,
    egress: core.egress.metrics,
    inbound: core.inbound.metrics,
    relay: core.relay.metrics,
    sandbox: () => core.sandbox.stats(),
    // Cached a few seconds: scrapes (several Prometheus servers, a dashboard refresh) cannot load the database.
    queues: createQueueFigures({ withPlatform: core.withPlatform, now: () => runtime.now(), cacheMs: 5_000 }),
  });
  metrics.register(http);
  const dueNotifier = createDueNotifier({ database: options.db.whenReady(), logger });
  if (options.role !== 'worker') {
    registerTenancyRoutes(http, core.tenancy, { afterWorkspaceDeleted: (id) => { core.authenticator.forgetWorkspace(id); } });
    registerApiKeyRoutes(http, core);
    registerAuditRoutes(http, { withWorkspace: core.withWorkspace, withPlatform: core.withPlatform, auditCheckpoints: core.auditCheckpoints, getWorkspace: (id) => core.tenancy.getWorkspace(id) });
    registerProviderRoutes(http, core.providers);
    registerConnectionRoutes(http, { connections: core.connections, defaultMaxConnections: config.connectionsPerWorkspace });
    registerConnectRoutes(http, { sessions: core.sessions, providers: core.providers, connections: core.connections, flow: core.oauthFlow, maxConnections: core.maxConnections, returnUrls: { httpHosts: config.connectHttpReturnHosts }, withWorkspace: core.withWorkspace });
    registerRelayRoutes(http, { relay: core.relay, bodyLimit: config.bodyLimitBytes });
    registerWorkspaceLogRoutes(http, { withWorkspace: core.withWorkspace });
    registerRoutingRoutes(http, { withWorkspace: core.withWorkspace, destinations: core.destinations, rules: core.rules, compile: (source, language) => core.sandbox.compile(source, language), limits: { destinations: config.destinationsPerWorkspace, rules: config.rulesPerWorkspace } });
    // In the `all` role the engine is in this process: a committed event wakes it at once. An
    // `api` process has none, and tells the worker processes instead (jobs/due-signal.ts).
    registerEventRoutes(http, {
      withWorkspace: core.withWorkspace,
      events: core.events,
      config,
      onIngested: () => {
        if (options.role === 'api') dueNotifier.notify();
        else {
          engine.wake();
          runner.wake();
        }
      },
    });
    registerDeliveryRoutes(http, { withWorkspace: core.withWorkspace, vault: core.vault, now: () => runtime.now() });
    registerIntegrationRoutes(http, { integrations: core.integrations });
    registerIntegrationCatalogRoutes(http, { withWorkspace: core.withWorkspace, integrations: core.integrations });
    registerInstanceRoutes(http, { withWorkspace: core.withWorkspace, instances: core.instances, limits: { instances: config.instancesPerWorkspace } });
    registerExecutionRoutes(http, { withWorkspace: core.withWorkspace, executions: core.executions });
    registerUsageRoutes(http, {
      usage: createUsageService({
        withPlatform: core.withPlatform,
        withWorkspace: core.withWorkspace,
        now: () => runtime.now(),
        defaults: { eventsPerMonth: config.eventsPerMonth, connectionsPerWorkspace: config.connectionsPerWorkspace, destinationsPerWorkspace: config.destinationsPerWorkspace, rulesPerWorkspace: config.rulesPerWorkspace, instancesPerWorkspace: config.instancesPerWorkspace, inboundSourcesPerWorkspace: MAX_SOURCES_PER_WORKSPACE },
      }),
    });
    registerInboundRoutes(http, { withWorkspace: core.withWorkspace, sources: core.inbound.sources, receiver: core.inbound.receiver, maxSources: MAX_SOURCES_PER_WORKSPACE, bodyLimit: config.bodyLimitBytes, redis: options.redis });
  }
  await http.ready();
  /** Set by `abort()`: from then on a failure in flight is shutdown's doing, not the work's. */
  let cut = false;
  const engine = createDeliveryEngine({
    withPlatform: core.withPlatform,
    withWorkspace: core.withWorkspace,
    vault: core.vault,
    egress: core.egress,
    destinations: core.destinations,
    runtime,
    logger,
    options: {
      concurrency: config.workerConcurrency,
      perDestination: config.workerPerDestination,
      leaseMs: config.deliveryLeaseMs,
      pollMs: config.workerPollMs,
      timeoutMs: config.deliveryTimeoutMs,
      schedule: config.retrySchedule,
      disableAfterMs: config.destinationDisableAfterMs,
      keepResponseBytes: 4096,
      defaultMaxInFlight: config.destinationMaxInFlight,
      circuitFailures: config.circuitFailures,
      circuitCooldownMs: config.circuitCooldownMs,
    },
    emit: (tx, alert, { route }) => emitOperationalEvent(tx, { vault: core.vault, runtime }, alert, { route }),
    cutShort: () => cut,
    observer: metrics.delivery,
  });
  const runner = createExecutionRunner({
    withPlatform: core.withPlatform,
    withWorkspace: core.withWorkspace,
    vault: core.vault,
    sandbox: core.sandbox,
    relay: core.relay,
    runtime,
    logger,
    options: { concurrency: config.executionConcurrency, leaseMs: config.executionLeaseMs, pollMs: config.workerPollMs },
    onDeliveries: () => { engine.wake(); },
    cutShort: () => cut,
  });
  if (options.role !== 'api' && options.startJobs !== false) {
    engine.start();
    runner.start();
  }
  const jobs =
    options.role === 'api' || options.startJobs === false
      ? undefined
      : startJobs(
          [
            refreshJob({ withPlatform: core.withPlatform, connections: core.connections, runtime, intervalMs: config.jobIntervalMs }),
            resealJob({ resealer: core.resealer, intervalMs: config.jobIntervalMs * 6 }),
            // Cron has minute resolution: a look every few seconds fires each slot within seconds of its time.
            executionRetentionJob({ withPlatform: core.withPlatform, withWorkspace: core.withWorkspace, runtime, defaultDays: config.executionRetentionDays, intervalMs: config.jobIntervalMs * 30 }),
            retention,
            cronJob({ withPlatform: core.withPlatform, withWorkspace: core.withWorkspace, runtime, intervalMs: Math.min(config.jobIntervalMs, 5_000), onQueued: () => { runner.wake(); } }),
          ],
          logger,
        );

  // Every role authenticates and caches, so every process listens for what other processes changed.
  const invalidations = listenForInvalidations({
    database: options.db.whenReady(),
    logger,
    evict: {
      apiKey: (keyId) => { core.authenticator.forget(keyId); },
      workspace: (workspaceId) => {
        core.authenticator.forgetWorkspace(workspaceId);
        core.connections.forget(workspaceId);
        // Crypto-shredding: the deleted workspace's data keys leave this process's memory too.
        core.vault.forget(workspaceId);
      },
      tenant: (tenantId) => { core.authenticator.forgetTenant(tenantId); },
      connection: (workspaceId, connectionId) => { core.connections.forget(workspaceId, connectionId); },
      all: () => {
        core.authenticator.forgetAll();
        core.connections.forgetAll();
      },
    },
  });

  const background = options.role !== 'api' && options.startJobs !== false;
  // A worker process hears of events other processes took (a process in the `all` role also
  // takes events itself, and `api` processes are why this exists).
  const dueListener = background ? listenForDue({ database: options.db.whenReady(), logger, onDue: () => { engine.wake(); runner.wake(); } }) : undefined;
  /** After the grace period, how long answers to cut outbound work get before the sockets go. */
  const ANSWER_WINDOW_MS = 250;

  /** Cuts outbound requests and sandbox runs; `cut` first, so their failures read as shutdown's. */
  function cutOutbound(): void {
    cut = true;
    core.egress.abort();
    void core.sandbox.close();
  }

  function abort(): void {
    cutOutbound();
    http.server.closeAllConnections();
  }

  return {
    http,
    core,
    engine,
    runner,
    abort,
    async close(graceMs = config.shutdownGraceMs) {
      // Everything drains at once: the listener stops accepting (idle keep-alive sockets close now,
      // busy ones after their answer), the workers stop claiming and wait for what they run.
      // The grace period is this function's to keep: the workers wait a little longer than it, so
      // that what they still run when it ends is cut (and handed back uncounted), not left running.
      const workerGraceMs = graceMs + 4 * ANSWER_WINDOW_MS;
      const drained = Promise.all([
        http.close(),
        background ? runner.stop(workerGraceMs) : undefined,
        background ? engine.stop(workerGraceMs) : undefined,
        jobs?.stop(),
      ]);
      let timer: NodeJS.Timeout | undefined;
      const graceOver = new Promise<'late'>((resolve) => { timer = setTimeout(() => { resolve('late'); }, graceMs); });
      if ((await Promise.race([drained.then(() => 'drained' as const), graceOver])) === 'late') {
        // Outbound work first, so a relay call still waiting can answer its client (502, connection
        // closed) in the moment before every client connection is cut.
        cutOutbound();
        await Promise.race([drained, sleep(ANSWER_WINDOW_MS, undefined, { ref: false })]);
        abort();
      }
      clearTimeout(timer);
      await drained;
      await invalidations.close();
      await dueListener?.close();
      await dueNotifier.settled();
      await core.lastUsed.stop();
      await core.relayLog.stop();
      await core.egress.close();
      await core.sandbox.close();
    },
  };
}
