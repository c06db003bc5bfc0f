/**
 * The one place where errors become HTTP responses: `application/problem+json` (RFC 9457) with a
 * stable `code`. Unknown errors are logged and answered as `internal_error` without detail, so no
 * internal message (or anything it might contain) reaches a client.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { unavailableAsBulkhead } from '../db/errors.js';
import type { ErrorObject } from 'ajv';
import { BulkheadError, type ErrorCode, errorStatus } from '../errors.js';
import { describeValidation, locationOf, summarise } from './validation.js';

export interface Problem {
  type: string;
  title: string;
  status: number;
  code: ErrorCode;
  detail: string;
  requestId: string;
  [extra: string]: unknown;
}

const titles: Partial<Record<ErrorCode, string>> = {
  validation_failed: 'The request is not valid',
  malformed_json: 'The request body is not valid JSON',
  payload_too_large: 'The request body is too large',
  not_found: 'Not found',
  route_not_found: 'No such route',
  rate_limited: 'Too many requests',
  internal_error: 'Internal error',
};

const fastifyCodes: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'bad_request',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'malformed_json',
  FST_ERR_CTP_INVALID_JSON_BODY: 'malformed_json',
  FST_ERR_CTP_INVALID_TYPE: 'bad_request',
  // Router refusals, handed over by the `frameworkErrors` option (server.ts); an async-constraint
  // failure is left to fall through to internal_error, logged.
  FST_ERR_BAD_URL: 'bad_request',
  FST_ERR_MAX_PARAM_LENGTH: 'uri_too_long',
};

/** 5xx answers that describe the world (a provider down, the database starting), not a bug: logged as warnings. */
const OPERATIONAL = new Set<ErrorCode>(['not_ready', 'database_unavailable', 'egress_timeout', 'egress_failed', 'egress_response_too_large', 'upstream_unavailable', 'oauth_refresh_failed', 'oauth_exchange_failed']);

export function problemFor(thrown: unknown, requestId: string): { problem: Problem; cause?: unknown; level?: 'warn' } {
  // An unreachable database is 503 `database_unavailable` wherever the driver's error surfaced
  // (the pool already says so; this catches one that reached here raw).
  const error = unavailableAsBulkhead(thrown);
  // Extra fields first: they can add to the problem but never replace its standard members.
  const make = (code: ErrorCode, detail: string, extra: Record<string, unknown> = {}): Problem => ({
    ...extra,
    type: `urn:bulkhead:error:${code}`,
    title: titles[code] ?? code.replaceAll('_', ' '),
    status: errorStatus[code],
    code,
    detail,
    requestId,
  });

  if (error instanceof BulkheadError) {
    const problem = make(error.code, error.message, { ...error.details });
    if (error.status < 500) return { problem };
    return OPERATIONAL.has(error.code) ? { problem, cause: error, level: 'warn' } : { problem, cause: error };
  }
  const fastifyError = error as Partial<FastifyError> & { validation?: ErrorObject[] };
  if (Array.isArray(fastifyError.validation)) {
    // One entry per mistake, said in words at its JSON pointer (validation.ts); detail is the first.
    const errors = describeValidation(fastifyError.validation, locationOf(fastifyError.validationContext));
    return { problem: make('validation_failed', summarise(errors), { errors }) };
  }
  const mapped = fastifyError.code ? fastifyCodes[fastifyError.code] : undefined;
  if (mapped) return { problem: make(mapped, fastifyError.message ?? mapped) };
  // JSON.parse failures and prototype-poisoning refusals surface as 400 SyntaxErrors.
  if (error instanceof SyntaxError && fastifyError.statusCode === 400) return { problem: make('malformed_json', 'the request body is not valid JSON') };
  if (typeof fastifyError.statusCode === 'number' && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    return { problem: { ...make('bad_request', fastifyError.message ?? 'bad request'), status: fastifyError.statusCode } };
  }
  return { problem: make('internal_error', 'an internal error occurred; quote the requestId when reporting it'), cause: error };
}

export function sendProblem(request: FastifyRequest, reply: FastifyReply, error: unknown): FastifyReply {
  const { problem, cause, level } = problemFor(error, request.id);
  // A problem that says when to come back (database_unavailable, rate_limited) says it in the header too.
  if (typeof problem['retryAfter'] === 'number' && !reply.hasHeader('retry-after')) reply.header('Retry-After', problem['retryAfter']);
  if (cause !== undefined && level === 'warn') request.log.warn({ code: problem.code, detail: problem.detail }, 'request failed');
  else if (cause !== undefined) request.log.error({ err: cause }, 'request failed');
  return reply.status(problem.status).type('application/problem+json').send(problem);
}
