import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { Webhook as StandardWebhook } from 'standardwebhooks';
import { Webhook as SvixWebhook } from 'svix';
import { describe, expect, it } from 'vitest';
import { sign, signedHeaders } from './signing.js';

interface Vector { secret: string; id: string; timestamp: number; payload: string; signature: string }
const vectors = (JSON.parse(readFileSync(new URL('../../test/vectors/standard-webhooks.json', import.meta.url), 'utf8')) as { symmetric: Vector[] }).symmetric;

describe('Standard Webhooks signing', () => {
  it.each(vectors)('reproduces the published vector for $id', (v) => {
    expect(sign(v.secret, v.id, v.timestamp, v.payload)).toBe(v.signature);
  });

  it('verifies with the official standardwebhooks and svix verifiers, with one or two secrets', () => {
    const oldSecret = `whsec_${randomBytes(32).toString('base64')}`;
    const newSecret = `whsec_${randomBytes(24).toString('base64')}`;
    const body = JSON.stringify({ type: 'invoice.paid', data: { amount: 1200, note: 'ü ✓' } });
    const now = Math.floor(Date.now() / 1000);
    const headers = signedHeaders([newSecret, oldSecret], 'dlv_01test', now, body);
    expect(headers['webhook-signature'].split(' ')).toHaveLength(2);
    for (const secret of [newSecret, oldSecret]) {
      expect(new StandardWebhook(secret).verify(body, { ...headers })).toEqual(JSON.parse(body));
      expect(new SvixWebhook(secret).verify(body, { 'svix-id': headers['webhook-id'], 'svix-timestamp': headers['webhook-timestamp'], 'svix-signature': headers['webhook-signature'] })).toEqual(JSON.parse(body));
    }
    const stranger = `whsec_${randomBytes(32).toString('base64')}`;
    expect(() => new StandardWebhook(stranger).verify(body, { ...headers })).toThrow();
    expect(() => new StandardWebhook(newSecret).verify(`${body} `, { ...headers })).toThrow();
  });
});
