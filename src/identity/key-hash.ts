import { createHmac, timingSafeEqual } from 'node:crypto';

/** Keys are stored only as HMAC-SHA256 under a server pepper: a database dump alone cannot be brute-forced offline. */
export function hashApiKey(pepper: string, key: string): string {
  return createHmac('sha256', pepper).update(key, 'utf8').digest('hex');
}

export function sameHash(a: string, b: string): boolean {
  const left = Buffer.from(a, 'hex');
  const right = Buffer.from(b, 'hex');
  return left.length === right.length && timingSafeEqual(left, right);
}
