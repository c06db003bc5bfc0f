/**
 * The response size cap, for buffered and streamed bodies alike: a counting transform between
 * undici's body and the caller. Going over the cap fails the stream with
 * `egress_response_too_large` and destroys the upstream body, which closes that connection
 * (it is not returned to the pool half-read).
 */
import { type Readable, Transform } from 'node:stream';
import { EgressError } from './errors.js';

export const tooLarge = (limit: number): EgressError =>
  new EgressError('egress_response_too_large', `the response is larger than ${limit} bytes`, { details: { limit } });

/**
 * Drops a body we will not read (a redirect's, or one announced too large): destroying it closes
 * the connection rather than reading an unbounded amount to keep it. undici reports its own
 * destruction as an abort error, which is expected here.
 */
export function discard(body: Readable): void {
  body.on('error', () => undefined);
  body.destroy();
}

/**
 * Wraps `body` so that at most `limit` bytes come out. Errors from `body` (timeouts, resets,
 * the deadline) come out as egress errors, translated by `translate`. A consumer that stops early
 * (destroys the returned stream) releases the upstream body at once.
 */
export function capBody(body: Readable, limit: number, translate: (error: unknown) => EgressError): Readable {
  let seen = 0;
  const capped = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      seen += chunk.length;
      if (seen > limit) callback(tooLarge(limit));
      else callback(null, chunk);
    },
  });
  body.on('error', (error) => capped.destroy(translate(error)));
  capped.on('close', () => {
    if (!body.readableEnded) body.destroy();
  });
  body.pipe(capped);
  return capped;
}
