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
  /** The setting that lifts this refusal, when one does (`BULKHEAD_EGRESS_ALLOW_CIDRS`). */
  setting?: string;
  /** What to do about it, in words (local development only: production keeps the refusal). */
  hint?: string;
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

/** The setting whose ranges an address refusal can be lifted for (src/config.ts `egressAllowCidrs`). */
export const ALLOW_SETTING = 'BULKHEAD_EGRESS_ALLOW_CIDRS';

/**
 * A refused address, with the setting that allows its range. `subject` is the caller's own text:
 * an IP literal (named, with the exact range to add) or a host name (the range is named, never
 * the address it resolved to). An unparseable answer (`invalid`) is no range anything can allow.
 */
export function addressBlocked(range: string, subject: { address: string } | { host: string }): EgressError {
  if ('address' in subject) {
    const cidr = `${subject.address}/${subject.address.includes(':') ? '128' : '32'}`;
    const hint = `for local development, allow it with ${ALLOW_SETTING} (e.g. ${cidr})`;
    return blocked('address', `${subject.address} is a ${range} address; ${hint}`, { range, address: subject.address, setting: ALLOW_SETTING, hint: `set ${ALLOW_SETTING}=${cidr} (local development only)` });
  }
  if (range === 'invalid') return blocked('address', `${subject.host} resolves to an invalid address`, { host: subject.host, range });
  return blocked('address', `${subject.host} resolves to a ${range} address; for local development, allow its range with ${ALLOW_SETTING}`, {
    host: subject.host,
    range,
    setting: ALLOW_SETTING,
    hint: `add the ${range} range ${subject.host} resolves to to ${ALLOW_SETTING} (local development only)`,
  });
}

export const isEgressError = (error: unknown): error is EgressError => error instanceof EgressError;
