import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import fc from 'fast-check';
import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { decodeBase64, decodeHex, type HmacOptions, type Scheme, verifySignature } from './schemes/index.js';
import { secretProblems } from './schemes/secrets.js';

const verify = (scheme: Scheme, headers: IncomingHttpHeaders, body: string | Buffer, secrets: string[], nowSeconds: number, toleranceSeconds = 300, hmac?: HmacOptions) =>
  verifySignature(scheme, { headers, body: Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8') }, { secrets, nowSeconds, toleranceSeconds, hmac });
const hex = (algorithm: string, key: string | Buffer, content: string) => createHmac(algorithm, key).update(content, 'utf8').digest('hex');
const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (error) {
    return (error as { code?: string }).code;
  }
  return 'accepted';
};

describe('Slack v0 signatures', () => {
  // The example from Slack's "Verifying requests from Slack".
  const secret = '8f742231b10e8888abcd99yyyzzz85a5';
  const timestamp = 1531420618;
  const body =
    'token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c';
  const headers = { 'x-slack-request-timestamp': String(timestamp), 'x-slack-signature': 'v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503' };

  it("accepts Slack's published example inside the tolerance, in either direction", () => {
    expect(verify('slack', headers, body, [secret], timestamp + 299).timestamp).toBe(timestamp);
    expect(verify('slack', headers, body, [secret], timestamp - 299).timestamp).toBe(timestamp);
  });

  it('refuses it with another secret, a changed body or timestamp, an old or future timestamp, or missing headers', () => {
    expect(code(() => verify('slack', headers, body, ['8f742231b10e8888abcd99yyyzzz85a6'], timestamp))).toBe('signature_invalid');
    expect(code(() => verify('slack', headers, body.replace('foobar', 'foobaz'), [secret], timestamp))).toBe('signature_invalid');
    expect(code(() => verify('slack', { ...headers, 'x-slack-request-timestamp': String(timestamp + 1) }, body, [secret], timestamp))).toBe('signature_invalid');
    expect(code(() => verify('slack', headers, body, [secret], timestamp + 301))).toBe('signature_expired');
    expect(code(() => verify('slack', headers, body, [secret], timestamp - 301))).toBe('signature_expired');
    expect(code(() => verify('slack', { 'x-slack-signature': headers['x-slack-signature'] }, body, [secret], timestamp))).toBe('signature_missing');
    expect(code(() => verify('slack', { 'x-slack-request-timestamp': String(timestamp) }, body, [secret], timestamp))).toBe('signature_missing');
    expect(code(() => verify('slack', { ...headers, 'x-slack-signature': headers['x-slack-signature'].replace('v0=', 'v1=') }, body, [secret], timestamp))).toBe('signature_invalid');
    expect(code(() => verify('slack', { ...headers, 'x-slack-request-timestamp': '1531420618.5' }, body, [secret], timestamp))).toBe('signature_invalid');
  });
});

describe('GitHub X-Hub-Signature-256', () => {
  // The example from GitHub's "Validating webhook deliveries".
  const secret = "It's a Secret to Everybody";
  const signature = 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17';

  it("accepts GitHub's published example, upper-case hex too, and has no timestamp", () => {
    expect(verify('github', { 'x-hub-signature-256': signature }, 'Hello, World!', [secret], 0)).toMatchObject({ timestamp: null });
    expect(verify('github', { 'x-hub-signature-256': `sha256=${signature.slice(7).toUpperCase()}` }, 'Hello, World!', [secret], 0).timestamp).toBeNull();
  });

  it('refuses a wrong secret, a changed body, a truncated or non-hex signature, the SHA-1 header alone', () => {
    expect(code(() => verify('github', { 'x-hub-signature-256': signature }, 'Hello, World!', ["It's a Secret to Everybody!"], 0))).toBe('signature_invalid');
    expect(code(() => verify('github', { 'x-hub-signature-256': signature }, 'Hello, World?', [secret], 0))).toBe('signature_invalid');
    expect(code(() => verify('github', { 'x-hub-signature-256': signature.slice(0, -2) }, 'Hello, World!', [secret], 0))).toBe('signature_invalid');
    expect(code(() => verify('github', { 'x-hub-signature-256': `${signature.slice(0, -1)}g` }, 'Hello, World!', [secret], 0))).toBe('signature_invalid');
    expect(code(() => verify('github', { 'x-hub-signature-256': signature.slice(7) }, 'Hello, World!', [secret], 0))).toBe('signature_invalid');
    expect(code(() => verify('github', { 'x-hub-signature': `sha1=${hex('sha1', secret, 'Hello, World!')}` }, 'Hello, World!', [secret], 0))).toBe('signature_missing');
    expect(code(() => verify('github', { 'x-hub-signature-256': `${signature}${'0'.repeat(5000)}` }, 'Hello, World!', [secret], 0))).toBe('signature_invalid');
    expect(code(() => verify('github', { 'x-hub-signature-256': [signature, signature] }, 'Hello, World!', [secret], 0))).toBe('signature_invalid');
  });
});

describe('Stripe-Signature', () => {
  const secret = `whsec_${randomBytes(24).toString('hex')}`;
  const body = JSON.stringify({ id: 'evt_1', type: 'invoice.paid' });
  const t = 1_700_000_000;
  // Per Stripe's docs: v1 = hex HMAC-SHA256 of `${t}.${payload}`, keyed with the whole endpoint secret.
  const v1 = hex('sha256', secret, `${String(t)}.${body}`);

  it('accepts the documented format, with several v1 entries (a secret roll) and a v0 entry ignored', () => {
    expect(verify('stripe', { 'stripe-signature': `t=${String(t)},v1=${v1}` }, body, [secret], t).timestamp).toBe(t);
    const rolled = `t=${String(t)},v1=${hex('sha256', 'whsec_other', `${String(t)}.${body}`)},v1=${v1},v0=${'0'.repeat(64)}`;
    expect(verify('stripe', { 'stripe-signature': rolled }, body, [secret], t + 10).timestamp).toBe(t);
  });

  it('refuses without the prefix-included key, with only v0, two timestamps, a moved t, or outside the tolerance', () => {
    const keyedWithoutPrefix = hex('sha256', secret.slice(6), `${String(t)}.${body}`);
    expect(code(() => verify('stripe', { 'stripe-signature': `t=${String(t)},v1=${keyedWithoutPrefix}` }, body, [secret], t))).toBe('signature_invalid');
    expect(code(() => verify('stripe', { 'stripe-signature': `t=${String(t)},v0=${v1}` }, body, [secret], t))).toBe('signature_invalid');
    expect(code(() => verify('stripe', { 'stripe-signature': `t=${String(t)},t=${String(t + 1)},v1=${v1}` }, body, [secret], t))).toBe('signature_invalid');
    expect(code(() => verify('stripe', { 'stripe-signature': `t=${String(t + 1)},v1=${v1}` }, body, [secret], t))).toBe('signature_invalid');
    expect(code(() => verify('stripe', { 'stripe-signature': `t=${String(t)},v1=${v1}` }, body, [secret], t + 301))).toBe('signature_expired');
    expect(code(() => verify('stripe', { 'stripe-signature': `t=${String(t)},v1=${v1}` }, body, [secret], t + 61, 60))).toBe('signature_expired');
    expect(code(() => verify('stripe', {}, body, [secret], t))).toBe('signature_missing');
    expect(code(() => verify('stripe', { 'stripe-signature': 'garbage' }, body, [secret], t))).toBe('signature_invalid');
  });
});

describe('Standard Webhooks', () => {
  interface Vector { secret: string; id: string; timestamp: number; payload: string; signature: string }
  const vectors = (JSON.parse(readFileSync(new URL('../../test/vectors/standard-webhooks.json', import.meta.url), 'utf8')) as { symmetric: Vector[] }).symmetric;

  it.each(vectors)('accepts the published vector $id', (v) => {
    const headers = { 'webhook-id': v.id, 'webhook-timestamp': String(v.timestamp), 'webhook-signature': v.signature };
    expect(verify('standard-webhooks', headers, v.payload, [v.secret], v.timestamp)).toMatchObject({ timestamp: v.timestamp, messageId: v.id });
    expect(code(() => verify('standard-webhooks', { ...headers, 'webhook-id': `${v.id}x` }, v.payload, [v.secret], v.timestamp))).toBe('signature_invalid');
  });

  it('accepts what the official library signs, among several signatures and versions, under the svix- names too', () => {
    const secret = `whsec_${randomBytes(32).toString('base64')}`;
    const body = JSON.stringify({ type: 'user.created', data: { name: 'Zoë' } });
    const when = new Date('2025-01-01T00:00:00Z');
    const now = when.getTime() / 1000;
    const signature = new Webhook(secret).sign('msg_1', when, body);
    const other = new Webhook(`whsec_${randomBytes(32).toString('base64')}`).sign('msg_1', when, body);
    const headers = { 'webhook-id': 'msg_1', 'webhook-timestamp': String(now), 'webhook-signature': `v1a,AAAA ${other} ${signature}` };
    expect(verify('standard-webhooks', headers, body, [secret], now).messageId).toBe('msg_1');
    expect(verify('standard-webhooks', { 'svix-id': 'msg_1', 'svix-timestamp': String(now), 'svix-signature': signature }, body, [secret], now).messageId).toBe('msg_1');
    // A secret in overlap after a rotation verifies as well as the current one.
    expect(verify('standard-webhooks', headers, body, [`whsec_${randomBytes(32).toString('base64')}`, secret], now).messageId).toBe('msg_1');
    expect(code(() => verify('standard-webhooks', { ...headers, 'webhook-signature': other }, body, [secret], now))).toBe('signature_invalid');
    expect(code(() => verify('standard-webhooks', headers, body, [secret], now + 301))).toBe('signature_expired');
    expect(code(() => verify('standard-webhooks', { 'webhook-id': 'msg_1', 'webhook-signature': signature }, body, [secret], now))).toBe('signature_missing');
  });
});

describe('generic HMAC', () => {
  const secret = 'generic-secret-0123456789';
  const body = '{"hello":"world"}';

  it('verifies the configured header, algorithm, encoding and prefix', () => {
    const options: HmacOptions = { header: 'x-sig', algorithm: 'sha512', encoding: 'base64', prefix: 'sha512=' };
    const signature = createHmac('sha512', secret).update(body).digest('base64');
    expect(verify('hmac', { 'x-sig': `sha512=${signature}` }, body, [secret], 0, 0, options).timestamp).toBeNull();
    expect(code(() => verify('hmac', { 'x-sig': signature }, body, [secret], 0, 0, options))).toBe('signature_invalid');
    expect(code(() => verify('hmac', { 'x-sig': `sha512=${createHmac('sha256', secret).update(body).digest('base64')}` }, body, [secret], 0, 0, options))).toBe('signature_invalid');
    expect(code(() => verify('hmac', {}, body, [secret], 0, 0, options))).toBe('signature_missing');
    const hexOptions: HmacOptions = { header: 'x-sig', algorithm: 'sha256', encoding: 'hex', prefix: '' };
    expect(verify('hmac', { 'x-sig': hex('sha256', secret, body) }, body, [secret], 0, 0, hexOptions).timestamp).toBeNull();
  });

  it('accepts exactly the correctly signed bodies (property)', () => {
    const options: HmacOptions = { header: 'x-sig', algorithm: 'sha256', encoding: 'hex', prefix: '' };
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.string({ minLength: 16, maxLength: 40 }), fc.nat(199), (bytes, key, at) => {
        const raw = Buffer.from(bytes);
        const signature = createHmac('sha256', key).update(raw).digest('hex');
        expect(code(() => verify('hmac', { 'x-sig': signature }, raw, [key], 0, 0, options))).toBe('accepted');
        if (raw.length > 0) {
          const tampered = Buffer.from(raw);
          tampered[at % raw.length] = (tampered[at % raw.length] ?? 0) ^ 1;
          expect(code(() => verify('hmac', { 'x-sig': signature }, tampered, [key], 0, 0, options))).toBe('signature_invalid');
        }
      }),
    );
  });
});

describe('strict decoding and secrets', () => {
  it('decodes only well-formed hex and base64 (Buffer.from would silently truncate)', () => {
    expect(decodeHex('0aFF')).toEqual(Buffer.from([0x0a, 0xff]));
    for (const bad of ['0', 'zz', '0a f', '']) expect(decodeHex(bad), bad).toBeUndefined();
    expect(decodeBase64('AAEC')).toEqual(Buffer.from([0, 1, 2]));
    for (const bad of ['AAE', 'AA=C', 'A-_B', '']) expect(decodeBase64(bad), bad).toBeUndefined();
  });

  it('refuses secrets that could never verify for their scheme', () => {
    expect(secretProblems('standard-webhooks', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')).toEqual([]);
    expect(secretProblems('standard-webhooks', `whsec_${Buffer.alloc(8).toString('base64')}`)).toHaveLength(1);
    expect(secretProblems('standard-webhooks', randomBytes(32).toString('hex'))).toHaveLength(1);
    expect(secretProblems('stripe', randomBytes(16).toString('hex'))).toHaveLength(1);
    expect(secretProblems('slack', 'short')).toHaveLength(1);
    expect(secretProblems('github', 'has a space in it, sadly')).toHaveLength(1);
  });
});
