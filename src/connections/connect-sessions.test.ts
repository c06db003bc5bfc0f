/**
 * Connect sessions as the platform sees them: refused at creation when a provider cannot be
 * connected, observable (`GET /v1/connect-sessions/{id}`: pending, completed, expired, failed with
 * its reason), sending the end user back to a validated `returnUrl`, branded per tenant, and
 * announced by the `bulkhead.connection.created` / `.failed` operational events.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import { startOAuthServer, type TestOAuthServer } from '../testing/oauth-server.js';
import { startUpstream, type Upstream } from '../testing/upstream.js';

const PUBLIC_URL = 'http://bulkhead.test';
const CALLBACK = `${PUBLIC_URL}/oauth/callback`;

interface SessionView {
  id: string;
  status: string;
  connectionId: string | null;
  provider: string | null;
  failure: { reason: string; detail: string } | null;
  returnUrl: string | null;
}

describe.each(backends)('connect sessions on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    let oauth: TestOAuthServer;
    let upstream: Upstream;
    const idp = `cs-idp-${backend.name}`;
    const keyed = `cs-key-${backend.name}`;

    beforeAll(async () => {
      oauth = await startOAuthServer({ redirectUris: [CALLBACK] });
      upstream = await startUpstream();
      t = await startTestApp(backend, { config: { egressAllowCidrs: ['127.0.0.1/32'], publicUrl: PUBLIC_URL, connectHttpReturnHosts: ['localhost'] } });
      expect((await t.admin('POST', '/v1/providers', { key: idp, name: 'Session IdP', authType: 'oauth2_code', baseUrls: [upstream.url], oauth2: { authorizeUrl: oauth.authorizeUrl, tokenUrl: oauth.tokenUrl, scopes: ['openid', 'offline_access', 'api:read'], clientId: oauth.clientId, clientSecret: oauth.clientSecret } })).statusCode).toBe(201);
      expect((await t.admin('POST', '/v1/providers', { key: keyed, name: 'Session Key API', authType: 'api_key', baseUrls: [upstream.url], apiKey: { in: 'header', name: 'X-Api-Key' } })).statusCode).toBe(201);
    });
    afterAll(async () => {
      await t.close();
      await oauth.close();
      await upstream.close();
    });

    const create = (key: string, json: Record<string, unknown>) => t.request({ method: 'POST', url: '/v1/connect-sessions', token: key, json });
    const created = async (key: string, json: Record<string, unknown>) => {
      const response = await create(key, json);
      expect(response.statusCode, response.body).toBe(201);
      return response.json<{ id: string; token: string; url: string }>();
    };
    const status = async (key: string, id: string) => {
      const response = await t.request({ method: 'GET', url: `/v1/connect-sessions/${id}`, token: key });
      expect(response.statusCode, response.body).toBe(200);
      return response.json<SessionView>();
    };
    const submitKey = (token: string, provider: string, apiKey: string) =>
      t.request({ method: 'POST', url: `/connect/${token}/credentials`, headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: new URLSearchParams({ provider, apiKey }).toString() });
    /** Starts the OAuth flow on the page and returns the signed state the provider would carry back. */
    const startOAuth = async (token: string) => {
      const start = await t.request({ method: 'GET', url: `/connect/${token}/oauth/${idp}` });
      expect(start.statusCode, start.body).toBe(302);
      return new URL(String(start.headers.location)).searchParams.get('state') ?? '';
    };
    const operational = async (key: string) =>
      (await t.request({ method: 'GET', url: '/v1/operational-events', token: key })).json<{ data: { type: string; resourceId: string; payload: Record<string, unknown> }[] }>().data;

    it('refuses a session naming an OAuth provider without an OAuth app: 422 provider_not_configured, naming it', async () => {
      const { key } = await t.workspaceWithKey(['connections:write']);
      const github = await create(key, { allowedProviders: ['github'] });
      expect(github.statusCode, github.body).toBe(422);
      expect(github.json()).toMatchObject({ code: 'provider_not_configured', providers: ['github'] });
      expect(github.json<{ detail: string }>().detail).toContain('github');
      // Mixed: only the unconnectable ones are named; nothing is created.
      const mixed = await create(key, { allowedProviders: ['stripe', 'github', 'slack', idp] });
      expect(mixed.json()).toMatchObject({ code: 'provider_not_configured', providers: ['github', 'slack'] });
      // API-key and basic providers need no OAuth app: they are connected by pasting a key.
      await created(key, { allowedProviders: ['stripe', 'twilio', idp] });
    });

    it('reports pending, then completed with the connection; a created event; another workspace gets 404', async () => {
      const { key } = await t.workspaceWithKey(['connections:write', 'connections:read']);
      const session = await created(key, { allowedProviders: [keyed], connectionName: 'status-check' });
      expect(await status(key, session.id)).toMatchObject({ id: session.id, status: 'pending', connectionId: null, failure: null, returnUrl: null });

      // A mistyped (empty) key can be retried: the session stays pending.
      expect((await submitKey(session.token, keyed, '')).statusCode).toBe(400);
      expect((await status(key, session.id)).status).toBe('pending');

      const done = await submitKey(session.token, keyed, 'sk_status_0123456789');
      expect(done.statusCode, done.body).toBe(200);
      const view = await status(key, session.id);
      expect(view).toMatchObject({ status: 'completed', provider: keyed, failure: null });
      const connection = (await t.request({ method: 'GET', url: '/v1/connections', token: key })).json<{ data: { id: string; name: string }[] }>().data.find((c) => c.name === 'status-check');
      expect(view.connectionId).toBe(connection?.id);
      expect(await operational(key)).toEqual(expect.arrayContaining([expect.objectContaining({ type: 'bulkhead.connection.created', resourceId: view.connectionId, payload: expect.objectContaining({ connectSessionId: session.id, provider: keyed, reauthorized: false }) as unknown })]));

      const other = await t.workspaceWithKey(['connections:write']);
      const foreign = await t.request({ method: 'GET', url: `/v1/connect-sessions/${session.id}`, token: other.key });
      expect(foreign.statusCode).toBe(404);
      expect(foreign.json()).toMatchObject({ code: 'not_found' });
      expect((await t.request({ method: 'GET', url: '/v1/connect-sessions/csn_nope', token: key })).statusCode).toBe(404);
    });

    it('reports expired once the link has lapsed unused', async () => {
      const { key } = await t.workspaceWithKey(['connections:write']);
      const session = await created(key, { allowedProviders: [keyed] });
      t.clock.advance(31 * 60_000);
      expect((await status(key, session.id)).status).toBe('expired');
      expect((await submitKey(session.token, keyed, 'sk_too_late_0123')).statusCode).toBe(410);
      expect((await status(key, session.id)).status).toBe('expired');
    });

    it('fails with the reason: the provider\'s error, a superseded state, a refused code exchange; each raises a failed event', async () => {
      const { key } = await t.workspaceWithKey(['connections:write', 'connections:read']);

      const denied = await created(key, { allowedProviders: [idp] });
      const deniedState = await startOAuth(denied.token);
      const page = await t.request({ method: 'GET', url: `/oauth/callback?error=access_denied&state=${encodeURIComponent(deniedState)}` });
      expect(page.statusCode).toBe(502);
      expect(await status(key, denied.id)).toMatchObject({ status: 'failed', provider: idp, failure: { reason: 'provider_error', detail: expect.stringContaining('access_denied') as string } });

      const superseded = await created(key, { allowedProviders: [idp] });
      const first = await startOAuth(superseded.token);
      await startOAuth(superseded.token);
      expect((await t.request({ method: 'GET', url: `/oauth/callback?code=abc&state=${encodeURIComponent(first)}` })).statusCode).toBe(400);
      expect((await status(key, superseded.id)).failure?.reason).toBe('state_mismatch');

      const refused = await created(key, { allowedProviders: [idp] });
      const state = await startOAuth(refused.token);
      expect((await t.request({ method: 'GET', url: `/oauth/callback?code=not-a-real-code&state=${encodeURIComponent(state)}` })).statusCode).toBe(502);
      expect(await status(key, refused.id)).toMatchObject({ status: 'failed', failure: { reason: 'token_exchange_failed' } });

      // An outcome is final: replaying the callback changes nothing.
      await t.request({ method: 'GET', url: `/oauth/callback?error=x&state=${encodeURIComponent(state)}` });
      expect((await status(key, refused.id)).failure?.reason).toBe('token_exchange_failed');

      const failed = (await operational(key)).filter((e) => e.type === 'bulkhead.connection.failed');
      expect(failed.map((e) => [e.resourceId, e.payload['reason']]).sort()).toEqual([[denied.id, 'provider_error'], [refused.id, 'token_exchange_failed'], [superseded.id, 'state_mismatch']].sort());
    });

    it('validates returnUrl: https, or http on an allow-listed host; no scripts, data, credentials or fragments', async () => {
      const { key } = await t.workspaceWithKey(['connections:write']);
      for (const bad of ['javascript:alert(1)', 'data:text/html,<script>alert(1)</script>', 'http://example.com/back', 'https://user:pw@evil.example/', 'https://good.example@evil.example/', 'https://app.example/back#frag', ' https://app.example/', 'https:\\\\evil.example', 'ftp://app.example/', '/relative', 'https://app.example/\tx', 'http://127.0.0.1/back']) {
        const response = await create(key, { allowedProviders: [keyed], returnUrl: bad });
        expect(response.statusCode, `${bad}: ${response.body}`).toBe(400);
        expect(response.json(), bad).toMatchObject({ code: 'validation_failed', errors: [expect.objectContaining({ pointer: '/returnUrl' })] });
      }
      await created(key, { allowedProviders: [keyed], returnUrl: 'http://localhost:3000/connected' });
      const https = await created(key, { allowedProviders: [keyed], returnUrl: 'https://APP.example/back?tab=integrations' });
      expect((await status(key, https.id)).returnUrl).toBe('https://app.example/back?tab=integrations');
    });

    it('sends the end user back to returnUrl with ?session=&status= after success, failure and expiry', async () => {
      const { key } = await t.workspaceWithKey(['connections:write']);
      const returnUrl = 'https://app.example/back?tab=integrations';

      const ok = await created(key, { allowedProviders: [keyed], returnUrl });
      const page = await t.request({ method: 'GET', url: `/connect/${ok.token}` });
      expect(page.headers['content-security-policy']).toContain("form-action 'self' https://app.example");
      const done = await submitKey(ok.token, keyed, 'sk_return_0123456789');
      expect(done.statusCode).toBe(303);
      expect(done.headers.location).toBe(`https://app.example/back?tab=integrations&session=${ok.id}&status=completed`);

      const bad = await created(key, { allowedProviders: [idp], returnUrl });
      const state = await startOAuth(bad.token);
      const back = await t.request({ method: 'GET', url: `/oauth/callback?error=access_denied&state=${encodeURIComponent(state)}` });
      expect(back.statusCode).toBe(303);
      expect(back.headers.location).toBe(`https://app.example/back?tab=integrations&session=${bad.id}&status=failed`);

      const late = await created(key, { allowedProviders: [keyed], returnUrl });
      t.clock.advance(31 * 60_000);
      const expired = await t.request({ method: 'GET', url: `/connect/${late.token}` });
      expect(expired.statusCode).toBe(303);
      expect(expired.headers.location).toBe(`https://app.example/back?tab=integrations&session=${late.id}&status=expired`);
    });

    it('renders the tenant\'s branding safely; refuses a non-https logo and a colour that is not #rrggbb', async () => {
      const { key, tenantId } = await t.workspaceWithKey(['connections:write']);
      const hostile = '<script>alert(1)</script>" onload="x';
      for (const branding of [{ logoUrl: 'http://cdn.example/logo.png' }, { logoUrl: 'javascript:alert(1)' }, { accentColor: 'red;background:url(x)' }, { accentColor: '#12345' }, { displayName: '' }, { other: 1 }]) {
        const response = await t.admin('PATCH', `/v1/tenants/${tenantId}`, { branding });
        expect(response.statusCode, JSON.stringify(branding)).toBe(400);
        expect(response.json()).toMatchObject({ code: 'validation_failed' });
      }
      const patched = await t.admin('PATCH', `/v1/tenants/${tenantId}`, { branding: { displayName: hostile, logoUrl: 'https://cdn.example/logo.png', accentColor: '#0a7d3b' } });
      expect(patched.statusCode, patched.body).toBe(200);
      expect(patched.json()).toMatchObject({ branding: { displayName: hostile, logoUrl: 'https://cdn.example/logo.png', accentColor: '#0a7d3b' } });

      const session = await created(key, { allowedProviders: [keyed] });
      const page = await t.request({ method: 'GET', url: `/connect/${session.token}` });
      expect(page.statusCode).toBe(200);
      expect(page.body).not.toContain('<script>');
      expect(page.body).toContain('&#60;script&#62;alert(1)&#60;/script&#62;&#34; onload=&#34;x');
      expect(page.body).toContain('--accent:#0a7d3b');
      expect(page.body).toContain('<img src="https://cdn.example/logo.png"');
      const csp = String(page.headers['content-security-policy']);
      expect(csp).toContain('img-src https://cdn.example;');
      expect(csp).toContain("default-src 'none'");
      expect(csp).not.toContain('script-src');

      expect((await t.admin('PATCH', `/v1/tenants/${tenantId}`, { branding: null })).json()).toMatchObject({ branding: null });
      const plain = await t.request({ method: 'GET', url: `/connect/${session.token}` });
      expect(plain.body).not.toContain('onload');
      expect(String(plain.headers['content-security-policy'])).not.toContain('img-src');
    });
  });
});
