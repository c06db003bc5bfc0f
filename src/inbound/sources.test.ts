/**
 * The inbound-sources API on both engines: secrets shown once and sealed, strict validation with
 * problem+json, another workspace's key sees 404, rotation with an overlap, the per-workspace
 * limit, and re-sealing after a workspace-key rotation.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkIsolationInvariants } from '../db/invariants.js';
import { startTestApp, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import { sealedKeyVersion } from '../vault/envelope.js';
import { MAX_SOURCES_PER_WORKSPACE } from './sources.js';
import { acmeHmac, signers } from './testing.js';

describe.each(backends)('inbound sources API on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startTestApp(backend, { config: { keyRingCacheTtlMs: 0 } });
    });
    afterAll(async () => t.close());

    const call = (key: string, method: 'GET' | 'POST' | 'DELETE', url: string, json?: unknown) => t.request({ method, url, token: key, ...(json === undefined ? {} : { json }) });
    const create = (key: string, body: Record<string, unknown>) => call(key, 'POST', '/v1/inbound-sources', body);
    const push = (id: string, secret: string) => {
      const body = JSON.stringify({ ref: 'refs/heads/main', n: randomBytes(8).toString('hex') });
      return t.request({ method: 'POST', url: `/hooks/${id}`, payload: body, headers: { 'content-type': 'application/json', ...signers.github(secret, body, t.clock.now()) } });
    };

    it('the new tables keep every isolation invariant', async () => {
      const violations = await checkIsolationInvariants(t.database.db.owner);
      expect(violations.filter((v) => v.object.startsWith('inbound_'))).toEqual([]);
    });

    it('generates a secret where the sender lets the receiver choose, shows it once, and seals it at rest', async () => {
      const { key, workspaceId } = await t.workspaceWithKey(['inbound:write']);
      const sw = await create(key, { name: 'svix', scheme: 'standard-webhooks' });
      expect(sw.statusCode, sw.body).toBe(201);
      expect(sw.headers['cache-control']).toBe('no-store');
      const source = sw.json<{ id: string; secret: string; url: string; eventType: string; toleranceSeconds: number; hmac: null }>();
      expect(source.id).toMatch(/^inb_[0-9a-z]{26}$/);
      expect(source.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
      expect(source).toMatchObject({ eventType: 'webhook.{body:type}', toleranceSeconds: 300, hmac: null, url: expect.stringMatching(new RegExp(`^https?://[^/]+/hooks/${source.id}$`)) as unknown });
      const github = (await create(key, { name: 'gh', scheme: 'github' })).json<{ secret: string; toleranceSeconds: null; eventType: string }>();
      expect(github).toMatchObject({ toleranceSeconds: null, eventType: 'github.{header:x-github-event}' });
      expect(github.secret.length).toBeGreaterThanOrEqual(43);
      const generic = (await create(key, { name: 'acme', scheme: 'hmac', hmac: acmeHmac })).json<{ secret: string; hmac: unknown }>();
      expect(generic.hmac).toEqual({ header: 'x-acme-signature', algorithm: 'sha256', encoding: 'base64', prefix: 'sha256=' });
      expect(generic.secret.length).toBeGreaterThanOrEqual(43);

      const stripeSecret = `whsec_${randomBytes(24).toString('hex')}`;
      const stripe = await create(key, { name: 'stripe', scheme: 'stripe', secret: stripeSecret, toleranceSeconds: 600 });
      expect(stripe.statusCode).toBe(201);
      expect(stripe.json()).not.toHaveProperty('secret');
      expect(stripe.json()).toMatchObject({ toleranceSeconds: 600 });

      const reader = await call(key, 'GET', '/v1/inbound-sources');
      expect(reader.json<{ data: unknown[] }>().data).toHaveLength(4);
      for (const secret of [source.secret, github.secret, generic.secret, stripeSecret]) {
        expect(reader.body).not.toContain(secret);
        expect((await call(key, 'GET', `/v1/inbound-sources/${source.id}`)).body).not.toContain(secret);
      }
      const { rows } = await t.database.db.owner.query<{ secret: Uint8Array }>('SELECT secret FROM inbound_source_secrets WHERE workspace_id = $1', [workspaceId]);
      expect(rows).toHaveLength(4);
      const raw = rows.map((r) => Buffer.from(r.secret).toString('latin1')).join('');
      for (const secret of [source.secret.slice(6, 30), github.secret.slice(0, 24), stripeSecret.slice(6, 30)]) expect(raw).not.toContain(secret);
      // Creation is audited without the secret.
      const audit = await call(key, 'GET', '/v1/audit-log');
      expect(audit.body).not.toContain(stripeSecret);
    });

    it('refuses malformed or inconsistent requests with problem+json, listing every problem', async () => {
      const { key } = await t.workspaceWithKey(['*']);
      const bad: [unknown, string][] = [
        [{ scheme: 'github' }, 'validation_failed'],
        [{ name: 'x', scheme: 'gitlab' }, 'validation_failed'],
        [{ name: 'x', scheme: 'github', colour: 'red' }, 'validation_failed'],
        [{ name: 'x', scheme: 'github', toleranceSeconds: 5 }, 'validation_failed'],
        [{ name: 'x', scheme: 'github', secret: 'short' }, 'validation_failed'],
        [{ name: 'x', scheme: 'hmac', hmac: { header: 'x-sig', algorithm: 'md5' } }, 'validation_failed'],
        [{ name: 'x', scheme: 'github', rateLimitPerMinute: 0 }, 'validation_failed'],
      ];
      for (const [body, code] of bad) {
        const refused = await create(key, body as Record<string, unknown>);
        expect(refused.statusCode, JSON.stringify(body)).toBe(400);
        expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
        expect(refused.json(), JSON.stringify(body)).toMatchObject({ code });
      }
      const inconsistent = await create(key, { name: 'x', scheme: 'stripe', toleranceSeconds: 60, hmac: { header: 'x-sig' }, eventType: '{body:type}' });
      expect(inconsistent.json()).toMatchObject({ code: 'validation_failed' });
      expect(inconsistent.json<{ problems: string[] }>().problems).toHaveLength(3);
      expect((await create(key, { name: 'x', scheme: 'github', toleranceSeconds: 60, eventType: 'bulkhead.fake' })).json<{ problems: string[] }>().problems).toHaveLength(2);
      expect((await create(key, { name: 'x', scheme: 'hmac' })).json()).toMatchObject({ code: 'validation_failed' });
      expect((await create(key, { name: 'x', scheme: 'standard-webhooks', secret: 'whsec_dG9vc2hvcnQ=' })).json()).toMatchObject({ code: 'validation_failed' });
      const notJson = await t.request({ method: 'POST', url: '/v1/inbound-sources', token: key, payload: '{"name":', headers: { 'content-type': 'application/json' } });
      expect(notJson.statusCode).toBe(400);
      expect(notJson.json()).toMatchObject({ code: 'malformed_json' });
      expect((await create(key, { name: 'same', scheme: 'github' })).statusCode).toBe(201);
      expect((await create(key, { name: 'same', scheme: 'github' })).json()).toMatchObject({ code: 'name_taken' });
      expect((await call(key, 'GET', '/v1/inbound-sources?cursor=bm9wZQ')).json()).toMatchObject({ code: 'invalid_cursor' });
    });

    it("another workspace's key cannot read, rotate or delete a source (404), and scopes are enforced", async () => {
      const a = await t.workspaceWithKey(['*']);
      const b = await t.workspaceWithKey(['*']);
      const id = (await create(a.key, { name: 'mine', scheme: 'github' })).json<{ id: string }>().id;
      for (const [method, url] of [['GET', `/v1/inbound-sources/${id}`], ['DELETE', `/v1/inbound-sources/${id}`], ['POST', `/v1/inbound-sources/${id}/rotate-secret`]] as const) {
        const answer = await call(b.key, method, url, method === 'POST' ? {} : undefined);
        expect(answer.statusCode, `${method} ${url}`).toBe(404);
        expect(answer.json()).toMatchObject({ code: 'not_found' });
      }
      expect((await call(b.key, 'GET', '/v1/inbound-sources')).json()).toEqual({ data: [], nextCursor: null });
      expect((await call(a.key, 'GET', `/v1/inbound-sources/${id}`)).statusCode).toBe(200);

      const reader = await t.admin('POST', `/v1/workspaces/${a.workspaceId}/api-keys`, { name: 'reader', scopes: ['inbound:read'] });
      const readKey = reader.json<{ key: string }>().key;
      expect((await call(readKey, 'GET', `/v1/inbound-sources/${id}`)).statusCode).toBe(200);
      expect((await call(readKey, 'DELETE', `/v1/inbound-sources/${id}`)).json()).toMatchObject({ code: 'insufficient_scope' });
      const events = (await t.admin('POST', `/v1/workspaces/${a.workspaceId}/api-keys`, { name: 'events', scopes: ['events:write'] })).json<{ key: string }>().key;
      expect((await call(events, 'GET', '/v1/inbound-sources')).json()).toMatchObject({ code: 'insufficient_scope' });
    });

    it('rotates the secret: the previous one verifies during the overlap only; a pasted-secret scheme needs the new one', async () => {
      const { key } = await t.workspaceWithKey(['*']);
      const source = (await create(key, { name: 'gh', scheme: 'github' })).json<{ id: string; secret: string }>();
      expect((await push(source.id, source.secret)).statusCode).toBe(202);
      const rotated = await call(key, 'POST', `/v1/inbound-sources/${source.id}/rotate-secret`, { overlapSeconds: 3600 });
      expect(rotated.statusCode, rotated.body).toBe(200);
      const next = rotated.json<{ secret: string; previousExpiresAt: string }>();
      expect(next.secret).not.toBe(source.secret);
      expect((await push(source.id, source.secret)).statusCode).toBe(202);
      expect((await push(source.id, next.secret)).statusCode).toBe(202);
      t.clock.advance(3601_000);
      expect((await push(source.id, source.secret)).json()).toMatchObject({ code: 'signature_invalid' });
      expect((await push(source.id, next.secret)).statusCode).toBe(202);
      // Overlap 0: a leaked secret stops verifying at once.
      const now = (await call(key, 'POST', `/v1/inbound-sources/${source.id}/rotate-secret`, { overlapSeconds: 0 })).json<{ secret: string }>();
      expect((await push(source.id, next.secret)).statusCode).toBe(401);
      expect((await push(source.id, now.secret)).statusCode).toBe(202);

      const stripe = (await create(key, { name: 'stripe', scheme: 'stripe', secret: `whsec_${randomBytes(24).toString('hex')}` })).json<{ id: string }>();
      expect((await call(key, 'POST', `/v1/inbound-sources/${stripe.id}/rotate-secret`, {})).json()).toMatchObject({ code: 'validation_failed' });
      const pasted = await call(key, 'POST', `/v1/inbound-sources/${stripe.id}/rotate-secret`, { secret: `whsec_${randomBytes(24).toString('hex')}` });
      expect(pasted.statusCode).toBe(200);
      expect(pasted.json()).not.toHaveProperty('secret');
    });

    it('deleting a source removes its secrets, replay records and counters, and its URL answers 404', async () => {
      const { key, workspaceId } = await t.workspaceWithKey(['*']);
      const source = (await create(key, { name: 'gh', scheme: 'github' })).json<{ id: string; secret: string }>();
      expect((await push(source.id, source.secret)).statusCode).toBe(202);
      expect((await call(key, 'DELETE', `/v1/inbound-sources/${source.id}`)).statusCode).toBe(204);
      for (const table of ['inbound_source_secrets', 'inbound_replays', 'inbound_source_counters']) {
        const { rows } = await t.database.db.owner.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table} WHERE workspace_id = $1`, [workspaceId]);
        expect(rows[0]?.n, table).toBe(0);
      }
      expect((await push(source.id, source.secret)).statusCode).toBe(404);
      expect((await call(key, 'GET', `/v1/inbound-sources/${source.id}`)).statusCode).toBe(404);
      expect((await call(key, 'DELETE', `/v1/inbound-sources/${source.id}`)).statusCode).toBe(404);
    });

    it(`limits a workspace to ${String(MAX_SOURCES_PER_WORKSPACE)} sources`, async () => {
      const { key } = await t.workspaceWithKey(['*']);
      for (let i = 0; i < MAX_SOURCES_PER_WORKSPACE; i++) expect((await create(key, { name: `s${String(i)}`, scheme: 'github' })).statusCode).toBe(201);
      const over = await create(key, { name: 'one too many', scheme: 'github' });
      expect(over.statusCode).toBe(422);
      expect(over.json()).toMatchObject({ code: 'limit_exceeded', limit: MAX_SOURCES_PER_WORKSPACE });
    });

    it('re-seals inbound secrets after a workspace-key rotation, and they still verify', async () => {
      const { key, workspaceId } = await t.workspaceWithKey(['*']);
      const source = (await create(key, { name: 'gh', scheme: 'github' })).json<{ id: string; secret: string }>();
      const core = t.app.core;
      await core.withWorkspace(workspaceId, (tx) => core.vault.rotateWorkspaceKey(tx));
      await core.resealer.resealWorkspace(workspaceId);
      const { rows } = await t.database.db.owner.query<{ secret: Uint8Array }>('SELECT secret FROM inbound_source_secrets WHERE workspace_id = $1', [workspaceId]);
      expect(rows.map((r) => sealedKeyVersion(r.secret))).toEqual([2]);
      expect(await core.resealer.ratchet(workspaceId, 2)).toEqual({ current: 2, min: 2 });
      expect((await push(source.id, source.secret)).statusCode).toBe(202);
    });
  });
});
