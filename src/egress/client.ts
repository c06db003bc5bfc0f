/**
 * The one outbound HTTP client. Webhook deliveries, the relay and OAuth token endpoints all leave
 * the process through it, so the SSRF policy (docs/EGRESS.md) holds everywhere by construction:
 *
 *  - scheme: http(s) only; https only when `httpsOnly` (production);
 *  - address: IP-literal hosts are judged before anything is sent (`target.ts`); names are
 *    resolved once, in the socket's own `lookup`, every answer is judged, and the socket connects
 *    to exactly the judged addresses (`resolve.ts`), so DNS rebinding cannot move it. TLS SNI and
 *    Host keep the original name, since only the address the socket dials is substituted;
 *  - redirects: returned as they are (`manual`, the default), refused (`error`), or followed
 *    (`follow`) at most 3 hops, each hop judged again and credentials dropped across origins;
 *  - time and size: connect, headers and body timeouts, an overall deadline, a response cap.
 *
 * Refusals are `egress_blocked` errors raised before any connection exists, and are counted in
 * `metrics.blocked` (exported on /metrics).
 */
import { Readable } from 'node:stream';
import { Agent, errors as undiciErrors, request as undiciRequest, type Dispatcher } from 'undici';
import { parseAllowList } from './address-policy.js';
import { capBody, discard, tooLarge } from './body.js';
import { blocked, type BlockReason, EgressError } from './errors.js';
import { pinnedLookup, type ResolvedAddress, type Resolver, resolveJudged, systemResolver } from './resolve.js';
import { checkTarget, hostOf, isIpLiteral, type TargetPolicy } from './target.js';

// What the rest of the server has always imported from here.
export type { BlockReason } from './errors.js';
export type { ResolvedAddress, Resolver } from './resolve.js';
export { systemResolver } from './resolve.js';

/** Redirects followed at most, whatever a caller asks for. */
export const MAX_REDIRECTS = 3;

export interface EgressOptions {
  /** Ranges reachable although the policy refuses them (`BULKHEAD_EGRESS_ALLOW_CIDRS`); validated here. */
  readonly allowCidrs?: readonly string[];
  /** Refuse `http:` (production). */
  readonly httpsOnly?: boolean;
  /** Default: the operating system's resolver (`dns.lookup`, all answers). */
  readonly resolve?: Resolver;
  /** Default 5 s. */
  readonly connectTimeoutMs?: number;
  /** Until the response headers arrive; default 15 s. */
  readonly headersTimeoutMs?: number;
  /** Longest silence while the body arrives; default 15 s. */
  readonly bodyTimeoutMs?: number;
  /** The whole exchange, redirects and body included; default 30 s. */
  readonly totalTimeoutMs?: number;
  /** Default 10 MiB; a request can set its own. */
  readonly maxResponseBytes?: number;
}

export interface EgressRequest {
  /** Default GET. */
  readonly method?: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: Readable | Buffer | string | null;
  readonly maxResponseBytes?: number;
  /** Aborts the exchange (the caller's own deadline or cancellation). */
  readonly signal?: AbortSignal;
  /** Replaces the client's `totalTimeoutMs` for this request. */
  readonly timeoutMs?: number;
  /** Default `manual`: a 3xx is returned as it is. */
  readonly redirect?: 'manual' | 'error' | 'follow';
  /** With `follow`: at most this many hops, 0 to MAX_REDIRECTS (the default). */
  readonly maxRedirects?: number;
  /** Headers to drop when a followed redirect changes origin (authorization, proxy-authorization and cookie always are). */
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
  /** Refusals by reason, since start. */
  readonly blocked: Record<BlockReason, number>;
  /** Requests handed to the agent (each followed redirect hop counts). */
  requests: number;
}

const ALWAYS_CREDENTIALS = ['authorization', 'proxy-authorization', 'cookie'];

const positive = (name: string, value: number | undefined, fallback: number): number => {
  const chosen = value ?? fallback;
  if (!Number.isFinite(chosen) || chosen <= 0) throw new RangeError(`egress client: ${name} must be a positive number, got ${String(value)}`);
  return chosen;
};

const withoutHeaders = (headers: Record<string, string>, drop: (lowerCaseName: string) => boolean): Record<string, string> =>
  Object.fromEntries(Object.entries(headers).filter(([name]) => !drop(name.toLowerCase())));

/** Responses that carry no body whatever their Content-Length says. */
const bodiless = (method: string, status: number): boolean => method === 'HEAD' || status === 204 || status === 304 || status < 200;

export function createEgressClient(options: EgressOptions = {}) {
  // Everything is validated here: a bad setting stops start-up, not the first request.
  const policy: TargetPolicy = { httpsOnly: options.httpsOnly ?? false, allow: parseAllowList(options.allowCidrs ?? []) };
  const resolve = options.resolve ?? systemResolver;
  const maxResponseBytes = positive('maxResponseBytes', options.maxResponseBytes, 10 * 1024 * 1024);
  const totalTimeoutMs = positive('totalTimeoutMs', options.totalTimeoutMs, 30_000);
  const metrics: EgressMetrics = { blocked: { scheme: 0, address: 0, resolution_failed: 0, redirect: 0, redirect_limit: 0 }, requests: 0 };

  /** Every refusal passes through here once, where it is decided, so each is counted once. */
  function rethrowCounted(error: unknown): never {
    if (error instanceof EgressError && error.code === 'egress_blocked' && error.details?.reason !== undefined) metrics.blocked[error.details.reason]++;
    throw error;
  }
  const target = (raw: string | URL, base?: URL): URL => {
    try {
      return checkTarget(raw, policy, base);
    } catch (error) {
      return rethrowCounted(error);
    }
  };
  const judge = async (hostname: string): Promise<readonly ResolvedAddress[]> => {
    try {
      return await resolveJudged(hostname, resolve, policy.allow);
    } catch (error) {
      return rethrowCounted(error);
    }
  };
  const refuse = (reason: BlockReason, message: string): EgressError => {
    metrics.blocked[reason]++;
    return blocked(reason, message);
  };

  // One agent for everything: pooled keep-alive sockets, each opened through the pinned lookup.
  const agent = new Agent({
    connect: { lookup: pinnedLookup(judge), timeout: positive('connectTimeoutMs', options.connectTimeoutMs, 5_000) },
    headersTimeout: positive('headersTimeoutMs', options.headersTimeoutMs, 15_000),
    bodyTimeout: positive('bodyTimeoutMs', options.bodyTimeoutMs, 15_000),
    // Idle pooled sockets go after 10 s whatever the server's Keep-Alive hint says, so an address
    // that stops being what a name resolves to is not dialled from the pool for long.
    keepAliveTimeout: 10_000,
    keepAliveMaxTimeout: 10_000,
  });

  // Shutdown's last step cuts every request still in flight (and its response stream) at once.
  // Each request has its own controller, held until its body closes: one long-lived signal passed
  // to AbortSignal.any on every request would keep every composite alive (nodejs/node#55351).
  const inFlight = new Set<AbortController>();
  let cut = false;

  /** Maps whatever undici, the socket or a signal threw to one of the four stable codes. */
  function translator(deadline: AbortSignal, timeoutMs: number, callerSignal: AbortSignal | undefined) {
    return (error: unknown): EgressError => {
      // Our own refusals (from the lookup) may arrive wrapped.
      for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
        if (e instanceof EgressError) return e;
      }
      if (cut) return new EgressError('egress_failed', 'the request was cut short: Bulkhead is shutting down', { cause: error });
      if (error instanceof undiciErrors.ConnectTimeoutError) return new EgressError('egress_timeout', 'connecting timed out', { cause: error });
      if (error instanceof undiciErrors.HeadersTimeoutError) return new EgressError('egress_timeout', 'the server did not send response headers in time', { cause: error });
      if (error instanceof undiciErrors.BodyTimeoutError) return new EgressError('egress_timeout', 'the server stopped sending the response body', { cause: error });
      if (deadline.aborted) return new EgressError('egress_timeout', `the request took longer than ${timeoutMs} ms`, { cause: error });
      if (callerSignal?.aborted) {
        const reason: unknown = callerSignal.reason;
        const timedOut = reason instanceof Error && reason.name === 'TimeoutError';
        return new EgressError(timedOut ? 'egress_timeout' : 'egress_failed', timedOut ? 'the caller\'s deadline passed' : 'the request was aborted', { cause: error });
      }
      return new EgressError('egress_failed', 'the request failed', { cause: error });
    };
  }

  /** What one request carries from hop to hop. */
  interface Hops {
    url: URL;
    method: string;
    headers: Record<string, string>;
    body: Readable | Buffer | string | null;
    readonly mode: 'manual' | 'error' | 'follow';
    readonly maxRedirects: number;
    readonly limit: number;
    readonly credentials: ReadonlySet<string>;
    readonly signal: AbortSignal;
    readonly translate: (error: unknown) => EgressError;
  }

  async function send(raw: string | URL, init: EgressRequest): Promise<EgressResponse<Readable>> {
    const maxRedirects = init.maxRedirects ?? MAX_REDIRECTS;
    if (!Number.isInteger(maxRedirects) || maxRedirects < 0 || maxRedirects > MAX_REDIRECTS) {
      throw new RangeError(`maxRedirects must be an integer from 0 to ${MAX_REDIRECTS}, got ${maxRedirects}`);
    }
    const limit = positive('maxResponseBytes', init.maxResponseBytes, maxResponseBytes);
    const timeoutMs = positive('timeoutMs', init.timeoutMs, totalTimeoutMs);
    const url = target(raw);
    if (cut) throw new EgressError('egress_failed', 'Bulkhead is shutting down');

    const deadline = AbortSignal.timeout(timeoutMs);
    const mine = new AbortController();
    inFlight.add(mine);
    const settled = () => { inFlight.delete(mine); };
    try {
      const response = await follow({
        url,
        method: (init.method ?? 'GET').toUpperCase(),
        headers: { ...init.headers },
        body: init.body ?? null,
        mode: init.redirect ?? 'manual',
        maxRedirects,
        limit,
        credentials: new Set([...ALWAYS_CREDENTIALS, ...(init.credentialHeaders ?? []).map((name) => name.toLowerCase())]),
        signal: AbortSignal.any(init.signal ? [init.signal, deadline, mine.signal] : [deadline, mine.signal]),
        translate: translator(deadline, timeoutMs, init.signal),
      });
      // The request stays abortable until its body is read or dropped.
      response.body.once('close', settled);
      return response;
    } catch (error) {
      settled();
      throw error;
    }
  }

  async function follow(request: Hops): Promise<EgressResponse<Readable>> {
    const { mode, maxRedirects, limit, credentials, signal, translate } = request;
    let { url, method, headers, body } = request;
    for (let hop = 0; ; hop++) {
      metrics.requests++;
      let response: Dispatcher.ResponseData;
      try {
        response = await undiciRequest(url, { dispatcher: agent, method, headers, body, signal });
      } catch (error) {
        throw translate(error);
      }
      const { statusCode: status } = response;
      const location = response.headers['location'];
      const redirected = status >= 300 && status < 400 && typeof location === 'string';

      if (!redirected || mode === 'manual') {
        const declared = Number(response.headers['content-length']);
        if (!bodiless(method, status) && Number.isFinite(declared) && declared > limit) {
          // Announced too large: not a byte of it is read.
          discard(response.body);
          throw tooLarge(limit);
        }
        return { status, headers: response.headers, body: capBody(response.body, limit, translate), url: url.toString() };
      }

      // A redirect we will not return: its body is of no interest.
      discard(response.body);
      if (mode === 'error') throw refuse('redirect', `the server redirected (${status}) and redirects are not followed here`);
      if (hop >= maxRedirects) throw refuse('redirect_limit', `more than ${maxRedirects} redirects`);
      const next = target(location, url);

      // Like fetch: 303 turns anything but HEAD into a GET, 301/302 turn POST into GET; the body goes.
      if (status === 303 ? method !== 'HEAD' : (status === 301 || status === 302) && method === 'POST') {
        method = 'GET';
        body = null;
        headers = withoutHeaders(headers, (name) => name.startsWith('content-'));
      } else if (body instanceof Readable) {
        throw refuse('redirect', `the server redirected (${status}) and a streamed request body cannot be sent again`);
      }
      if (next.origin !== url.origin) headers = withoutHeaders(headers, (name) => credentials.has(name));
      url = next;
    }
  }

  return {
    metrics,

    /** Sends, and streams the response body (capped). The caller must consume or destroy the body. */
    stream: (url: string | URL, init: EgressRequest = {}): Promise<EgressResponse<Readable>> => send(url, init),

    /** Sends, and buffers the response body (capped). */
    async request(url: string | URL, init: EgressRequest = {}): Promise<EgressResponse<Buffer>> {
      const response = await send(url, init);
      const chunks: Buffer[] = [];
      // The capped body only ever fails with egress errors.
      for await (const chunk of response.body) chunks.push(chunk as Buffer);
      return { ...response, body: Buffer.concat(chunks) };
    },

    /**
     * Judges a URL without sending anything (e.g. when a webhook destination is saved): scheme,
     * then the IP literal or every address the name resolves to. Throws `egress_blocked`. Sending
     * checks again: DNS can change between now and then.
     */
    async checkUrl(raw: string | URL): Promise<void> {
      const url = target(raw);
      if (!isIpLiteral(url)) await judge(hostOf(url));
    },

    /**
     * Closes pooled connections; in-flight requests finish first. After `abort()` the sockets are
     * destroyed instead: undici's graceful close can wait on a connection whose request was cut.
     */
    close: (): Promise<void> => (cut ? agent.destroy() : agent.close()),

    /**
     * Cuts every request in flight, response streams included (shutdown, once its grace period is
     * over); they fail with `egress_failed`, and so does every request sent from now on.
     */
    abort(): void {
      cut = true;
      for (const controller of inFlight) controller.abort(new Error('Bulkhead is shutting down'));
      inFlight.clear();
    },

    /** Whether `abort()` was called: a request that failed after it was cut short, not refused. */
    get aborted(): boolean {
      return cut;
    },
  };
}

export type EgressClient = ReturnType<typeof createEgressClient>;
