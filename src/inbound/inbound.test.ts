/**
 * The public endpoint end to end, on both engines: every scheme accepted when correctly signed
 * (signatures built independently, Standard Webhooks by the official library), routed by a rule to
 * a delivery; refused for a wrong secret, a changed body, missing headers, an old timestamp and a
 * replay — with nothing stored and every refusal counted.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import type { Scheme } from './schemes/index.js';
import { acmeHmac, signers } from './testing.js';

interface Case {
  readonly scheme: Scheme;
  readonly create: Record<string, unknown>;
  readonly body: () => string;
  readonly contentType: string;
  readonly type: string;
}

const stripeSecret = `whsec_${randomBytes(24).toString('hex')}`;
const slackSecret = randomBytes(16).toString('hex');
const cases: Case[] = [
  { scheme: 'standard-webhooks', create: {}, body: () => JSON.stringify({ type: 'user.created', data: { id: randomBytes(4).toString('hex'), name: 'Zoë' } }), contentType: 'application/json', type: 'webhook.user.created' },
  { scheme: 'github', create: {}, body: () => JSON.stringify({ ref: 'refs/heads/main', after: randomBytes(20).toString('hex') }), contentType: 'application/json', type: 'github.push' },
  { scheme: 'stripe', create: { secret: stripeSecret }, body: () => JSON.stringify({ id: `evt_${randomBytes(8).toString('hex')}`, type: 'invoice.paid', data: { object: { amount_paid: 1200 } } }), contentType: 'application/json; charset=utf-8', type: 'stripe.invoice.paid' },
  { scheme: 'slack', create: { secret: slackSecret }, body: () => JSON.stringify({ type: 'event_callback', event_id: `Ev${randomBytes(6).toString('hex')}`, event: { type: 'app_mention', text: 'hi' } }), contentType: 'application/json', type: 'slack.app_mention' },
  { scheme: 'hmac', create: { hmac: acmeHmac, eventType: 'acme.order.{body:status}' }, body: () => JSON.stringify({ status: 'paid', order: randomBytes(4).toString('hex') }), contentType: 'application/json', type: 'acme.order.paid' },
];
const timed = new Set<Scheme>(['standard-webhooks', 'stripe', 'slack']);

describe.each(backends)('inbound webhooks on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startTestApp(backend, { config: { egressAllowCidrs: ['127.0.0.1/32'], publicUrl: 'https://hooks.example.test' } });
    });
    afterAll(async () => t.close());

    const call = (key: string, method: 'GET' | 'POST' | 'DELETE', url: string, json?: unknown) => t.request({ method, url, token: key, ...(json === undefined ? {} : { json }) });
    const hook = (id: string, body: string | Buffer, headers: Record<string, string>) => t.request({ method: 'POST', url: `/hooks/${id}`, payload: body, headers });
    const count = async (table: string, workspaceId: string) => (await t.database.db.owner.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table} WHERE workspace_id = $1`, [workspaceId])).rows[0]?.n;
    const stored = async (workspaceId: string) => ({ events: await count('events', workspaceId), deliveries: await count('deliveries', workspaceId), replays: await count('inbound_replays', workspaceId), idempotency: await count('event_idempotency', workspaceId) });
    const sample = async (prefix: string) => {
      const text = (await t.admin('GET', '/metrics')).body;
      const line = text.split('\n').find((l) => l.startsWith(prefix));
      return line === undefined ? 0 : Number(line.split(' ').at(-1));
    };
    const metric = (scheme: string, reason: string) => sample(`bulkhead_inbound_rejected_total{scheme="${scheme}",reason="${reason}"}`);

    async function setup(c: Case, extra: Record<string, unknown> = {}) {
      const w = await t.workspaceWithKey(['*']);
      const destination = (await call(w.key, 'POST', '/v1/destinations', { url: 'http://127.0.0.1:9/receiver' })).json<{ id: string }>().id;
      expect((await call(w.key, 'POST', '/v1/rules', { name: 'inbound', eventTypes: ['*'], destinationIds: [destination] })).statusCode).toBe(201);
      const created = await call(w.key, 'POST', '/v1/inbound-sources', { name: `${c.scheme} source`, scheme: c.scheme, ...c.create, ...extra });
      expect(created.statusCode, created.body).toBe(201);
      const source = created.json<{ id: string; secret?: string; url: string }>();
      const secret = source.secret ?? (c.create['secret'] as string);
      const send = (body: string, headers: Record<string, string>) => hook(source.id, body, { 'content-type': c.contentType, ...headers });
      const sign = (body: string, at = t.clock.now(), options?: { id?: string }) => signers[c.scheme](secret, body, at, options);
      return { ...w, destination, source, secret, send, sign };
    }

    describe.each(cases)('$scheme', (c) => {
      it('turns a correctly signed request into an event of the configured type, routed by a rule to a delivery', async () => {
        const s = await setup(c);
        expect(s.source.url).toBe(`https://hooks.example.test/hooks/${s.source.id}`);
        const body = c.body();
        const acceptedBefore = await sample(`bulkhead_inbound_accepted_total{scheme="${c.scheme}"}`);
        const accepted = await s.send(body, s.sign(body));
        expect(accepted.statusCode, accepted.body).toBe(202);
        expect(await sample(`bulkhead_inbound_accepted_total{scheme="${c.scheme}"}`)).toBe(acceptedBefore + 1);
        expect(accepted.json()).toMatchObject({ duplicate: false });
        const eventId = accepted.json<{ eventId: string }>().eventId;
        const event = (await call(s.key, 'GET', `/v1/events/${eventId}`)).json<{ type: string; resource: string; resourceId: string; payload: unknown; deliveries: { destinationId: string; status: string }[] }>();
        expect(event).toMatchObject({ type: c.type, resource: 'inbound_source', resourceId: s.source.id, payload: JSON.parse(body) as unknown });
        expect(event.deliveries).toEqual([expect.objectContaining({ destinationId: s.destination, status: 'pending' })]);
        const view = (await call(s.key, 'GET', `/v1/inbound-sources/${s.source.id}`)).json<{ receivedCount: number; rejectedCount: number; lastReceivedAt: string | null }>();
        expect(view).toMatchObject({ receivedCount: 1, rejectedCount: 0 });
        expect(view.lastReceivedAt).not.toBeNull();
      });

      it('refuses a wrong secret, a changed body, missing headers, an old timestamp and a replay; stores nothing and counts each', async () => {
        const s = await setup(c);
        const body = c.body();
        const before = { invalid: await metric(c.scheme, 'signature_invalid'), missing: await metric(c.scheme, 'signature_missing') };
        const stranger = c.scheme === 'standard-webhooks' ? `whsec_${randomBytes(32).toString('base64')}` : c.scheme === 'stripe' ? `whsec_${randomBytes(24).toString('hex')}` : randomBytes(24).toString('hex');
        const refusals: [string, Record<string, string>, string, number, string][] = [
          ['wrong secret', signers[c.scheme](stranger, body, t.clock.now()), body, 401, 'signature_invalid'],
          ['changed body', s.sign(body), body.replace('}', ',"extra":1}'), 401, 'signature_invalid'],
          ['no signature headers', {}, body, 401, 'signature_missing'],
        ];
        if (timed.has(c.scheme)) refusals.push(['old timestamp', s.sign(body, new Date(t.clock.now().getTime() - 310_000)), body, 401, 'signature_expired'], ['future timestamp', s.sign(body, new Date(t.clock.now().getTime() + 310_000)), body, 401, 'signature_expired']);
        for (const [what, headers, sent, status, code] of refusals) {
          const refused = await s.send(sent, headers);
          expect(refused.statusCode, what).toBe(status);
          expect(refused.headers['content-type'], what).toMatch(/^application\/problem\+json/);
          expect(refused.json(), what).toMatchObject({ code });
          expect(refused.body, what).not.toContain(s.secret);
        }
        expect(await stored(s.workspaceId)).toEqual({ events: 0, deliveries: 0, replays: 0, idempotency: 0 });

        const headers = s.sign(body);
        expect((await s.send(body, headers)).statusCode).toBe(202);
        const replay = await s.send(body, headers);
        expect(replay.statusCode).toBe(409);
        expect(replay.json()).toMatchObject({ code: 'signature_replayed' });
        expect(await stored(s.workspaceId)).toMatchObject({ events: 1, deliveries: 1, replays: 1 });

        const view = (await call(s.key, 'GET', `/v1/inbound-sources/${s.source.id}`)).json<{ receivedCount: number; rejectedCount: number; lastRejectedReason: string }>();
        expect(view).toMatchObject({ receivedCount: 1, rejectedCount: refusals.length + 1, lastRejectedReason: 'signature_replayed' });
        expect(await metric(c.scheme, 'signature_invalid')).toBe(before.invalid + 2);
        expect(await metric(c.scheme, 'signature_missing')).toBe(before.missing + 1);
      });
    });

    it('answers a provider retry of the same message (new timestamp, same id) with the original event, and a replay of identical bytes with 409', async () => {
      for (const c of cases.filter((x) => x.scheme === 'standard-webhooks' || x.scheme === 'stripe')) {
        const s = await setup(c);
        const body = c.body();
        const first = await s.send(body, s.sign(body, t.clock.now(), { id: 'msg_retry_1' }));
        expect(first.statusCode).toBe(202);
        t.clock.advance(60_000);
        const retry = await s.send(body, s.sign(body, t.clock.now(), { id: 'msg_retry_1' }));
        expect(retry.statusCode, retry.body).toBe(202);
        expect(retry.json()).toEqual({ eventId: first.json<{ eventId: string }>().eventId, duplicate: true });
        expect(await stored(s.workspaceId)).toMatchObject({ events: 1, deliveries: 1 });
      }
    });

    it('lets exactly one of several identical concurrent requests through', async () => {
      const s = await setup(cases[0] as Case);
      const body = (cases[0] as Case).body();
      const headers = s.sign(body);
      const answers = await Promise.all(Array.from({ length: 6 }, () => s.send(body, headers)));
      expect(answers.map((a) => a.statusCode).sort()).toEqual([202, 409, 409, 409, 409, 409]);
      expect(await stored(s.workspaceId)).toMatchObject({ events: 1, replays: 1 });
    });

    it('remembers untimed (GitHub) signatures for 72 hours, and timed ones only while their timestamp is valid', async () => {
      const github = await setup(cases[1] as Case);
      const body = (cases[1] as Case).body();
      const headers = github.sign(body);
      expect((await github.send(body, headers)).statusCode).toBe(202);
      t.clock.advance(71 * 3600_000);
      expect((await github.send(body, headers)).json()).toMatchObject({ code: 'signature_replayed' });

      const slack = await setup(cases[3] as Case);
      const slackBody = (cases[3] as Case).body();
      const signed = slack.sign(slackBody);
      expect((await slack.send(slackBody, signed)).statusCode).toBe(202);
      t.clock.advance(301_000);
      expect((await slack.send(slackBody, signed)).json()).toMatchObject({ code: 'signature_expired' });
      // The expired replay record is purged by a later request of the source.
      const fresh = (cases[3] as Case).body();
      expect((await slack.send(fresh, slack.sign(fresh))).statusCode).toBe(202);
      expect(await count('inbound_replays', slack.workspaceId)).toBe(1);
    });

    it('answers Slack\'s url_verification handshake with its challenge and makes no event', async () => {
      const s = await setup(cases[3] as Case);
      const body = JSON.stringify({ token: 'legacy', challenge: '3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P', type: 'url_verification' });
      const answer = await s.send(body, s.sign(body));
      expect(answer.statusCode).toBe(200);
      expect(answer.json()).toEqual({ challenge: '3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P' });
      expect(await count('events', s.workspaceId)).toBe(0);
      const unsigned = await s.send(body, {});
      expect(unsigned.statusCode).toBe(401);
    });

    it('keeps non-JSON bodies: form fields as an object, other text as text', async () => {
      const c = cases[4] as Case;
      const s = await setup(c);
      const form = 'status=shipped&item=a&item=b';
      const answer = await hook(s.source.id, form, { 'content-type': 'application/x-www-form-urlencoded', ...s.sign(form) });
      expect(answer.statusCode, answer.body).toBe(202);
      const event = (await call(s.key, 'GET', `/v1/events/${answer.json<{ eventId: string }>().eventId}`)).json<{ type: string; payload: unknown }>();
      expect(event).toMatchObject({ type: 'acme.order.shipped', payload: { status: 'shipped', item: ['a', 'b'] } });
      const text = 'just some text';
      const plain = await hook(s.source.id, text, { 'content-type': 'text/plain', ...s.sign(text) });
      const plainEvent = (await call(s.key, 'GET', `/v1/events/${plain.json<{ eventId: string }>().eventId}`)).json<{ type: string; payload: unknown }>();
      expect(plainEvent).toMatchObject({ type: 'acme.order.unknown', payload: { contentType: 'text/plain', text } });
    });

    it('refuses a body over the workspace payload limit with 413 before verifying, and counts it', async () => {
      const s = await setup(cases[1] as Case);
      await t.admin('PATCH', `/v1/tenants/${s.tenantId}`, { limits: { eventPayloadBytes: 1024 } });
      const big = JSON.stringify({ blob: 'x'.repeat(2000) });
      const refused = await s.send(big, s.sign(big));
      expect(refused.statusCode).toBe(413);
      expect(refused.json()).toMatchObject({ code: 'payload_too_large' });
      const huge = 'y'.repeat(1_100_000);
      expect((await s.send(huge, s.sign(huge))).statusCode).toBe(413);
      const small = (cases[1] as Case).body();
      expect((await s.send(small, s.sign(small))).statusCode).toBe(202);
      expect(await count('events', s.workspaceId)).toBe(1);
      const view = (await call(s.key, 'GET', `/v1/inbound-sources/${s.source.id}`)).json<{ rejectedCount: number; lastRejectedReason: string }>();
      expect(view).toMatchObject({ rejectedCount: 2, lastRejectedReason: 'payload_too_large' });
    });

    it('rate-limits each source before reading the body, without counting those refusals on the source', async () => {
      const s = await setup(cases[1] as Case, { rateLimitPerMinute: 2 });
      const body = (cases[1] as Case).body();
      expect((await s.send(body, s.sign(body))).statusCode).toBe(202);
      expect((await s.send(body, {})).statusCode).toBe(401);
      const limited = await s.send(body, s.sign(body));
      expect(limited.statusCode).toBe(429);
      expect(limited.json()).toMatchObject({ code: 'rate_limited' });
      expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
      expect((await call(s.key, 'GET', `/v1/inbound-sources/${s.source.id}`)).json()).toMatchObject({ receivedCount: 1, rejectedCount: 1 });
    });

    it('answers 404 alike for a malformed, unknown or deleted source id, and counts none on any source', async () => {
      const s = await setup(cases[1] as Case);
      const body = (cases[1] as Case).body();
      expect((await call(s.key, 'DELETE', `/v1/inbound-sources/${s.source.id}`)).statusCode).toBe(204);
      const ids = [s.source.id, 'inb_00000000000000000000000000', 'inb_x', 'not-an-id', `${s.source.id}0`, 'dst_01jq0000000000000000000000'];
      const answers = await Promise.all(ids.map((id) => hook(id, body, { 'content-type': 'application/json', ...s.sign(body) })));
      for (const answer of answers) {
        expect(answer.statusCode).toBe(404);
        const { requestId: _requestId, ...problem } = answer.json<Record<string, unknown>>();
        expect(problem).toEqual({ type: 'urn:bulkhead:error:not_found', title: 'Not found', status: 404, code: 'not_found', detail: 'inbound source not found' });
      }
      expect(await stored(s.workspaceId)).toEqual({ events: 0, deliveries: 0, replays: 0, idempotency: 0 });
      expect(await metric('none', 'unknown_source')).toBeGreaterThanOrEqual(ids.length);
    });

    it('stops accepting a quota-exhausted workspace\'s webhooks with 429 and stores nothing', async () => {
      const s = await setup(cases[1] as Case);
      await t.admin('PATCH', `/v1/tenants/${s.tenantId}`, { limits: { eventsPerMonth: 1 } });
      const one = (cases[1] as Case).body();
      expect((await s.send(one, s.sign(one))).statusCode).toBe(202);
      const two = (cases[1] as Case).body();
      const refused = await s.send(two, s.sign(two));
      expect(refused.statusCode).toBe(429);
      expect(refused.json()).toMatchObject({ code: 'quota_exceeded' });
      expect(await stored(s.workspaceId)).toMatchObject({ events: 1, replays: 1 });
      expect((await call(s.key, 'GET', `/v1/inbound-sources/${s.source.id}`)).json()).toMatchObject({ receivedCount: 1, rejectedCount: 1, lastRejectedReason: 'quota_exceeded' });
    });
  });
});
