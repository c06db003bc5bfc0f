/**
 * Advisory lock keys. PostgreSQL takes a 64-bit integer; the key is derived from a purpose and an
 * id, so unrelated locks never collide by accident (and both engines compute it the same way).
 */
import { createHash } from 'node:crypto';

export function advisoryLockKey(purpose: string, id: string): string {
  // First 8 bytes of SHA-256 as a signed 64-bit integer, passed as text to avoid JS precision loss.
  return createHash('sha256').update(`${purpose}\0${id}`).digest().readBigInt64BE(0).toString();
}
