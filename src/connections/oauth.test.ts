/**
 * Managed OAuth against a real authorization server (oidc-provider, refresh-token rotation on):
 * the hosted page → authorize → callback → sealed tokens; single-flight refresh under a burst,
 * across two "processes"; a revoked grant flips the connection to needs_reauth; deletion revokes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCore } from '../app.js';
import { databaseRef } from '../db/open.js';
import { refreshJob } from '../jobs/background.js';
import { createLogger } from '../logging.js';
import { startTestApp, testSecrets, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import { startOAuthServer, type TestOAuthServer } from '../testing/oauth-server.js';
import { startUpstream, type Upstream } from '../testing/upstream.js';

const PUBLIC_URL = 'http://bulkhead.test';
const CALLBACK = `${PUBLIC_URL}/oauth/callback`;

describe.each(backends)('managed OAuth on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    let oauth: TestOAuthServer;
    let upstream: Upstream;
    const providerKey = `idp-${backend.name}`;

    beforeAll(async () => {
      oauth = await startOAuthServer({ redirectUris: [CALLBACK] });
      upstream = await startUpstream();
      t = await startTestApp(backend, { config: { egressAllowCidrs: ['127.0.0.1/32'], publicUrl: PUBLIC_URL } });
      const created = await t.admin('POST', '/v1/providers', {
        key: providerKey,
        name: 'Test IdP',
        authType: 'oauth2_code',
        baseUrls: [upstream.url],
        oauth2: { authorizeUrl: oauth.authorizeUrl, tokenUrl: oauth.tokenUrl, revokeUrl: oauth.revokeUrl, scopes: ['openid', 'offline_access', 'api:read'], clientId: oauth.clientId, clientSecret: oauth.clientSecret },
      });
      expect(created.statusCode, created.body).toBe(201);
    });
    afterAll(async () => {
      await t.close();
      await oauth.close();
      await upstream.close();
    });

    /** The end user's whole journey: hosted page, provider login and consent, callback. */
    async function connectThroughPage(key: string, name: string): Promise<{ id: string; callback: URL }> {
      const session = await t.request({ method: 'POST', url: '/v1/connect-sessions', token: key, json: { allowedProviders: [providerKey], connectionName: name } });
      expect(session.statusCode, session.body).toBe(201);
      const { url, token } = session.json<{ url: string; token: string }>();
      expect(url).toBe(`${PUBLIC_URL}/connect/${token}`);
      const pageResponse = await t.request({ method: 'GET', url: new URL(url).pathname });
      expect(pageResponse.statusCode).toBe(200);
      expect(pageResponse.headers['content-security-policy']).toContain("default-src 'none'");
      const link = /href="([^"]+\/oauth\/[^"]+)"/.exec(pageResponse.body)?.[1];
      expect(link).toBeDefined();
      const start = await t.request({ method: 'GET', url: link ?? '' });
      expect(start.statusCode).toBe(302);
      const authorize = new URL(String(start.headers.location));
      expect(authorize.searchParams.get('code_challenge_method')).toBe('S256');
      expect(authorize.searchParams.get('redirect_uri')).toBe(CALLBACK);
      const callback = await oauth.authorize(authorize.toString(), { redirectPrefix: CALLBACK });
      expect(callback.searchParams.get('code')).toBeTruthy();
      const done = await t.request({ method: 'GET', url: `${callback.pathname}${callback.search}` });
      expect(done.statusCode, done.body).toBe(200);
      expect(done.body).toContain('connected');
      const list = await t.request({ method: 'GET', url: '/v1/connections', token: key });
      const connection = list.json<{ data: { id: string; name: string }[] }>().data.find((c) => c.name === name);
      expect(connection).toBeDefined();
      return { id: connection?.id ?? '', callback };
    }

    it('runs the code flow with PKCE and seals the tokens; the state is single-use and the session too', async () => {
      const { key, workspaceId } = await t.workspaceWithKey(['connections:write', 'proxy']);
      const { id, callback } = await connectThroughPage(key, 'primary');
      const view = (await t.request({ method: 'GET', url: `/v1/connections/${id}`, token: key })).json<Record<string, unknown>>();
      expect(view).toMatchObject({ status: 'active', authType: 'oauth2_code', provider: providerKey, hint: null });
      expect(view['expiresAt']).toEqual(expect.any(String));
      expect(view['scopes']).toEqual(expect.arrayContaining(['api:read']));
      expect(oauth.tokenRequests.get('authorization_code')).toBeGreaterThanOrEqual(1);

      // Replaying the callback finds the state consumed.
      const replay = await t.request({ method: 'GET', url: `${callback.pathname}${callback.search}` });
      expect(replay.statusCode).toBe(401);
      // A forged state is refused before anything else happens.
      const forged = await t.request({ method: 'GET', url: `/oauth/callback?code=x&state=${callback.searchParams.get('state')?.slice(0, -3) ?? ''}AAA` });
      expect(forged.statusCode).toBe(400);

      // The relay sends the access token; the response never contains it.
      upstream.requests.length = 0;
      const relayed = await t.request({ method: 'GET', url: `/v1/proxy/${id}/me/echo`, token: key });
      expect(relayed.statusCode).toBe(200);
      const bearer = upstream.requests.at(-1)?.headers.authorization ?? '';
      expect(bearer).toMatch(/^Bearer .{20,}/);
      expect(relayed.body).not.toContain(bearer.slice(7));
      const { rows } = await t.database.db.owner.query<{ credentials: Uint8Array }>('SELECT credentials FROM connections WHERE workspace_id = $1', [workspaceId]);
      expect(Buffer.from(rows[0]?.credentials ?? []).toString('latin1')).not.toContain(bearer.slice(7));
    });

    it('collapses a 50-way burst on an expired token into one refresh, across two processes', async () => {
      const { key, workspaceId } = await t.workspaceWithKey(['connections:write', 'proxy']);
      const { id } = await connectThroughPage(key, 'burst');
      const db = databaseRef();
      db.set(t.database.db);
      const other = createCore({ config: t.config, secrets: testSecrets, logger: createLogger({ level: 'silent' }), db, runtime: t.clock });

      const before = oauth.tokenRequests.get('refresh_token') ?? 0;
      t.clock.advance(2 * 3600_000); // Bulkhead now sees the access token as expired
      const calls = [
        ...Array.from({ length: 25 }, () => t.request({ method: 'GET', url: `/v1/proxy/${id}/things`, token: key })),
        ...Array.from({ length: 25 }, () => other.connections.use(workspaceId, id)),
      ];
      const results = await Promise.all(calls);
      for (const result of results.slice(0, 25)) expect((result as { statusCode: number }).statusCode).toBe(200);
      expect(oauth.tokenRequests.get('refresh_token')).toBe(before + 1);
      // Rotation: the refresh token changed, and the new one works on the next expiry.
      t.clock.advance(2 * 3600_000);
      expect((await t.request({ method: 'GET', url: `/v1/proxy/${id}/things`, token: key })).statusCode).toBe(200);
      expect(oauth.tokenRequests.get('refresh_token')).toBe(before + 2);
      await other.relayLog.stop();
      await other.egress.close();
    });

    it('marks the connection needs_reauth with an operational event when the grant is revoked, and re-authorises it', async () => {
      const { key } = await t.workspaceWithKey(['connections:write', 'proxy', 'audit:read']);
      const { id } = await connectThroughPage(key, 'revoked');
      await oauth.revokeAllGrants();
      t.clock.advance(2 * 3600_000);
      const relayed = await t.request({ method: 'GET', url: `/v1/proxy/${id}/things`, token: key });
      expect(relayed.statusCode, relayed.body).toBe(409);
      expect(relayed.json()).toMatchObject({ code: 'connection_not_active', status: 409, connectionStatus: 'needs_reauth' });
      const view = (await t.request({ method: 'GET', url: `/v1/connections/${id}`, token: key })).json<{ status: string; statusReason: string }>();
      expect(view).toMatchObject({ status: 'needs_reauth', statusReason: 'invalid_grant' });
      const events = (await t.request({ method: 'GET', url: '/v1/operational-events', token: key })).json<{ data: { type: string; resourceId: string }[] }>().data;
      expect(events).toEqual(expect.arrayContaining([expect.objectContaining({ type: 'bulkhead.connection.needs_reauth', resourceId: id })]));
      const audit = (await t.request({ method: 'GET', url: '/v1/audit-log', token: key })).json<{ data: { action: string }[] }>().data.map((e) => e.action);
      expect(audit).toContain('connection.needs_reauth');

      // A connect session naming the connection re-authorises it in place.
      const session = await t.request({ method: 'POST', url: '/v1/connect-sessions', token: key, json: { allowedProviders: [providerKey], connectionId: id } });
      const link = `/connect/${session.json<{ token: string }>().token}/oauth/${providerKey}`;
      const start = await t.request({ method: 'GET', url: link });
      const callback = await oauth.authorize(String(start.headers.location), { redirectPrefix: CALLBACK });
      expect((await t.request({ method: 'GET', url: `${callback.pathname}${callback.search}` })).statusCode).toBe(200);
      expect((await t.request({ method: 'GET', url: `/v1/connections/${id}`, token: key })).json()).toMatchObject({ status: 'active', statusReason: null });
    });

    it('refreshes in the background shortly before expiry', async () => {
      const { key } = await t.workspaceWithKey(['connections:write', 'proxy']);
      const { id } = await connectThroughPage(key, 'background');
      const view = (await t.request({ method: 'GET', url: `/v1/connections/${id}`, token: key })).json<{ expiresAt: string }>();
      const job = refreshJob({ withPlatform: t.app.core.withPlatform, connections: t.app.core.connections, runtime: t.clock, intervalMs: 1000 });
      const before = oauth.tokenRequests.get('refresh_token') ?? 0;
      expect((await job.run())['refreshed']).toBe(0);
      t.clock.set(new Date(Date.parse(view.expiresAt) - 30_000)); // inside the refresh margin
      const ran = await job.run();
      expect(ran['refreshed']).toBeGreaterThanOrEqual(1);
      expect(oauth.tokenRequests.get('refresh_token')).toBeGreaterThan(before);
      const after = (await t.request({ method: 'GET', url: `/v1/connections/${id}`, token: key })).json<{ expiresAt: string; lastRefreshedAt: string }>();
      expect(Date.parse(after.expiresAt)).toBeGreaterThan(Date.parse(view.expiresAt));
    });

    it('revokes the grant at the provider (RFC 7009) when the connection is deleted', async () => {
      const { key } = await t.workspaceWithKey(['connections:write', 'proxy']);
      const { id } = await connectThroughPage(key, 'to-delete');
      const before = oauth.revocations.count;
      const deleted = await t.request({ method: 'DELETE', url: `/v1/connections/${id}`, token: key });
      expect(deleted.json()).toEqual({ deleted: true, revokedAtProvider: true });
      expect(oauth.revocations.count).toBe(before + 1);
    });

    it('refuses expired and foreign connect sessions', async () => {
      const { key } = await t.workspaceWithKey(['connections:write']);
      const session = (await t.request({ method: 'POST', url: '/v1/connect-sessions', token: key, json: { allowedProviders: [providerKey] } })).json<{ token: string }>();
      expect((await t.request({ method: 'GET', url: `/connect/${session.token}x` })).statusCode).toBe(401);
      expect((await t.request({ method: 'GET', url: '/connect/bk_cs_not-a-real-token' })).statusCode).toBe(401);
      t.clock.advance(31 * 60_000);
      const expired = await t.request({ method: 'GET', url: `/connect/${session.token}` });
      expect(expired.statusCode).toBe(410);
      expect(expired.body).toContain('expired');
      expect((await t.request({ method: 'POST', url: '/v1/connect-sessions', token: key, json: { allowedProviders: ['nope'] } })).json()).toMatchObject({ code: 'provider_invalid' });
    });
  });
});
