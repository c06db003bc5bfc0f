/**
 * Removes echoes of a credential from a streamed response. Some APIs reflect the request (debug
 * endpoints, error bodies quoting the header); the relay must not hand the secret back to a
 * caller who was never meant to see it. Works across chunk boundaries by holding back the last
 * (longest secret - 1) bytes of each chunk until the next one arrives.
 */
import { Transform, type TransformCallback } from 'node:stream';

export const REDACTED = '[redacted]';

/** Secrets shorter than this are not scrubbed: they would match ordinary text (and are refused as credentials anyway). */
const MIN_SCRUB_LENGTH = 6;

export function scrubSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) if (secret.length >= MIN_SCRUB_LENGTH) out = out.split(secret).join(REDACTED);
  return out;
}

function replaceAll(body: Buffer, needles: readonly Buffer[]): Buffer {
  let current = body;
  for (const needle of needles) {
    let index = current.indexOf(needle);
    if (index === -1) continue;
    const parts: Buffer[] = [];
    let start = 0;
    while (index !== -1) {
      parts.push(current.subarray(start, index), Buffer.from(REDACTED));
      start = index + needle.length;
      index = current.indexOf(needle, start);
    }
    parts.push(current.subarray(start));
    current = Buffer.concat(parts);
  }
  return current;
}

const needlesOf = (secrets: readonly string[]): Buffer[] => [...new Set(secrets.filter((s) => s.length >= MIN_SCRUB_LENGTH))].map((s) => Buffer.from(s, 'utf8'));

/** The buffer version, for responses small enough to hold whole (one write back to the caller). */
export function scrubBuffer(body: Buffer, secrets: readonly string[]): Buffer {
  return replaceAll(body, needlesOf(secrets));
}

export function createScrubber(secrets: readonly string[]): Transform {
  const needles = needlesOf(secrets);
  const hold = Math.max(0, ...needles.map((n) => n.length - 1));
  let pending: Buffer = Buffer.alloc(0);
  const redact = (buffer: Buffer): Buffer => replaceAll(buffer, needles);

  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      if (needles.length === 0) {
        callback(null, chunk);
        return;
      }
      const combined = redact(Buffer.concat([pending, chunk]));
      // A secret may start in the held-back tail; keep it for the next chunk.
      const cut = Math.max(0, combined.length - hold);
      pending = combined.subarray(cut);
      callback(null, combined.subarray(0, cut));
    },
    flush(callback: TransformCallback) {
      callback(null, redact(pending));
    },
  });
}
