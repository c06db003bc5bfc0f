/**
 * Cryptographically secure random bytes for the many small draws of the hot path (ids, nonces):
 * taken from a pool that one `randomFillSync` call refills, instead of one call per draw — the
 * per-call cost, not the bytes, was 5% of a busy worker's CPU. The bytes are the same CSPRNG's;
 * each is handed out once and the caller gets its own copy (the pool is never exposed).
 */
import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 4096;
const pool = Buffer.allocUnsafe(POOL_BYTES);
let offset = POOL_BYTES;

export function secureRandomBytes(size: number): Buffer {
  if (size > POOL_BYTES / 4) return randomFillSync(Buffer.allocUnsafe(size));
  if (offset + size > POOL_BYTES) {
    randomFillSync(pool);
    offset = 0;
  }
  const out = Buffer.from(pool.subarray(offset, offset + size));
  // Zero what was handed out, so the pool never holds bytes someone already has.
  pool.fill(0, offset, offset + size);
  offset += size;
  return out;
}
