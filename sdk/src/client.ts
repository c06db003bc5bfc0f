/**
 * The client: one method per operation, grouped as the generated table says (operations.ts; the
 * naming rule is in docs/SDK.md). The transport adds the bearer token, retries 429 and 503 within
 * bounds, generates idempotency keys for event posts, and turns problem+json into BulkheadApiError.
 */
import { BulkheadApiError, retryAfterMs } from './errors.js';
import { operations } from './operations.js';
import type { Input, Method, OperationId, Output, PaginatedMethod, RawBody, RequestOptions } from './types.js';

type Table = typeof operations;
export type Groups = {
  readonly [G in keyof Table]: { readonly [M in keyof Table[G]]: Table[G][M] extends { operationId: infer K extends OperationId; paginated: infer P } ? (P extends true ? PaginatedMethod<K> : Method<K>) : never };
};

export interface RetryOptions {
  /** Attempts in all, the first included. Default 3; 1 turns retries off. */
  readonly maxAttempts?: number;
  /** The longest the client waits across all retries of one call; a `Retry-After` past it is not waited for. Default 30 000. */
  readonly maxRetryTimeMs?: number;
  /** Backoff when the answer has no `Retry-After`: base × 2^(retry − 1), full jitter, capped at 5 s. Default 250. */
  readonly baseDelayMs?: number;
}

export interface BulkheadOptions {
  /** Where the server listens, e.g. `http://127.0.0.1:3000`. */
  readonly baseUrl: string;
  /** An API key (`bk_…`) or the admin token, sent as `Authorization: Bearer`. */
  readonly token?: string;
  /** Defaults to the global fetch. */
  readonly fetch?: typeof fetch;
  readonly retry?: RetryOptions;
  /** How the client waits between retries (tests make it instant). */
  readonly sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

interface Entry { readonly operationId: OperationId; readonly method: string; readonly path: string; readonly paginated: boolean; readonly body: 'none' | 'required' | 'optional' }
type AnyInput = Record<string, unknown> & { query?: Record<string, unknown>; body?: unknown };

const EVENT_POSTS = new Set<OperationId>(['createEvent', 'createEventBatch']);
const RETRYABLE = new Set([429, 503]);

const defaultSleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(signal.reason as Error);
    }, { once: true });
  });

/** A path or query value as text: strings, numbers and booleans as they are, anything else as JSON. */
function scalar(value: unknown): string {
  return typeof value === 'string' ? value : typeof value === 'number' || typeof value === 'boolean' ? String(value) : JSON.stringify(value);
}

function fillPath(template: string, input: AnyInput): string {
  return template.replace(/\{([^}]+)\}/g, (_, name: string) => {
    const value = input[name];
    if (value === undefined || value === null) throw new TypeError(`path parameter "${name}" is required`);
    const text = scalar(value);
    // The relay's `{*}` is a path of its own: its slashes stay, its segments are encoded.
    return name === '*' ? text.split('/').map(encodeURIComponent).join('/') : encodeURIComponent(text);
  });
}

function queryString(query: Record<string, unknown> | undefined): string {
  if (query === undefined) return '';
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value === undefined || value === null) continue;
    for (const v of Array.isArray(value) ? (value as unknown[]) : [value]) params.append(name, scalar(v));
  }
  const text = params.toString();
  return text === '' ? '' : `?${text}`;
}

class BulkheadClient {
  readonly #options: BulkheadOptions;
  readonly #fetch: typeof fetch;
  readonly #sleep: NonNullable<BulkheadOptions['sleep']>;

  constructor(options: BulkheadOptions) {
    this.#options = { ...options, baseUrl: options.baseUrl.replace(/\/+$/, '') };
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.#sleep = options.sleep ?? defaultSleep;
    for (const [group, methods] of Object.entries(operations)) {
      const bound: Record<string, unknown> = {};
      for (const [name, entry] of Object.entries(methods as Record<string, Entry>)) {
        const call = (input?: AnyInput, opts?: RequestOptions) => this.#call(entry, input ?? {}, opts ?? {});
        bound[name] = entry.paginated ? Object.assign(call, { all: (input?: AnyInput, opts?: RequestOptions) => this.#pages(entry, input ?? {}, opts ?? {}) }) : call;
      }
      Object.defineProperty(this, group, { value: Object.freeze(bound), enumerable: true });
    }
  }

  /** Any operation by its operationId, for code that is driven by the document. */
  request<K extends OperationId>(operationId: K, input?: Input<K>, options?: RequestOptions): Promise<Output<K>> {
    const entry = Object.values(operations).flatMap((g) => Object.values(g) as Entry[]).find((e) => e.operationId === operationId);
    if (entry === undefined) throw new TypeError(`unknown operation ${operationId}`);
    return this.#call(entry, (input ?? {}) as AnyInput, options ?? {}) as Promise<Output<K>>;
  }

  async *#pages(entry: Entry, input: AnyInput, options: RequestOptions): AsyncIterableIterator<unknown> {
    let cursor = input.query?.['cursor'] as string | undefined;
    do {
      const page = (await this.#call(entry, { ...input, query: { ...input.query, cursor } }, options)) as { data: unknown[]; nextCursor?: string | null };
      yield* page.data;
      cursor = page.nextCursor ?? undefined;
    } while (cursor !== undefined);
  }

  async #call(entry: Entry, input: AnyInput, options: RequestOptions): Promise<unknown> {
    const url = `${this.#options.baseUrl}${fillPath(entry.path, input)}${queryString(input.query)}`;
    const raw = entry.path.includes('{*}');
    const headers: Record<string, string> = { accept: 'application/json, application/problem+json' };
    if (this.#options.token !== undefined) headers['authorization'] = `Bearer ${this.#options.token}`;
    let body: RawBody | undefined;
    if (raw) body = input.body as RawBody | undefined;
    else if (entry.body !== 'none') {
      // A JSON body left out is `{}`: the types allow that only where `{}` is valid (entry.body);
      // an operation without one sends none, whatever an untyped caller put in `body`.
      headers['content-type'] = 'application/json';
      const given = input.body ?? {};
      body = JSON.stringify(EVENT_POSTS.has(entry.operationId) ? this.#withKeys(entry.operationId, given, options, headers) : given);
    }
    Object.assign(headers, options.headers);

    const response = await this.#send(url, { method: entry.method, headers, ...(body === undefined ? {} : { body }), ...(options.signal ? { signal: options.signal } : {}) }, !raw);
    if (raw) return response;
    if (!response.ok) throw await BulkheadApiError.from(response);
    if (response.status === 204) return undefined;
    const text = await response.text();
    return text === '' ? undefined : (JSON.parse(text) as unknown);
  }

  /**
   * A retried event post must be the same post: a key is fixed before the first attempt. One
   * event takes it as the `Idempotency-Key` header; a batch gives each event without one its own.
   */
  #withKeys(operationId: OperationId, body: unknown, options: RequestOptions, headers: Record<string, string>): unknown {
    if (operationId === 'createEvent') {
      const given = (body as { idempotencyKey?: string } | undefined)?.idempotencyKey;
      if (given === undefined) headers['idempotency-key'] = options.idempotencyKey ?? crypto.randomUUID();
      return body;
    }
    const batch = body as { events?: Record<string, unknown>[] } | undefined;
    if (!Array.isArray(batch?.events)) return body;
    return { ...batch, events: batch.events.map((e, i) => (e['idempotencyKey'] === undefined ? { ...e, idempotencyKey: options.idempotencyKey === undefined ? crypto.randomUUID() : `${options.idempotencyKey}.${String(i)}` } : e)) };
  }

  /** 429 and 503 are answers to come back later: the request was not carried out, so it is sent again. */
  async #send(url: string, init: RequestInit, retry: boolean): Promise<Response> {
    const { maxAttempts = 3, maxRetryTimeMs = 30_000, baseDelayMs = 250 } = this.#options.retry ?? {};
    let waited = 0;
    for (let attempt = 1; ; attempt++) {
      const response = await this.#fetch(url, init);
      if (!retry || !RETRYABLE.has(response.status) || attempt >= maxAttempts) return response;
      const asked = retryAfterMs(response.headers.get('retry-after'), Date.now());
      const delay = asked ?? Math.random() * Math.min(5_000, baseDelayMs * 2 ** (attempt - 1));
      if (waited + delay > maxRetryTimeMs) return response;
      await response.body?.cancel();
      await this.#sleep(delay, init.signal ?? undefined);
      waited += delay;
    }
  }
}

/** `new Bulkhead({ baseUrl, token })`: the groups (`events`, `deliveries`, …) and `request`. */
export type Bulkhead = BulkheadClient & Groups;
export const Bulkhead = BulkheadClient as new (options: BulkheadOptions) => Bulkhead;
