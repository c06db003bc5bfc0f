/** The API's errors as one typed class: `code` is the server's closed union (the Problem schema). */
import type { components } from './openapi.js';

export type Problem = components['schemas']['Problem'];
/** Every code the server can answer with (src/errors.ts on the server, via the OpenAPI document). */
export type ErrorCode = Problem['code'];
/** Not one of the server's codes: an answer that was not problem+json (a proxy's HTML 502, say). */
export const UNEXPECTED_RESPONSE = 'unexpected_response';

export class BulkheadApiError extends Error {
  override readonly name = 'BulkheadApiError';
  constructor(
    readonly status: number,
    readonly code: ErrorCode | typeof UNEXPECTED_RESPONSE,
    readonly detail: string,
    /** The server's request id (quote it when reporting); from the body, else `X-Request-Id`. */
    readonly requestId: string | undefined,
    /** The whole problem document, with any route-specific members (`errors`, `retryAfter`, …). */
    readonly problem: Readonly<Record<string, unknown>> | undefined,
    /** Seconds the server asked to wait, when it did (429, 503). */
    readonly retryAfterSeconds: number | undefined,
  ) {
    super(`${String(status)} ${code}: ${detail}`);
  }

  static async from(response: Response): Promise<BulkheadApiError> {
    const text = await response.text().catch(() => '');
    const headerId = response.headers.get('x-request-id') ?? undefined;
    const retryAfter = retryAfterMs(response.headers.get('retry-after'), Date.now());
    const seconds = retryAfter === undefined ? undefined : Math.ceil(retryAfter / 1000);
    const problem = parseProblem(text);
    if (problem === undefined) return new BulkheadApiError(response.status, UNEXPECTED_RESPONSE, text.slice(0, 500) || response.statusText, headerId, undefined, seconds);
    const requestId = typeof problem['requestId'] === 'string' ? problem['requestId'] : headerId;
    return new BulkheadApiError(response.status, problem['code'] as ErrorCode, typeof problem['detail'] === 'string' ? problem['detail'] : '', requestId, problem, seconds);
  }
}

function parseProblem(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && typeof (value as Record<string, unknown>)['code'] === 'string' ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** `Retry-After` as delay-seconds or an HTTP date, in milliseconds from `now`; undefined if absent or unusable. */
export function retryAfterMs(value: string | null, now: number): number | undefined {
  if (value === null || value.trim() === '') return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
