/**
 * The one outbound HTTP client. Webhook deliveries, the relay and OAuth token endpoints all leave
 * the process through it, so the SSRF policy (SPEC §2.5) holds everywhere by construction:
 *
 *  - scheme: http(s) only; https only when `httpsOnly` (production);
 *  - address: IP-literal hosts are judged before anything is sent; names are resolved once, in
 *    the socket's own `lookup`, and every answer is judged (one bad answer refuses the lot). The
 *    socket then connects to exactly the judged address, so a DNS answer that changes between
 *    check and use (rebinding) cannot redirect it; TLS SNI and Host keep the original name;
 *  - redirects: returned as-is (`manual`, the default), refused (`error`), or followed (`follow`)
 *    at most 3 hops, each hop judged again and credentials dropped across origins;
 *  - time and size: connect, headers and body timeouts, an overall deadline, a response cap.
 *
 * Refusals are `egress_blocked` errors raised before any connection exists, and are counted.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP, type LookupFunction } from 'node:net';
import { Readable, Transform } from 'node:stream';
import { Agent, errors as undiciErrors, request as undiciRequest, type Dispatcher } from 'undici';
import { BulkheadError } from '../errors.js';
import { type AllowList, classifyAddress, parseAllowList } from './address-policy.js';

export interface ResolvedAddress {
  readonly address: string;
  readonly family: 4 | 6;
}
export type Resolver = (hostname: string) => Promise<readonly ResolvedAddress[]>;

export const systemResolver: Resolver = async (hostname) =>
  (await dnsLookup(hostname, { all: true, verbatim: true })).map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));

export type BlockReason = 'scheme' | 'address' | 'resolution_failed' | 'redirect' | 'redirect_limit';

export interface EgressOptions {
  readonly allowCidrs?: readonly string[];
  readonly httpsOnly?: boolean;
  readonly resolve?: Resolver;
  readonly connectTimeoutMs?: number;
  readonly headersTimeoutMs?: number;
  readonly bodyTimeoutMs?: number;
  readonly totalTimeoutMs?: number;
  readonly maxResponseBytes?: number;
}

export interface EgressRequest {
  readonly method: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: Readable | Buffer | string | null;
  readonly maxResponseBytes?: number;
  readonly signal?: AbortSignal;
  readonly redirect?: 'manual' | 'error' | 'follow';
  /** Headers to drop when a followed redirect changes origin (authorization and cookie always are). */
  readonly credentialHeaders?: readonly string[];
}

export interface EgressResponse<B> {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: B;
  /** The URL that answered (after followed redirects). */
  readonly url: string;
}

export interface EgressMetrics {
  readonly blocked: Record<BlockReason, number>;
  requests: number;
}

export const MAX_REDIRECTS = 3;

const blocked = (reason: BlockReason, message: string, details: Record<string, unknown> = {}) =>
  new BulkheadError('egress_blocked', message, { details: { reason, ...details } });

export function createEgressClient(options: EgressOptions = {}) {
  const allow: AllowList = parseAllowList(options.allowCidrs ?? []);
  const resolve = options.resolve ?? systemResolver;
  const maxResponseBytes = options.maxResponseBytes ?? 10 * 1024 * 1024;
  const totalTimeoutMs = options.totalTimeoutMs ?? 30_000;
  const metrics: EgressMetrics = { blocked: { scheme: 0, address: 0, resolution_failed: 0, redirect: 0, redirect_limit: 0 }, requests: 0 };

  const refuse = (error: BulkheadError): BulkheadError => {
    const reason = (error.details?.['reason'] ?? 'address') as BlockReason;
    metrics.blocked[reason]++;
    return error;
  };

  // Resolve once and judge every answer; the socket connects to what this returns and nothing else.
  async function judgedAnswers(hostname: string): Promise<readonly ResolvedAddress[]> {
    let answers: readonly ResolvedAddress[];
    try {
      answers = await resolve(hostname);
    } catch {
      throw refuse(blocked('resolution_failed', `${hostname} did not resolve`, { host: hostname }));
    }
    if (answers.length === 0) throw refuse(blocked('resolution_failed', `${hostname} did not resolve`, { host: hostname }));
    for (const answer of answers) {
      const verdict = classifyAddress(answer.address, allow);
      if (!verdict.allowed) throw refuse(blocked('address', `${hostname} resolves to a ${verdict.range} address`, { host: hostname, range: verdict.range }));
    }
    return answers;
  }

  // Resolve once and judge every answer; the socket connects to what this returns and nothing else.
  const guardedLookup: LookupFunction = (hostname, lookupOptions, callback) => {
    judgedAnswers(hostname).then(
      (answers) => {
        const wanted = lookupOptions.family === 4 || lookupOptions.family === 6 ? answers.filter((a) => a.family === lookupOptions.family) : answers;
        const usable = wanted.length > 0 ? wanted : answers;
        if (lookupOptions.all) callback(null, usable.map((a) => ({ address: a.address, family: a.family })));
        else callback(null, (usable[0] as ResolvedAddress).address, (usable[0] as ResolvedAddress).family);
      },
      (error: unknown) => {
        callback(error as BulkheadError, '', 4);
      },
    );
  };

  const agent = new Agent({
    connect: { lookup: guardedLookup, timeout: options.connectTimeoutMs ?? 5_000 },
    headersTimeout: options.headersTimeoutMs ?? 15_000,
    bodyTimeout: options.bodyTimeoutMs ?? 15_000,
    keepAliveTimeout: 10_000,
  });

  /** Scheme and IP-literal checks; names are judged at connect time by `guardedLookup`. */
  function checkTarget(raw: string | URL): URL {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw refuse(blocked('scheme', 'not an absolute URL'));
    }
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && !options.httpsOnly)) {
      throw refuse(blocked('scheme', `scheme ${url.protocol} is not allowed${options.httpsOnly ? ' (https only)' : ''}`));
    }
    if (url.username !== '' || url.password !== '') throw refuse(blocked('scheme', 'URLs with credentials are not allowed'));
    // The WHATWG parser already turned 2130706433, 0x7f.1, 0177.0.0.1 and 127.1 into dotted form.
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    if (isIP(host) !== 0) {
      const verdict = classifyAddress(host, allow);
      if (!verdict.allowed) throw refuse(blocked('address', `${verdict.address} is a ${verdict.range} address`, { range: verdict.range }));
    }
    return url;
  }

  function translate(error: unknown): unknown {
    for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
      if (e instanceof BulkheadError) return e;
    }
    if (error instanceof undiciErrors.ConnectTimeoutError) return new BulkheadError('egress_timeout', 'connecting timed out', { cause: error });
    if (error instanceof undiciErrors.HeadersTimeoutError || error instanceof undiciErrors.BodyTimeoutError) return new BulkheadError('egress_timeout', 'the server did not answer in time', { cause: error });
    if (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError')) return new BulkheadError('egress_timeout', 'the request took too long', { cause: error });
    return new BulkheadError('egress_failed', 'the request failed', { cause: error });
  }

  function capped(body: Readable, limit: number): Readable {
    let seen = 0;
    let overflowed = false;
    const guard = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        seen += chunk.length;
        if (seen > limit) {
          overflowed = true;
          callback(new BulkheadError('egress_response_too_large', `the response exceeds ${limit} bytes`));
          // Stop reading from the server; the abort this causes is ours, not a failure to report.
          body.destroy();
        } else callback(null, chunk);
      },
    });
    body.on('error', (error) => {
      if (!overflowed) guard.destroy(translate(error) as Error);
    });
    return body.pipe(guard);
  }

  async function send(raw: string | URL, init: EgressRequest): Promise<EgressResponse<Readable>> {
    let url = checkTarget(raw);
    let method = init.method.toUpperCase();
    let headers: Record<string, string> = { ...init.headers };
    let body = init.body ?? null;
    const mode = init.redirect ?? 'manual';
    const signal = init.signal ? AbortSignal.any([init.signal, AbortSignal.timeout(totalTimeoutMs)]) : AbortSignal.timeout(totalTimeoutMs);
    for (let hop = 0; ; hop++) {
      metrics.requests++;
      let response: Dispatcher.ResponseData;
      try {
        response = await undiciRequest(url, { dispatcher: agent, method, headers, body, signal });
      } catch (error) {
        throw translate(error);
      }
      const location = response.headers['location'];
      const isRedirect = response.statusCode >= 300 && response.statusCode < 400 && typeof location === 'string';
      if (!isRedirect || mode === 'manual') {
        return { status: response.statusCode, headers: response.headers, body: capped(response.body, init.maxResponseBytes ?? maxResponseBytes), url: url.toString() };
      }
      response.body.resume();
      if (mode === 'error') throw refuse(blocked('redirect', `the server redirected (${response.statusCode}) and redirects are not followed here`));
      if (hop + 1 > MAX_REDIRECTS) throw refuse(blocked('redirect_limit', `more than ${MAX_REDIRECTS} redirects`));
      if (body instanceof Readable) throw refuse(blocked('redirect', 'cannot follow a redirect after streaming a request body'));
      const next = checkTarget(new URL(location, url));
      if (next.origin !== url.origin) {
        const drop = new Set(['authorization', 'cookie', 'proxy-authorization', ...(init.credentialHeaders ?? []).map((h) => h.toLowerCase())]);
        headers = Object.fromEntries(Object.entries(headers).filter(([name]) => !drop.has(name.toLowerCase())));
      }
      if (response.statusCode === 303 || ((response.statusCode === 301 || response.statusCode === 302) && method === 'POST')) {
        method = method === 'HEAD' ? 'HEAD' : 'GET';
        body = null;
        headers = Object.fromEntries(Object.entries(headers).filter(([name]) => !/^content-/i.test(name)));
      }
      url = next;
    }
  }

  return {
    metrics,
    /** Streams the response body (capped). The caller must consume or destroy it. */
    stream: (url: string | URL, init: EgressRequest) => send(url, init),
    /** Buffers the response body (capped). */
    async request(url: string | URL, init: EgressRequest): Promise<EgressResponse<Buffer>> {
      const response = await send(url, init);
      const chunks: Buffer[] = [];
      try {
        for await (const chunk of response.body) chunks.push(chunk as Buffer);
      } catch (error) {
        throw translate(error);
      }
      return { ...response, body: Buffer.concat(chunks) };
    },
    /**
     * Judges a URL without sending anything (e.g. when a webhook destination is saved): scheme,
     * then every address its host resolves to. Sending re-checks, since DNS can change.
     */
    async checkUrl(raw: string): Promise<void> {
      const url = checkTarget(raw);
      const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
      if (isIP(host) !== 0) return;
      await judgedAnswers(host);
    },
    close: () => agent.close(),
  };
}

export type EgressClient = ReturnType<typeof createEgressClient>;
