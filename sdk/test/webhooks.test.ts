/**
 * verifyWebhook against the published Standard Webhooks vectors (copied into the repository),
 * against the reference verifier (`standardwebhooks`), and against a real delivery the engine
 * made to a real receiver.
 */
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../../src/testing/app.js';
import { backends } from '../../src/testing/databases.js';
import { startReceiver } from '../../src/testing/receiver.js';
import { Bulkhead, verifyWebhook, WebhookVerificationError } from '../src/index.js';
import vectors from './standard-webhooks-vectors.json' with { type: 'json' };

const headersOf = (v: { id: string; timestamp: number; signature: string }) => ({ 'webhook-id': v.id, 'webhook-timestamp': String(v.timestamp), 'webhook-signature': v.signature });
const at = (seconds: number) => () => new Date(seconds * 1000);

async function reason(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'accepted';
  } catch (error) {
    if (error instanceof WebhookVerificationError) return error.reason;
    throw error;
  }
}

describe('verifyWebhook with the published test vectors', () => {
  it.each(vectors.symmetric)('accepts vector $id, as the reference verifier does', async (v) => {
    expect(await verifyWebhook(v.secret, headersOf(v), v.payload, { now: at(v.timestamp) })).toEqual(JSON.parse(v.payload));
    expect(await verifyWebhook(v.secret, new Headers(headersOf(v)), new TextEncoder().encode(v.payload), { now: at(v.timestamp) })).toEqual(JSON.parse(v.payload));
    // Cross-checked with the reference library at the current time (it checks against the real clock).
    const now = Math.floor(Date.now() / 1000);
    const fresh = { ...v, timestamp: now, signature: new Webhook(v.secret).sign(v.id, new Date(now * 1000), v.payload) };
    expect(await verifyWebhook(v.secret, headersOf(fresh), v.payload)).toEqual(new Webhook(v.secret).verify(v.payload, headersOf(fresh)));
    expect(new Webhook(v.secret).sign(v.id, new Date(v.timestamp * 1000), v.payload)).toBe(v.signature);
  });

  it.each(vectors.symmetric)('refuses vector $id tampered, stale, unsigned or with the wrong secret', async (v) => {
    const now = at(v.timestamp);
    expect(await reason(verifyWebhook(v.secret, headersOf(v), `${v.payload} `, { now }))).toBe('signature_invalid');
    expect(await reason(verifyWebhook(v.secret, { ...headersOf(v), 'webhook-id': `${v.id}x` }, v.payload, { now }))).toBe('signature_invalid');
    expect(await reason(verifyWebhook(v.secret, { ...headersOf(v), 'webhook-timestamp': String(v.timestamp + 1) }, v.payload, { now }))).toBe('signature_invalid');
    expect(await reason(verifyWebhook(v.secret, headersOf(v), v.payload, { now: at(v.timestamp + 301) }))).toBe('timestamp_out_of_tolerance');
    expect(await reason(verifyWebhook(v.secret, headersOf(v), v.payload, { now: at(v.timestamp - 301) }))).toBe('timestamp_out_of_tolerance');
    expect(await reason(verifyWebhook(v.secret, headersOf(v), v.payload, { now: at(v.timestamp + 301), toleranceSeconds: 400 }))).toBe('accepted');
    expect(await reason(verifyWebhook(v.secret, { 'webhook-id': v.id, 'webhook-timestamp': String(v.timestamp) }, v.payload, { now }))).toBe('missing_headers');
    expect(await reason(verifyWebhook('whsec_c2VjcmV0LW90aGVy', headersOf(v), v.payload, { now }))).toBe('signature_invalid');
    expect(await reason(verifyWebhook('whsec_not base64!', headersOf(v), v.payload, { now }))).toBe('invalid_secret');
    // One of several entries matching is enough (a rotation overlap); a v1a entry is not a v1 one.
    expect(await reason(verifyWebhook(v.secret, { ...headersOf(v), 'webhook-signature': `v1,AAAA ${v.signature}` }, v.payload, { now }))).toBe('accepted');
    expect(await reason(verifyWebhook(v.secret, { ...headersOf(v), 'webhook-signature': v.signature.replace('v1,', 'v1a,') }, v.payload, { now }))).toBe('signature_invalid');
  });
});

const pglite = backends.filter((b) => b.name === 'pglite');
describe.each(pglite)('verifyWebhook with a real delivery on $name', (backend) => {
  let t: TestApp;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let bulkhead: Bulkhead;
  beforeAll(async () => {
    receiver = await startReceiver();
    t = await startTestApp(backend, { config: { egressAllowCidrs: ['127.0.0.1/32'] } });
    const base = await t.app.http.listen({ host: '127.0.0.1', port: 0 });
    bulkhead = new Bulkhead({ baseUrl: base, token: (await t.workspaceWithKey(['*'])).key });
  });
  afterAll(async () => {
    await t.close();
    await receiver.close();
  });

  it('accepts what the engine sent to the receiver, with the destination secret, before and after a rotation; refuses it altered', async () => {
    const destination = await bulkhead.destinations.create({ body: { url: `${receiver.url}/sdk/ok` } });
    await bulkhead.rules.create({ body: { name: 'all', eventTypes: ['*'], destinationIds: [destination.id] } });
    await bulkhead.events.create({ body: { type: 'invoice.paid', payload: { amount: 42, note: 'ü' } } });
    expect(await t.app.engine.runOnce()).toBeGreaterThanOrEqual(1);
    const [delivered] = receiver.received.filter((r) => r.path === '/sdk/ok');
    if (delivered === undefined) throw new Error('nothing delivered');
    const event = await verifyWebhook<{ amount: number }>(destination.secret, delivered.headers, delivered.body);
    expect(event).toMatchObject({ type: 'invoice.paid', data: { amount: 42, note: 'ü' } });
    // The reference verifier agrees on the same delivery.
    const h = delivered.headers;
    expect(new Webhook(destination.secret).verify(delivered.body, { 'webhook-id': String(h['webhook-id']), 'webhook-timestamp': String(h['webhook-timestamp']), 'webhook-signature': String(h['webhook-signature']) })).toEqual(event);
    expect(await reason(verifyWebhook(destination.secret, delivered.headers, delivered.body.replace('42', '43')))).toBe('signature_invalid');

    // During a rotation the engine signs with both secrets: the new one verifies the next delivery.
    const rotated = await bulkhead.destinations.rotateSecret({ id: destination.id, body: {} });
    await bulkhead.events.create({ body: { type: 'invoice.paid', payload: { amount: 7 } } });
    await t.app.engine.runOnce();
    const second = receiver.received.filter((r) => r.path === '/sdk/ok')[1];
    if (second === undefined) throw new Error('second delivery missing');
    expect(await verifyWebhook(rotated.secret, second.headers, second.body)).toMatchObject({ data: { amount: 7 } });
    expect(await verifyWebhook(destination.secret, second.headers, second.body)).toMatchObject({ data: { amount: 7 } });
  });
});
