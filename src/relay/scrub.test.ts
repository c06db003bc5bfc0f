import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createScrubber, REDACTED, scrubSecrets } from './scrub.js';

async function throughScrubber(chunks: Buffer[], secrets: string[]): Promise<string> {
  return (await buffer(Readable.from(chunks).pipe(createScrubber(secrets)))).toString('utf8');
}

describe('response scrubbing', () => {
  it('removes a secret wherever the chunk boundaries fall', async () => {
    const secret = 'sk_live_canary_0123456789';
    const body = `{"echo":"Bearer ${secret}","again":"${secret}"}`;
    for (let cut = 0; cut <= body.length; cut++) {
      const out = await throughScrubber([Buffer.from(body.slice(0, cut)), Buffer.from(body.slice(cut))], [secret]);
      expect(out).not.toContain(secret);
      expect(out).toBe(body.split(secret).join(REDACTED));
    }
  });

  it('matches the string version for any text split into any chunks (property)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ minLength: 6, maxLength: 20 }), fc.array(fc.string(), { maxLength: 6 }), fc.array(fc.nat(), { maxLength: 5 }), async (secret, fillers, cuts) => {
        const text = fillers.join(secret);
        const bytes = Buffer.from(text, 'utf8');
        const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
        const chunks: Buffer[] = [];
        let last = 0;
        for (const p of points) {
          chunks.push(bytes.subarray(last, p));
          last = p;
        }
        chunks.push(bytes.subarray(last));
        expect(await throughScrubber(chunks, [secret])).toBe(scrubSecrets(text, [secret]));
      }),
      { numRuns: 200 },
    );
  });

  it('leaves bodies without secrets byte-for-byte alone', async () => {
    const body = Buffer.from('plain response, nothing to hide', 'utf8');
    expect(await throughScrubber([body], ['not-present-secret'])).toBe(body.toString('utf8'));
  });
});
