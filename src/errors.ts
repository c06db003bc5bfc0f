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
  /** The whole request (headers and body) did not arrive within BULKHEAD_REQUEST_TIMEOUT_MS; the connection is closed. */
  request_timeout: 408,
  /** The client address already has BULKHEAD_UPLOADS_PER_ADDRESS request bodies arriving; the connection is closed. */
  too_many_uploads: 429,
  invalid_cursor: 400,
  bad_request: 400,
  /** A string (value, key, query or path parameter) holds NUL or an unpaired surrogate; `details.location` and `details.pointer` name it. */
  text_invalid: 400,
  /** A JSON body nests objects/arrays deeper than the documented limit (64); `details.pointer` names the first too-deep value. */
  json_too_deep: 400,
  /** A JSON number a double cannot carry: an integer beyond ±(2^53−1), or a literal that overflows or underflows; `details.pointer` names it. */
  number_out_of_range: 400,
  /** The request has a `Content-Encoding` other than identity (bodies are not decoded; the relay forwards them as sent). */
  unsupported_encoding: 415,
  /** The URL has a path segment longer than the router accepts (200 characters). */
  uri_too_long: 414,
  // authentication and authorization
  unauthenticated: 401,
  admin_token_invalid: 401,
  /** The route takes the other kind of credential: `details.expected` names it (`admin_token` | `api_key`), `details.got` what came. */
  wrong_credential_kind: 401,
  api_key_malformed: 401,
  api_key_checksum_invalid: 401,
  api_key_unknown: 401,
  api_key_expired: 401,
  api_key_revoked: 401,
  ip_not_allowed: 403,
  insufficient_scope: 403,
  // a key asked to mint or rotate a key less restricted than itself (CIDRs, expiry); details
  // `{ field: 'allowedCidrs' | 'expiresAt', ... }` name the field and the parent's value
  restriction_exceeds_parent: 403,
  forbidden: 403,
  // resources
  not_found: 404,
  route_not_found: 404,
  /** The path exists but not with this method: the `Allow` header and `details.allowed` list the methods it has. */
  method_not_allowed: 405,
  conflict: 409,
  slug_taken: 409,
  name_taken: 409,
  tenant_not_empty: 409,
  // limits
  rate_limited: 429,
  limit_exceeded: 422,
  quota_exceeded: 429,
  idempotency_key_reused: 409,
  invalid_event_type: 400,
  // vault (integrity and key availability; never caused by the client)
  ciphertext_invalid: 500,
  key_version_retired: 500,
  workspace_key_missing: 500,
  root_key_missing: 500,
  // egress policy and outbound calls
  egress_blocked: 422,
  egress_timeout: 504,
  egress_response_too_large: 502,
  egress_failed: 502,
  // providers, connections, managed OAuth, relay
  provider_key_taken: 409,
  provider_invalid: 400,
  /** An OAuth provider has no OAuth app (client id and secret) configured; `details.providers` lists them when a connect session names several. */
  provider_not_configured: 422,
  connection_limit_exceeded: 422,
  connection_not_active: 409,
  credentials_invalid: 400,
  connect_session_invalid: 401,
  connect_session_expired: 410,
  provider_not_allowed: 403,
  oauth_state_invalid: 400,
  oauth_exchange_failed: 502,
  oauth_refresh_failed: 502,
  relay_target_not_allowed: 400,
  upstream_unavailable: 502,
  // inbound webhooks (public /hooks/{id}): the request is refused and nothing is stored
  signature_missing: 401,
  signature_invalid: 401,
  signature_expired: 401,
  signature_replayed: 409,
  // tenant code, integration templates, instances, executions
  transform_syntax_error: 400,
  template_invalid: 400,
  config_invalid: 400,
  binding_invalid: 400,
  version_exists: 409,
  version_not_newer: 409,
  config_migration_failed: 409,
  execution_not_failed: 409,
  execution_retry_pending: 409,
  // audit
  /**
   * An audit checkpoint given to verify is not one of this server's: `details.reason` is
   * `unknown_key` (no signing key with its keyId), `bad_signature` (changed after signing, or
   * forged) or `wrong_chain` (signed for another workspace's or the platform's chain).
   */
  checkpoint_invalid: 422,
  // database isolation (should never reach a client in normal operation)
  workspace_context_missing: 500,
  // server state
  not_ready: 503,
  /**
   * The embedded database's data folder is held by another live process (`details.holder`: pid,
   * hostname, since, command). Raised by the opener (server, worker, offline CLI), never by a route.
   */
  data_folder_locked: 503,
  /** PostgreSQL cannot be reached or refuses connections (down, restarting, out of connections): retry after `Retry-After`. */
  database_unavailable: 503,
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
