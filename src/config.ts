/**
 * Every setting Bulkhead reads, in one table. `parseConfig(env)` checks all of them and reports
 * every problem in one error, so an operator fixes a deployment in one pass. The same table
 * feeds the README's configuration section (`npm run bulkhead -- config docs`).
 *
 * Secrets never have defaults. In development mode the embedded-secrets step
 * (`src/secrets.ts`) fills the missing ones from the data folder; in production they must be set.
 */
import path from 'node:path';
import ipaddr from 'ipaddr.js';
import { DEFAULT_RETRY_SCHEDULE_SECONDS, parseRetrySchedule } from './delivery/schedule.js';
import { parseProxyTrust, type ProxyTrust } from './http/proxy-trust.js';

export type Environment = 'development' | 'production';

export interface RootKey {
  readonly version: number;
  readonly key: Buffer;
}

/**
 * One Ed25519 key of the audit checkpoint signer: `seed` (the 32-byte private key) for a key that
 * can sign, `publicKey` (32 raw bytes) for a retired one kept only so older checkpoints verify.
 */
export type AuditSigningKey =
  | { readonly version: number; readonly seed: Buffer; readonly publicKey?: undefined }
  | { readonly version: number; readonly seed?: undefined; readonly publicKey: Buffer };

export interface Config {
  readonly env: Environment;
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  readonly databaseUrl: string | undefined;
  readonly databaseAppUrl: string | undefined;
  readonly appRole: string;
  readonly pgPoolSize: number;
  readonly pgConnectTimeoutMs: number;
  readonly adminToken: string | undefined;
  readonly apiKeyPepper: string | undefined;
  readonly rootKeys: readonly RootKey[] | undefined;
  readonly auditSigningKeys: readonly AuditSigningKey[] | undefined;
  readonly redisUrl: string | undefined;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  readonly bodyLimitBytes: number;
  readonly trustProxy: ProxyTrust;
  readonly requestTimeoutMs: number;
  readonly uploadsPerAddress: number;
  readonly shutdownGraceMs: number;
  readonly rateLimits: {
    readonly perKeyPerMinute: number;
    readonly perWorkspacePerMinute: number;
    readonly perTenantPerMinute: number;
  };
  readonly authFailuresPerMinute: number;
  readonly keyCacheTtlMs: number;
  readonly lastUsedFlushMs: number;
  readonly jobIntervalMs: number;
  readonly workerConcurrency: number;
  readonly workerPerDestination: number;
  readonly workerPollMs: number;
  readonly deliveryTimeoutMs: number;
  readonly retrySchedule: readonly number[];
  readonly destinationDisableAfterMs: number;
  readonly deliveryLeaseMs: number;
  readonly destinationMaxInFlight: number;
  readonly circuitFailures: number;
  readonly circuitCooldownMs: number;
  readonly eventPayloadBytes: number;
  readonly eventsPerMonth: number;
  readonly destinationsPerWorkspace: number;
  readonly rulesPerWorkspace: number;
  readonly dekCacheTtlMs: number;
  readonly dekCacheMax: number;
  readonly keyRingCacheTtlMs: number;
  readonly egressAllowCidrs: readonly string[];
  /** Hosts a connect session's `returnUrl` may name over plain http (src/http/web-url.ts). */
  readonly connectHttpReturnHosts: readonly string[];
  /** Absent: the address the server actually listens on (known only after listen). */
  readonly publicUrl: string | undefined;
  /** Absent: http://127.0.0.1:PORT (the local server). */
  readonly serverUrl: string | undefined;
  readonly connectionsPerWorkspace: number;
  readonly sandboxPoolSize: number;
  readonly sandboxMemoryMb: number;
  readonly sandboxCpuMs: number;
  readonly sandboxWallMs: number;
  readonly sandboxMaxQueue: number;
  readonly executionConcurrency: number;
  readonly executionLeaseMs: number;
  readonly executionRetentionDays: number;
  readonly retentionDays: number;
  readonly retentionIntervalMs: number;
  readonly retentionBatch: number;
  readonly instancesPerWorkspace: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

interface Setting<T> {
  readonly name: string;
  readonly description: string;
  readonly default?: string;
  readonly secret?: boolean;
  parse(raw: string): T;
}

const integer = (min: number, max: number) => (raw: string): number => {
  if (!/^\d+$/.test(raw)) throw new Error(`must be a whole number, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new Error(`must be between ${min} and ${max}, got ${n}`);
  return n;
};

const oneOf = <T extends string>(...values: readonly T[]) => (raw: string): T => {
  if (!(values as readonly string[]).includes(raw)) throw new Error(`must be one of ${values.join(', ')}, got "${raw}"`);
  return raw as T;
};

const postgresUrl = (raw: string): string => {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error('must be a URL such as postgres://user@host:5432/db');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') throw new Error('must use the postgres:// scheme');
  return raw;
};

const secretString = (minLength: number) => (raw: string): string => {
  if (raw.length < minLength) throw new Error(`must be at least ${minLength} characters`);
  return raw;
};

/** `1:<base64 32 bytes>,2:<base64 32 bytes>`; the highest version is the current one. */
export function parseRootKeys(raw: string): RootKey[] {
  const keys = raw.split(',').map((part) => {
    const match = /^(\d{1,6}):([A-Za-z0-9+/=_-]+)$/.exec(part.trim());
    if (!match?.[1] || !match[2]) throw new Error('must be a comma-separated list of <version>:<base64 key>');
    const key = Buffer.from(match[2], 'base64');
    if (key.length !== 32) throw new Error(`key version ${match[1]} must decode to 32 bytes, got ${key.length}`);
    return { version: Number(match[1]), key };
  });
  if (new Set(keys.map((k) => k.version)).size !== keys.length) throw new Error('key versions must be unique');
  return keys.sort((a, b) => a.version - b.version);
}

/**
 * `1:<base64 32-byte seed>,2:<base64 32-byte seed>`; a retired version may be given by its public
 * key alone, `1:public:<base64 32 bytes>`. The highest version signs and must be a seed.
 */
export function parseAuditSigningKeys(raw: string): AuditSigningKey[] {
  const keys = raw.split(',').map((part): AuditSigningKey => {
    const match = /^(\d{1,6}):(public:)?([A-Za-z0-9+/=_-]+)$/.exec(part.trim());
    if (!match?.[1] || !match[3]) throw new Error('must be a comma-separated list of <version>:<base64 seed> or <version>:public:<base64 public key>');
    const bytes = Buffer.from(match[3], 'base64');
    if (bytes.length !== 32) throw new Error(`key version ${match[1]} must decode to 32 bytes, got ${bytes.length}`);
    const version = Number(match[1]);
    return match[2] ? { version, publicKey: bytes } : { version, seed: bytes };
  });
  if (new Set(keys.map((k) => k.version)).size !== keys.length) throw new Error('key versions must be unique');
  keys.sort((a, b) => a.version - b.version);
  if (keys.at(-1)?.seed === undefined) throw new Error('the highest version signs new checkpoints: give its private seed, not only its public key');
  return keys;
}

const identifier = (raw: string): string => {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(raw)) throw new Error('must be a lower-case SQL identifier');
  return raw;
};

const cidrList = (raw: string): readonly string[] => {
  const ranges = raw.split(',').map((part) => part.trim()).filter((part) => part !== '');
  for (const range of ranges) {
    if (!ipaddr.isValidCIDR(range)) throw new Error(`"${range}" is not a CIDR range such as 127.0.0.1/32 or ::1/128`);
  }
  return Object.freeze(ranges);
};

const hostList = (raw: string): readonly string[] => {
  const hosts = raw.split(',').map((part) => part.trim().toLowerCase()).filter((part) => part !== '');
  for (const host of hosts) {
    if (!/^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*|\[[0-9a-f:.]+\])$/.test(host)) throw new Error(`"${host}" is not a host name or IP literal (IPv6 in brackets, e.g. [::1])`);
  }
  return Object.freeze(hosts);
};

const httpUrl = (raw: string): string => {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error('must be an absolute URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('must be an http(s) URL');
  return url.toString().replace(/\/$/, '');
};

export const settings = {
  env: { name: 'BULKHEAD_ENV', description: '`development` (embedded-friendly, generates missing secrets) or `production` (every secret and DATABASE_URL required)', default: 'development', parse: oneOf('development', 'production') },
  port: { name: 'PORT', description: 'HTTP port', default: '8080', parse: integer(0, 65535) },
  host: { name: 'HOST', description: 'Address the HTTP server binds to', default: '127.0.0.1', parse: (raw: string) => raw },
  dataDir: { name: 'BULKHEAD_DATA_DIR', description: 'Folder for the embedded database and generated secrets', default: './.bulkhead', parse: (raw: string) => path.resolve(raw) },
  databaseUrl: { name: 'DATABASE_URL', description: 'PostgreSQL URL of the schema owner (runs migrations, platform registry). Absent: embedded PGlite in the data folder', parse: postgresUrl },
  databaseAppUrl: { name: 'DATABASE_APP_URL', description: 'Optional separate PostgreSQL login for tenant transactions (a member of the application role). Absent: DATABASE_URL with `SET LOCAL ROLE`', parse: postgresUrl },
  appRole: { name: 'BULKHEAD_DB_APP_ROLE', description: 'Database role every tenant transaction runs as (NOSUPERUSER, NOBYPASSRLS, not an owner)', default: 'bulkhead_app', parse: identifier },
  pgPoolSize: { name: 'BULKHEAD_PG_POOL_SIZE', description: 'Connections per PostgreSQL pool', default: '10', parse: integer(1, 500) },
  pgConnectTimeoutMs: { name: 'BULKHEAD_PG_CONNECT_TIMEOUT_MS', description: 'How long a request may wait for a PostgreSQL connection (connecting, or a free one in the pool) before it is answered 503 `database_unavailable`', default: '5000', parse: integer(100, 600_000) },
  adminToken: { name: 'BULKHEAD_ADMIN_TOKEN', description: 'Platform admin bearer token (min. 32 characters)', secret: true, parse: secretString(32) },
  apiKeyPepper: { name: 'BULKHEAD_API_KEY_PEPPER', description: 'Server-side secret for HMAC-SHA256 of API keys (min. 32 characters). Changing it invalidates every key', secret: true, parse: secretString(32) },
  rootKeys: { name: 'BULKHEAD_ROOT_KEYS', description: 'Versioned 256-bit root keys `1:<base64>,2:<base64>`; the highest version wraps new data keys', secret: true, parse: parseRootKeys },
  auditSigningKeys: { name: 'BULKHEAD_AUDIT_SIGNING_KEYS', description: 'Versioned Ed25519 keys that sign audit checkpoints, `1:<base64 32-byte seed>`; the highest version signs, every version verifies (a retired one may be given as `1:public:<base64 public key>`). See docs/AUDIT.md', secret: true, parse: parseAuditSigningKeys },
  redisUrl: { name: 'REDIS_URL', description: 'Optional Redis for shared rate-limit budgets across API processes', parse: (raw: string) => {
    if (!/^rediss?:\/\//.test(raw)) throw new Error('must use the redis:// or rediss:// scheme');
    return raw;
  } },
  logLevel: { name: 'LOG_LEVEL', description: 'pino log level', default: 'info', parse: oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent') },
  bodyLimitBytes: { name: 'BULKHEAD_BODY_LIMIT_BYTES', description: 'Largest accepted request body; larger ones get 413 `payload_too_large`', default: '1048576', parse: integer(1024, 64 * 1024 * 1024) },
  trustProxy: { name: 'BULKHEAD_TRUST_PROXY', description: 'Which proxies in front of Bulkhead may set X-Forwarded-For: `false` (none; the client address is the connecting peer), a number of proxies (`1`: every connection comes through one proxy; only when Bulkhead cannot be reached directly), or a comma-separated list of proxy addresses and CIDR ranges (IPv4 or IPv6). The client address is the one the last trusted proxy saw. `true` is refused: it would take the address the client writes', default: 'false', parse: parseProxyTrust },
  requestTimeoutMs: { name: 'BULKHEAD_REQUEST_TIMEOUT_MS', description: 'Longest time to receive one whole request, headers and body; a slower one gets 408 `request_timeout` and its connection is closed (raise it with the body limit for slow links)', default: '30000', parse: integer(1_000, 3_600_000) },
  uploadsPerAddress: { name: 'BULKHEAD_UPLOADS_PER_ADDRESS', description: 'Request bodies one client address may have arriving at once (a body that arrives with its headers does not count); one more gets 429 `too_many_uploads` and its connection is closed', default: '16', parse: integer(1, 100_000) },
  shutdownGraceMs: { name: 'BULKHEAD_SHUTDOWN_GRACE_MS', description: 'On SIGTERM/SIGINT, how long requests and background work in flight may take to finish before their connections and outbound requests are cut; the process exits by this plus 1 s whatever happens', default: '10000', parse: integer(0, 600_000) },
  perKeyPerMinute: { name: 'BULKHEAD_RATE_LIMIT_KEY_PER_MINUTE', description: 'Requests per minute per API key', default: '6000', parse: integer(1, 10_000_000) },
  perWorkspacePerMinute: { name: 'BULKHEAD_RATE_LIMIT_WORKSPACE_PER_MINUTE', description: 'Requests per minute per workspace (all its keys)', default: '12000', parse: integer(1, 10_000_000) },
  perTenantPerMinute: { name: 'BULKHEAD_RATE_LIMIT_TENANT_PER_MINUTE', description: 'Requests per minute per tenant (all its workspaces); a tenant\'s `limits.requestsPerMinute` overrides it', default: '30000', parse: integer(1, 10_000_000) },
  authFailuresPerMinute: { name: 'BULKHEAD_AUTH_FAILURES_PER_MINUTE', description: 'Failed authentications per minute from one client address; past it, that address\'s failures are answered 429 `rate_limited` instead of 401 for the rest of the minute, while valid credentials from it still get in', default: '60', parse: integer(1, 1_000_000) },
  keyCacheTtlMs: { name: 'BULKHEAD_KEY_CACHE_TTL_MS', description: 'How long a resolved API key, and a connection\'s opened credential, are cached in a process. Revocations and changes are pushed to every process at once (PostgreSQL LISTEN/NOTIFY); this is the bound when a notification is missed. 0 disables the cache', default: '5000', parse: integer(0, 60_000) },
  dekCacheTtlMs: { name: 'BULKHEAD_DEK_CACHE_TTL_MS', description: 'How long an unwrapped workspace data key stays in memory', default: '300000', parse: integer(0, 86_400_000) },
  dekCacheMax: { name: 'BULKHEAD_DEK_CACHE_MAX', description: 'Most unwrapped data keys kept in memory at once (least recently used are dropped and zeroed)', default: '10000', parse: integer(1, 10_000_000) },
  keyRingCacheTtlMs: { name: 'BULKHEAD_KEY_RING_CACHE_TTL_MS', description: 'How long a process trusts a key ring\'s current and minimum versions; a rotation or ratchet reaches every process within it', default: '5000', parse: integer(0, 600_000) },
  egressAllowCidrs: { name: 'BULKHEAD_EGRESS_ALLOW_CIDRS', description: 'Comma-separated address ranges outbound requests may reach although they are private or loopback (local development and tests only, e.g. `127.0.0.1/32`)', default: '', parse: cidrList },
  connectHttpReturnHosts: { name: 'BULKHEAD_CONNECT_HTTP_RETURN_HOSTS', description: 'Comma-separated hosts a connect session\'s `returnUrl` may use over plain http (local development only, e.g. `localhost,127.0.0.1`); every other return URL must be https', default: '', parse: hostList },
  serverUrl: { name: 'BULKHEAD_URL', description: 'The server the CLI\'s platform commands (`tenant create`, `audit verify`, …) talk to, with the admin token from `--token`, BULKHEAD_ADMIN_TOKEN or the data folder\'s secrets.json (see docs/CLI.md). Absent: `http://127.0.0.1:PORT`', parse: httpUrl },
  publicUrl: { name: 'BULKHEAD_PUBLIC_URL', description: 'Public base URL of this server, for connect-session links and the OAuth redirect URI. Absent: the address the server listens on', parse: httpUrl },
  connectionsPerWorkspace: { name: 'BULKHEAD_CONNECTIONS_PER_WORKSPACE', description: 'Default maximum number of connections per workspace (a tenant\'s `limits.connectionsPerWorkspace` overrides it)', default: '100', parse: integer(1, 1_000_000) },
  jobIntervalMs: { name: 'BULKHEAD_JOB_INTERVAL_MS', description: 'How often the worker looks for OAuth tokens to refresh before expiry (re-sealing after key rotation runs at 6× this interval)', default: '10000', parse: integer(100, 3_600_000) },
  eventPayloadBytes: { name: 'BULKHEAD_EVENT_PAYLOAD_LIMIT_BYTES', description: 'Largest event payload (JSON bytes) a workspace may send; a tenant\'s `limits.eventPayloadBytes` overrides it', default: '262144', parse: integer(1024, 1_048_576) },
  eventsPerMonth: { name: 'BULKHEAD_EVENTS_PER_MONTH', description: 'Events per workspace per calendar month (UTC); a tenant\'s `limits.eventsPerMonth` overrides it', default: '10000000', parse: integer(0, 10_000_000_000) },
  destinationsPerWorkspace: { name: 'BULKHEAD_DESTINATIONS_PER_WORKSPACE', description: 'Most destinations per workspace', default: '100', parse: integer(1, 100_000) },
  rulesPerWorkspace: { name: 'BULKHEAD_RULES_PER_WORKSPACE', description: 'Most rules per workspace', default: '100', parse: integer(1, 100_000) },
  workerConcurrency: { name: 'BULKHEAD_WORKER_CONCURRENCY', description: 'Deliveries a worker process attempts at once (claimed and recorded in batches; one destination takes at most half)', default: '256', parse: integer(1, 10_000) },
  workerPerDestination: { name: 'BULKHEAD_WORKER_PER_DESTINATION', description: 'Most deliveries to one destination a worker takes per claim (the claim shares its budget one delivery per destination per turn, so a busy destination cannot crowd out the rest)', default: '64', parse: integer(1, 1000) },
  workerPollMs: { name: 'BULKHEAD_WORKER_POLL_MS', description: 'How often an idle worker looks for due deliveries', default: '200', parse: integer(10, 60_000) },
  deliveryTimeoutMs: { name: 'BULKHEAD_DELIVERY_TIMEOUT_MS', description: 'Total time allowed for one delivery attempt (connect, send, answer)', default: '15000', parse: integer(100, 120_000) },
  deliveryLeaseMs: { name: 'BULKHEAD_DELIVERY_LEASE_MS', description: 'How long a claimed delivery stays with its worker; a crashed worker\'s deliveries are claimed again after this (must exceed BULKHEAD_DELIVERY_TIMEOUT_MS)', default: '60000', parse: integer(1_000, 3_600_000) },
  destinationMaxInFlight: { name: 'BULKHEAD_DESTINATION_MAX_IN_FLIGHT', description: 'Most deliveries to one destination in flight at once across all workers (a destination may set its own `maxInFlight`)', default: '16', parse: integer(1, 1000) },
  circuitFailures: { name: 'BULKHEAD_CIRCUIT_FAILURES', description: 'Consecutive failed attempts to a destination that open its circuit (nothing is sent until the cool-down ends, then one probe at a time)', default: '10', parse: integer(1, 10_000) },
  circuitCooldownMs: { name: 'BULKHEAD_CIRCUIT_COOLDOWN_MS', description: 'First cool-down of an open circuit; it doubles with each failed probe, up to 32 times this', default: '30000', parse: integer(100, 3_600_000) },
  destinationDisableAfterMs: { name: 'BULKHEAD_DESTINATION_DISABLE_AFTER_MS', description: 'A destination failing without a single success for this long is disabled (default 5 days)', default: String(5 * 86_400_000), parse: integer(60_000, 365 * 86_400_000) },
  retrySchedule: { name: 'BULKHEAD_RETRY_SCHEDULE', description: 'Delays in seconds before each retry after the first attempt (`1,1,1` means 4 attempts in all)', default: DEFAULT_RETRY_SCHEDULE_SECONDS.join(','), parse: parseRetrySchedule },
  sandboxPoolSize: { name: 'BULKHEAD_SANDBOX_POOL_SIZE', description: 'Worker threads running tenant code (transforms, template steps); 0 means one per core', default: '0', parse: integer(0, 256) },
  sandboxMemoryMb: { name: 'BULKHEAD_SANDBOX_MEMORY_MB', description: 'Memory limit of one sandboxed execution (its own QuickJS runtime)', default: '16', parse: integer(2, 1024) },
  sandboxCpuMs: { name: 'BULKHEAD_SANDBOX_CPU_MS', description: 'CPU time one sandboxed execution may use before it is interrupted', default: '1000', parse: integer(10, 60_000) },
  sandboxWallMs: { name: 'BULKHEAD_SANDBOX_WALL_MS', description: 'Wall time of one sandboxed execution, host calls included (at least BULKHEAD_SANDBOX_CPU_MS)', default: '10000', parse: integer(100, 300_000) },
  sandboxMaxQueue: { name: 'BULKHEAD_SANDBOX_MAX_QUEUE', description: 'Sandboxed executions waiting for a worker thread before more are refused (and retried later)', default: '1000', parse: integer(1, 1_000_000) },
  executionConcurrency: { name: 'BULKHEAD_EXECUTION_CONCURRENCY', description: 'Executions (rule transforms, instance runs) a worker process runs at once', default: '16', parse: integer(1, 10_000) },
  executionLeaseMs: { name: 'BULKHEAD_EXECUTION_LEASE_MS', description: 'How long a claimed execution stays with its worker; a crashed worker\'s executions run again after this (must exceed BULKHEAD_SANDBOX_WALL_MS)', default: '120000', parse: integer(1_000, 3_600_000) },
  executionRetentionDays: { name: 'BULKHEAD_EXECUTION_RETENTION_DAYS', description: 'Days a finished execution and its step log are kept; a tenant\'s `limits.executionRetentionDays` overrides it', default: '30', parse: integer(1, 3650) },
  retentionDays: { name: 'BULKHEAD_RETENTION_DAYS', description: 'Days an event is kept once all its deliveries are finished (with its deliveries and their attempts), and a relay or operational log entry is kept; a tenant\'s `limits.retentionDays` overrides it. A failed delivery can be retried until then', default: '30', parse: integer(1, 3650) },
  retentionIntervalMs: { name: 'BULKHEAD_RETENTION_INTERVAL_MS', description: 'How often the worker removes what is past retention (in batches, each its own short transaction, for at most a minute per run)', default: '300000', parse: integer(1_000, 86_400_000) },
  retentionBatch: { name: 'BULKHEAD_RETENTION_BATCH', description: 'Rows per retention statement (events, or deliveries, or log entries); each batch is one transaction', default: '1000', parse: integer(1, 100_000) },
  instancesPerWorkspace: { name: 'BULKHEAD_INSTANCES_PER_WORKSPACE', description: 'Most integration instances per workspace', default: '100', parse: integer(1, 100_000) },
  lastUsedFlushMs: { name: 'BULKHEAD_LAST_USED_FLUSH_MS', description: 'How often batched API-key `lastUsedAt` times are written', default: '10000', parse: integer(100, 600_000) },
} as const satisfies Record<string, Setting<unknown>>;

type Settings = typeof settings;
type Parsed = { [K in keyof Settings]: ReturnType<Settings[K]['parse']> | undefined };

export function parseConfig(env: Readonly<Record<string, string | undefined>>): Config {
  const problems: string[] = [];
  const values: Partial<Record<keyof Settings, unknown>> = {};
  for (const [field, setting] of Object.entries(settings) as [keyof Settings, Setting<unknown>][]) {
    const raw = env[setting.name];
    const source = raw === undefined || raw === '' ? setting.default : raw;
    if (source === undefined) continue;
    try {
      values[field] = setting.parse(source);
    } catch (error) {
      problems.push(`${setting.name} ${(error as Error).message}`);
    }
  }
  const v = values as Parsed;
  if (v.env === 'production') {
    for (const field of ['databaseUrl', 'adminToken', 'apiKeyPepper', 'rootKeys', 'auditSigningKeys'] as const) {
      if (v[field] === undefined && !problems.some((p) => p.startsWith(settings[field].name))) {
        problems.push(`${settings[field].name} is required when BULKHEAD_ENV=production`);
      }
    }
  }
  if (v.databaseAppUrl !== undefined && v.databaseUrl === undefined) {
    problems.push('DATABASE_APP_URL needs DATABASE_URL (the schema owner) as well');
  }
  if (v.deliveryLeaseMs !== undefined && v.deliveryTimeoutMs !== undefined && v.deliveryLeaseMs <= v.deliveryTimeoutMs) {
    problems.push(`BULKHEAD_DELIVERY_LEASE_MS must exceed BULKHEAD_DELIVERY_TIMEOUT_MS (${String(v.deliveryTimeoutMs)}), or a slow attempt would be claimed twice`);
  }
  if (v.sandboxWallMs !== undefined && v.sandboxCpuMs !== undefined && v.sandboxWallMs < v.sandboxCpuMs) {
    problems.push(`BULKHEAD_SANDBOX_WALL_MS must be at least BULKHEAD_SANDBOX_CPU_MS (${String(v.sandboxCpuMs)})`);
  }
  if (v.executionLeaseMs !== undefined && v.sandboxWallMs !== undefined && v.executionLeaseMs <= v.sandboxWallMs) {
    problems.push(`BULKHEAD_EXECUTION_LEASE_MS must exceed BULKHEAD_SANDBOX_WALL_MS (${String(v.sandboxWallMs)}), or a long execution would run twice`);
  }
  if (problems.length > 0) throw new ConfigError(problems);

  // Settings with a default always parsed to a value above; this only narrows the type.
  const withDefault = <K extends keyof Parsed>(field: K): NonNullable<Parsed[K]> => {
    const value = v[field];
    if (value === undefined) throw new Error(`setting ${field} has no default`);
    return value;
  };
  return Object.freeze({
    env: withDefault('env'),
    host: withDefault('host'),
    port: withDefault('port'),
    dataDir: withDefault('dataDir'),
    databaseUrl: v.databaseUrl,
    databaseAppUrl: v.databaseAppUrl,
    appRole: withDefault('appRole'),
    pgPoolSize: withDefault('pgPoolSize'),
    pgConnectTimeoutMs: withDefault('pgConnectTimeoutMs'),
    adminToken: v.adminToken,
    apiKeyPepper: v.apiKeyPepper,
    rootKeys: v.rootKeys,
    auditSigningKeys: v.auditSigningKeys,
    redisUrl: v.redisUrl,
    logLevel: withDefault('logLevel'),
    bodyLimitBytes: withDefault('bodyLimitBytes'),
    requestTimeoutMs: withDefault('requestTimeoutMs'),
    uploadsPerAddress: withDefault('uploadsPerAddress'),
    shutdownGraceMs: withDefault('shutdownGraceMs'),
    trustProxy: withDefault('trustProxy'),
    rateLimits: Object.freeze({
      perKeyPerMinute: withDefault('perKeyPerMinute'),
      perWorkspacePerMinute: withDefault('perWorkspacePerMinute'),
      perTenantPerMinute: withDefault('perTenantPerMinute'),
    }),
    authFailuresPerMinute: withDefault('authFailuresPerMinute'),
    keyCacheTtlMs: withDefault('keyCacheTtlMs'),
    lastUsedFlushMs: withDefault('lastUsedFlushMs'),
    jobIntervalMs: withDefault('jobIntervalMs'),
    workerConcurrency: withDefault('workerConcurrency'),
    workerPerDestination: withDefault('workerPerDestination'),
    workerPollMs: withDefault('workerPollMs'),
    deliveryTimeoutMs: withDefault('deliveryTimeoutMs'),
    retrySchedule: withDefault('retrySchedule'),
    destinationDisableAfterMs: withDefault('destinationDisableAfterMs'),
    deliveryLeaseMs: withDefault('deliveryLeaseMs'),
    destinationMaxInFlight: withDefault('destinationMaxInFlight'),
    circuitFailures: withDefault('circuitFailures'),
    circuitCooldownMs: withDefault('circuitCooldownMs'),
    eventPayloadBytes: withDefault('eventPayloadBytes'),
    eventsPerMonth: withDefault('eventsPerMonth'),
    destinationsPerWorkspace: withDefault('destinationsPerWorkspace'),
    rulesPerWorkspace: withDefault('rulesPerWorkspace'),
    dekCacheTtlMs: withDefault('dekCacheTtlMs'),
    dekCacheMax: withDefault('dekCacheMax'),
    keyRingCacheTtlMs: withDefault('keyRingCacheTtlMs'),
    egressAllowCidrs: withDefault('egressAllowCidrs'),
    connectHttpReturnHosts: withDefault('connectHttpReturnHosts'),
    publicUrl: v.publicUrl,
    serverUrl: v.serverUrl,
    connectionsPerWorkspace: withDefault('connectionsPerWorkspace'),
    sandboxPoolSize: withDefault('sandboxPoolSize'),
    sandboxMemoryMb: withDefault('sandboxMemoryMb'),
    sandboxCpuMs: withDefault('sandboxCpuMs'),
    sandboxWallMs: withDefault('sandboxWallMs'),
    sandboxMaxQueue: withDefault('sandboxMaxQueue'),
    executionConcurrency: withDefault('executionConcurrency'),
    executionLeaseMs: withDefault('executionLeaseMs'),
    executionRetentionDays: withDefault('executionRetentionDays'),
    retentionDays: withDefault('retentionDays'),
    retentionIntervalMs: withDefault('retentionIntervalMs'),
    retentionBatch: withDefault('retentionBatch'),
    instancesPerWorkspace: withDefault('instancesPerWorkspace'),
  });
}

/**
 * What a CLI command that talks to a running server needs, and nothing else: such a client may
 * run where the server's database and secrets are not configured (production mode included).
 */
export interface ClientConfig {
  readonly serverUrl: string | undefined;
  readonly port: number;
  readonly dataDir: string;
  readonly adminToken: string | undefined;
}

export function parseClientConfig(env: Readonly<Record<string, string | undefined>>): ClientConfig {
  const problems: string[] = [];
  const read = <T>(setting: Setting<T>): T | undefined => {
    const raw = env[setting.name];
    const source = raw === undefined || raw === '' ? setting.default : raw;
    if (source === undefined) return undefined;
    try {
      return setting.parse(source);
    } catch (error) {
      problems.push(`${setting.name} ${(error as Error).message}`);
      return undefined;
    }
  };
  const config = { serverUrl: read(settings.serverUrl), port: read(settings.port), dataDir: read(settings.dataDir), adminToken: read(settings.adminToken) };
  if (problems.length > 0 || config.port === undefined || config.dataDir === undefined) throw new ConfigError(problems);
  return Object.freeze({ ...config, port: config.port, dataDir: config.dataDir });
}

/** The configuration table for the README, generated from the same definitions. */
export function configurationTable(): string {
  const rows = Object.values(settings as Record<string, Setting<unknown>>).map(
    (s) => `| \`${s.name}\` | ${s.default === undefined ? (s.secret ? '— (secret)' : '—') : `\`${s.default}\``} | ${s.description} |`,
  );
  return ['| variable | default | meaning |', '|---|---|---|', ...rows].join('\n');
}
