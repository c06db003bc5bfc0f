/**
 * API key wire format: `bk_live_` or `bk_test_`, 43 base62 characters carrying 256 random bits,
 * then 6 base62 characters of CRC32 over everything before them. The prefix makes leaked keys
 * recognisable to secret scanners; the checksum lets us (and scanners) reject typos and forgeries
 * without touching the database.
 */
import { crc32 } from 'node:zlib';
import { BulkheadError } from '../errors.js';

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const BODY_LENGTH = 43; // 62^43 > 2^256
const CHECKSUM_LENGTH = 6; // 62^6 > 2^32
const FORMAT = /^(bk_(?:live|test)_)([0-9A-Za-z]{43})([0-9A-Za-z]{6})$/;

export type KeyMode = 'live' | 'test';

function base62(value: bigint, width: number): string {
  let out = '';
  let rest = value;
  while (rest > 0n) {
    out = BASE62.charAt(Number(rest % 62n)) + out;
    rest /= 62n;
  }
  return out.padStart(width, '0');
}

function checksum(text: string): string {
  return base62(BigInt(crc32(text)), CHECKSUM_LENGTH);
}

export function formatApiKey(mode: KeyMode, random: Buffer): string {
  if (random.length < 32) throw new RangeError('an API key needs at least 256 random bits');
  const body = base62(BigInt(`0x${random.subarray(0, 32).toString('hex')}`), BODY_LENGTH);
  const head = `bk_${mode}_${body}`;
  return head + checksum(head);
}

/** Whether a presented token is meant as an API key (its prefix), valid or not. */
export const hasApiKeyPrefix = (token: string): boolean => token.startsWith('bk_live_') || token.startsWith('bk_test_');

/** Checks shape and checksum; throws `api_key_malformed` or `api_key_checksum_invalid`. */
export function checkApiKey(key: string): { mode: KeyMode; displayPrefix: string } {
  const match = FORMAT.exec(key);
  if (!match?.[1] || !match[2] || !match[3]) throw new BulkheadError('api_key_malformed', 'the API key is not in the bk_live_/bk_test_ format');
  if (checksum(match[1] + match[2]) !== match[3]) throw new BulkheadError('api_key_checksum_invalid', 'the API key checksum does not match');
  return { mode: match[1] === 'bk_live_' ? 'live' : 'test', displayPrefix: displayPrefix(key) };
}

/** What we show of a key after creation: enough to tell keys apart, useless to an attacker. */
export function displayPrefix(key: string): string {
  return key.slice(0, 'bk_live_'.length + 4);
}
