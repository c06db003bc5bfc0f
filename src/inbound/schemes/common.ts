/**
 * What every verification scheme shares: reading headers strictly, decoding presented signatures
 * strictly, and comparing MACs in constant time. A presented signature is decoded to bytes first
 * and compared only when its length is the MAC's length (the length of a MAC is no secret), so
 * `timingSafeEqual` always sees two equal-length buffers.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { BulkheadError } from '../../errors.js';

export type Scheme = 'standard-webhooks' | 'github' | 'stripe' | 'slack' | 'hmac';
export const schemes: readonly Scheme[] = ['standard-webhooks', 'github', 'stripe', 'slack', 'hmac'];

/** Schemes whose signatures cover a timestamp (so a tolerance applies). */
export const timedSchemes: ReadonlySet<Scheme> = new Set(['standard-webhooks', 'stripe', 'slack']);

export interface HmacOptions {
  /** Lower-case header name carrying the signature. */
  readonly header: string;
  readonly algorithm: 'sha256' | 'sha512';
  readonly encoding: 'hex' | 'base64';
  /** Text before the encoded MAC, e.g. `sha256=` (may be empty). */
  readonly prefix: string;
}

export interface SignedRequest {
  readonly headers: IncomingHttpHeaders;
  /** The raw body, exactly as received. */
  readonly body: Buffer;
}

export interface VerifyContext {
  /** Plaintext secrets that may have signed (current first, then any still inside a rotation overlap). */
  readonly secrets: readonly string[];
  readonly nowSeconds: number;
  readonly toleranceSeconds: number;
  readonly hmac?: HmacOptions | undefined;
}

export interface Verified {
  /**
   * SHA-256 (hex) of exactly the content the signature covers. Two requests with the same digest
   * are the same signed message, whichever secret or signature entry verified them: this is what
   * the replay memory remembers.
   */
  readonly signedDigest: string;
  /** The signed timestamp (Unix seconds) for timed schemes, else null. */
  readonly timestamp: number | null;
  /** A message id taken from signed data only (never from an unsigned header), when the scheme has one. */
  readonly messageId?: string | undefined;
}

/** Longest signature header considered; anything longer is refused before any MAC is computed. */
export const MAX_SIGNATURE_HEADER = 4096;
/** Most signature entries tried from one header (several are normal during a secret rotation). */
export const MAX_SIGNATURES = 10;

export const missing = (what: string) => new BulkheadError('signature_missing', `the request has no ${what}`);
export const invalid = (why = 'no signature matches the request') => new BulkheadError('signature_invalid', why);

/** One header's value; a repeated header (an array) counts as malformed. */
export function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw invalid(`the ${name} header is repeated`);
  if (value.length > MAX_SIGNATURE_HEADER) throw invalid(`the ${name} header is too long`);
  return value;
}

export function parseTimestamp(value: string, name: string): number {
  if (!/^[0-9]{1,12}$/.test(value)) throw invalid(`the ${name} header is not a Unix timestamp in seconds`);
  return Number(value);
}

export function decodeHex(value: string): Buffer | undefined {
  return /^(?:[0-9a-fA-F]{2})+$/.test(value) ? Buffer.from(value, 'hex') : undefined;
}

export function decodeBase64(value: string): Buffer | undefined {
  return /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(value) && value.length > 0 ? Buffer.from(value, 'base64') : undefined;
}

export function mac(algorithm: 'sha256' | 'sha512', key: Buffer | string, prefix: string, body: Buffer): Buffer {
  return createHmac(algorithm, key).update(prefix, 'utf8').update(body).digest();
}

export function digest(prefix: string, body: Buffer): string {
  return createHash('sha256').update(prefix, 'utf8').update(body).digest('hex');
}

/** Constant-time for equal lengths; unequal lengths are refused without comparing. */
export function sameMac(expected: Buffer, presented: Buffer | undefined): boolean {
  return presented?.length === expected.length && timingSafeEqual(expected, presented);
}

/** Whether any presented signature matches the MAC computed under any of the secrets. */
export function anyMatch(secrets: readonly string[], expectedFor: (secret: string) => Buffer, presented: readonly (Buffer | undefined)[]): boolean {
  for (const secret of secrets) {
    const expected = expectedFor(secret);
    for (const candidate of presented) if (sameMac(expected, candidate)) return true;
  }
  return false;
}

/** Refuses a signed timestamp further than the tolerance from now, in either direction. */
export function checkTolerance(timestamp: number, nowSeconds: number, toleranceSeconds: number): void {
  if (Math.abs(nowSeconds - timestamp) > toleranceSeconds) {
    throw new BulkheadError('signature_expired', `the signed timestamp is more than ${String(toleranceSeconds)} seconds from the current time`);
  }
}
