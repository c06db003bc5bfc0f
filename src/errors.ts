/**
 * One error family for the whole server. Clients switch on `code`, never on message text, so
 * the union below is a public contract: add codes, never rename or remove them.
 */
export const errorStatus = {
  // request shape
  validation_failed: 400,
  malformed_json: 400,
  unsupported_media_type: 415,
  payload_too_large: 413,
  invalid_cursor: 400,
  bad_request: 400,
  // authentication and authorization
  unauthenticated: 401,
  admin_token_invalid: 401,
  api_key_malformed: 401,
  api_key_checksum_invalid: 401,
  api_key_unknown: 401,
  api_key_expired: 401,
  api_key_revoked: 401,
  ip_not_allowed: 403,
  insufficient_scope: 403,
  forbidden: 403,
  // resources
  not_found: 404,
  route_not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  slug_taken: 409,
  name_taken: 409,
  tenant_not_empty: 409,
  // limits
  rate_limited: 429,
  limit_exceeded: 422,
  // database isolation (should never reach a client in normal operation)
  workspace_context_missing: 500,
  // server state
  not_ready: 503,
  internal_error: 500,
} as const satisfies Record<string, number>;

export type ErrorCode = keyof typeof errorStatus;

export class BulkheadError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Readonly<Record<string, unknown>> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.details = options?.details;
  }

  /** Extra machine-readable fields merged into the problem+json body (never secrets). */
  readonly details: Readonly<Record<string, unknown>> | undefined;

  get status(): number {
    return errorStatus[this.code];
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(errorStatus, value);
}

export const notFound = (what: string): BulkheadError => new BulkheadError('not_found', `${what} not found`);
