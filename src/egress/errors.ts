/**
 * The egress client's errors. They are `BulkheadError`s (the four codes below are already in the
 * closed union in `src/errors.ts`), so the problem+json mapper, the relay and the token client
 * handle them like every other error; the subclass narrows `code` and types `details`, so code
 * inside `src/egress` cannot raise anything else.
 */
import { BulkheadError } from '../errors.js';

export type EgressErrorCode = 'egress_blocked' | 'egress_timeout' | 'egress_response_too_large' | 'egress_failed';

/**
 * Why a request was refused by policy (always before it was sent):
 *  - `scheme`: not an absolute http(s) URL (or http in https-only mode), or a URL with user info;
 *  - `address`: the host is, or resolves to, an address that is not global unicast;
 *  - `resolution_failed`: the host name has no address;
 *  - `redirect`: a redirect with `redirect: 'error'`, or one that would have to replay a streamed body;
 *  - `redirect_limit`: more redirects than allowed.
 */
export type BlockReason = 'scheme' | 'address' | 'resolution_failed' | 'redirect' | 'redirect_limit';

export const BLOCK_REASONS: readonly BlockReason[] = ['scheme', 'address', 'resolution_failed', 'redirect', 'redirect_limit'];

/**
 * Machine-readable context, merged into the problem+json body a client sees. `address` is only
 * set for IP-literal hosts (the caller wrote it): the answers a name resolves to stay internal, so
 * a tenant cannot use refusals to read our DNS.
 */
export type EgressErrorDetails = Readonly<{
  reason?: BlockReason;
  /** The ipaddr.js range name of a refused address (`loopback`, `private`, `rfc6052`, ...). */
  range?: string;
  address?: string;
  host?: string;
  /** The response size cap that was exceeded, in bytes. */
  limit?: number;
}>;

export class EgressError extends BulkheadError {
  declare readonly code: EgressErrorCode;
  declare readonly details: EgressErrorDetails | undefined;

  // Not useless: it narrows what may be passed (`code`, `details`) to the egress vocabulary.
  // eslint-disable-next-line @typescript-eslint/no-useless-constructor
  constructor(code: EgressErrorCode, message: string, options?: { cause?: unknown; details?: EgressErrorDetails }) {
    super(code, message, options);
  }
}

export const blocked = (reason: BlockReason, message: string, details: Omit<EgressErrorDetails, 'reason'> = {}, cause?: unknown): EgressError =>
  new EgressError('egress_blocked', message, { cause, details: { reason, ...details } });

export const isEgressError = (error: unknown): error is EgressError => error instanceof EgressError;
