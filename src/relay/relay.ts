/**
 * The relay: calls a provider's API with a connection's credential that the caller never sees.
 *
 *   1. The target is the provider's base URL + the caller's path (target.ts refuses escapes).
 *   2. The connection's credential is opened (and refreshed if expiring) and injected per the
 *      provider's definition; the caller's own credentials are never forwarded.
 *   3. The request goes out through the egress client (SSRF policy, pinned address, timeouts).
 *   4. Idempotent requests without a body are retried on 429/503, honouring Retry-After up to a bound.
 *   5. The response streams back with hop-by-hop and credential-bearing headers removed and any
 *      echo of the secret scrubbed; metadata (never content) goes to the relay log.
 */
import { Readable, Transform } from 'node:stream';
import type { ConnectionService } from '../connections/connections.js';
import { injectionFor, secretStrings } from '../connections/credentials.js';
import type { OutboundHttp, StreamResponse } from '../connections/outbound.js';
import { BulkheadError } from '../errors.js';
import type { Runtime } from '../ids.js';
import { forwardedRequestHeaders, returnedResponseHeaders } from './headers.js';
import type { RelayLog, RelayLogEntry } from './relay-log.js';
import { createScrubber, scrubBuffer } from './scrub.js';
import { pathTemplate, relayTarget } from './target.js';

export interface RelayRequest {
  readonly workspaceId: string;
  readonly connectionId: string;
  readonly method: string;
  readonly path: string;
  /** Including the leading `?`, or empty. */
  readonly query: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: Readable | undefined;
  readonly baseUrl: string | undefined;
}

export interface RelayResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[]>;
  /** A Buffer for small responses (read whole, sent in one write), a stream otherwise. */
  readonly body: Readable | Buffer;
}

/** Responses that declare at most this many bytes are read whole instead of streamed. */
const BUFFER_LIMIT = 256 * 1024;

/** How relay calls ended, counted for `/metrics`: the relay log's outcomes, and `refused` for calls never sent (no such or inactive connection, target not allowed, refresh failed). */
export type RelayOutcome = RelayLogEntry['outcome'] | 'refused';

export interface RelayMetrics {
  readonly outcomes: ReadonlyMap<RelayOutcome, number>;
}

const RETRYABLE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'DELETE']);
const MAX_RESPONSE_BYTES = 50 * 1024 * 1024;

export function createRelay(deps: {
  connections: ConnectionService;
  http: OutboundHttp;
  log: RelayLog;
  runtime: Runtime;
  maxRetries?: number;
  maxRetryAfterMs?: number;
  sleep?: (ms: number) => Promise<void>;
}) {
  const maxRetries = deps.maxRetries ?? 2;
  const maxRetryAfterMs = deps.maxRetryAfterMs ?? 10_000;
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const outcomes = new Map<RelayOutcome, number>();
  const count = (outcome: RelayOutcome) => { outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1); };
  /** Every call that went out is logged exactly once, so counting here counts each call once. */
  const record = (workspaceId: string, entry: RelayLogEntry) => {
    count(entry.outcome);
    deps.log.record(workspaceId, entry);
  };

  function retryDelay(response: StreamResponse, attempt: number): number | undefined {
    const header = response.headers['retry-after'];
    const raw = Array.isArray(header) ? header[0] : header;
    let ms = 250 * 2 ** attempt;
    if (raw !== undefined) {
      const seconds = Number(raw);
      ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(raw) - deps.runtime.now().getTime();
    }
    // Longer than the bound: hand the 429/503 to the caller instead of holding the request open.
    return Number.isFinite(ms) && ms <= maxRetryAfterMs ? Math.max(0, ms) : undefined;
  }

  async function prepare(request: RelayRequest) {
    try {
      const { provider, credential } = await deps.connections.use(request.workspaceId, request.connectionId);
      return { provider, credential, target: relayTarget(provider.baseUrls, { path: request.path, query: request.query, baseUrl: request.baseUrl }) };
    } catch (error) {
      count('refused');
      throw error;
    }
  }

  return {
    metrics: { outcomes } satisfies RelayMetrics,
    async call(request: RelayRequest): Promise<RelayResponse> {
      const started = performance.now();
      const { provider, credential, target } = await prepare(request);
      const injection = injectionFor(provider, credential);
      for (const [name, value] of Object.entries(injection.query)) target.searchParams.set(name, value);
      const headers = { ...forwardedRequestHeaders(request.headers), ...injection.headers };
      const secrets = secretStrings(credential);
      const method = request.method.toUpperCase();

      let requestBytes = 0;
      // Counted on the way through (a 'data' listener on the source would start it flowing early).
      const body =
        request.body && method !== 'GET' && method !== 'HEAD'
          ? request.body.pipe(
              new Transform({
                transform(chunk: Buffer, _encoding, callback) {
                  requestBytes += chunk.length;
                  callback(null, chunk);
                },
              }),
            )
          : undefined;
      request.body?.on('error', (error) => body?.destroy(error));
      const logEntry = (partial: Partial<RelayLogEntry> & Pick<RelayLogEntry, 'outcome'>, attempts: number): RelayLogEntry => ({
        connectionId: request.connectionId,
        method,
        host: target.host,
        pathTemplate: pathTemplate(target.pathname),
        status: null,
        durationMs: Math.round(performance.now() - started),
        requestBytes,
        responseBytes: 0,
        attempts,
        occurredAt: deps.runtime.now(),
        ...partial,
      });

      let attempt = 0;
      for (;;) {
        attempt++;
        let response: StreamResponse;
        try {
          response = await deps.http.stream(target.toString(), { method, headers, body: body ?? null, maxResponseBytes: MAX_RESPONSE_BYTES });
        } catch (error) {
          const code = error instanceof BulkheadError ? error.code : undefined;
          record(request.workspaceId, logEntry({ outcome: code === 'egress_blocked' ? 'blocked' : code === 'egress_timeout' ? 'timeout' : 'failed' }, attempt));
          if (error instanceof BulkheadError) throw error;
          throw new BulkheadError('upstream_unavailable', 'the provider could not be reached', { cause: error });
        }
        if ((response.status === 429 || response.status === 503) && !body && RETRYABLE_METHODS.has(method) && attempt <= maxRetries) {
          const delay = retryDelay(response, attempt);
          if (delay !== undefined) {
            response.body.resume();
            await sleep(delay);
            continue;
          }
        }
        const declared = Number(Array.isArray(response.headers['content-length']) ? undefined : response.headers['content-length']);
        if (Number.isInteger(declared) && declared <= BUFFER_LIMIT) {
          const chunks: Buffer[] = [];
          try {
            for await (const chunk of response.body) chunks.push(chunk as Buffer);
          } catch (error) {
            record(request.workspaceId, logEntry({ outcome: 'failed', status: response.status }, attempt));
            throw error instanceof BulkheadError ? error : new BulkheadError('upstream_unavailable', 'the provider\'s response was cut short', { cause: error });
          }
          const whole = Buffer.concat(chunks);
          record(request.workspaceId, logEntry({ outcome: response.status >= 500 ? 'upstream_error' : 'ok', status: response.status, responseBytes: whole.length }, attempt));
          return { status: response.status, headers: returnedResponseHeaders(response.headers, secrets), body: scrubBuffer(whole, secrets) };
        }
        let responseBytes = 0;
        const counted = response.body.pipe(
          new Transform({
            transform(chunk: Buffer, _encoding, callback) {
              responseBytes += chunk.length;
              callback(null, chunk);
            },
          }),
        );
        const scrubbed = counted.pipe(createScrubber(secrets));
        const finish = (outcome: RelayLogEntry['outcome']) => {
          record(request.workspaceId, logEntry({ outcome, status: response.status, responseBytes }, attempt));
        };
        response.body.once('end', () => { finish(response.status >= 500 ? 'upstream_error' : 'ok'); });
        response.body.once('error', (error) => {
          finish('failed');
          scrubbed.destroy(error);
        });
        return { status: response.status, headers: returnedResponseHeaders(response.headers, secrets), body: scrubbed };
      }
    },
  };
}

export type Relay = ReturnType<typeof createRelay>;

/** For callers that already hold the whole body. */
export const bodyStream = (body: Buffer | string | undefined): Readable | undefined => (body === undefined ? undefined : Readable.from([Buffer.from(body)]));
