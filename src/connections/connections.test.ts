import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import { startUpstream, type Upstream } from '../testing/upstream.js';

const SECRET = 'sk_live_canary_7f3c9a1e5b2d4f6a8c0e';

describe.each(backends)('providers, connections and the relay on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    let upstream: Upstream;
    let providerKey: string;
    beforeAll(async () => {
      upstream = await startUpstream();
      t = await startTestApp(backend, { config: { egressAllowCidrs: ['127.0.0.1/32'], publicUrl: 'http://bulkhead.test' } });
      providerKey = `acme-${backend.name}`;
      const created = await t.admin('POST', '/v1/providers', {
        key: providerKey,
        name: 'Acme API',
        authType: 'api_key',
        baseUrls: [`${upstream.url}/v2`, `${upstream.url}/eu`],
        apiKey: { in: 'header', name: 'Authorization', prefix: 'Bearer ' },
      });
      expect(created.statusCode, created.body).toBe(201);
    });
    afterAll(async () => {
      await t.close();
      await upstream.close();
    });

    const connect = async (key: string, credentials: Record<string, string> = { apiKey: SECRET }, name = `c-${Math.random().toString(36).slice(2)}`) =>
      t.request({ method: 'POST', url: '/v1/connections', token: key, json: { provider: providerKey, name, credentials } });

    it('lists the shipped catalog and the platform\'s own providers, and refuses bad definitions with every problem', async () => {
      const list = await t.admin('GET', '/v1/providers');
      const keys = list.json<{ data: { key: string; source: string }[] }>().data.map((p) => p.key);
      expect(keys).toEqual(expect.arrayContaining(['github', 'stripe', 'twilio', 'paypal', providerKey]));

      const bad = await t.admin('POST', '/v1/providers', { key: 'bad-one', name: 'Bad', authType: 'oauth2_code', baseUrls: ['https://u:p@example.com/?q=1'], apiKey: { in: 'header', name: 'X-Key' } });
      expect(bad.statusCode).toBe(400);
      expect(bad.json()).toMatchObject({ code: 'provider_invalid' });
      const problems = bad.json<{ problems: string[] }>().problems;
      expect(problems.length).toBeGreaterThanOrEqual(4);

      expect((await t.admin('POST', '/v1/providers', { key: 'stripe', name: 'Mine', authType: 'api_key', baseUrls: ['https://x.example'], apiKey: { in: 'header', name: 'X' } })).json()).toMatchObject({ code: 'provider_key_taken' });
      expect((await t.admin('POST', '/v1/providers', { key: providerKey, name: 'Again', authType: 'api_key', baseUrls: ['https://x.example'], apiKey: { in: 'header', name: 'X' } })).json()).toMatchObject({ code: 'provider_key_taken' });
      expect((await t.admin('POST', '/v1/providers', { key: 'Upper Case', name: 'x', authType: 'basic', baseUrls: ['https://x.example'] })).statusCode).toBe(400);
    });

    it('seals the OAuth client secret and never returns it', async () => {
      const configured = await t.admin('PUT', '/v1/providers/github/oauth-app', { clientId: 'gh-client', clientSecret: 'gh-secret-canary-0123456789' });
      expect(configured.statusCode, configured.body).toBe(200);
      expect(configured.json()).toMatchObject({ key: 'github', oauthApp: { clientId: 'gh-client', clientSecretSet: true } });
      expect(configured.body).not.toContain('gh-secret-canary');
      expect((await t.admin('GET', '/v1/providers/github')).body).not.toContain('gh-secret-canary');
      const { rows } = await t.database.db.owner.query<{ client_secret: Uint8Array; definition: unknown }>('SELECT client_secret, definition FROM providers WHERE key = $1', ['github']);
      expect(Buffer.from(rows[0]?.client_secret ?? []).toString('latin1')).not.toContain('gh-secret-canary');
      expect(JSON.stringify(rows[0]?.definition)).not.toContain('gh-secret-canary');
      expect((await t.admin('PUT', '/v1/providers/stripe/oauth-app', { clientId: 'x', clientSecret: 'y' })).json()).toMatchObject({ code: 'provider_invalid' });
    });

    it('keeps credentials write-only: metadata and a masked hint come back, the secret never does', async () => {
      const { key } = await t.workspaceWithKey(['connections:write', 'proxy']);
      const created = await connect(key);
      expect(created.statusCode, created.body).toBe(201);
      const view = created.json<{ id: string; hint: string; status: string }>();
      expect(view).toMatchObject({ status: 'active', hint: `…${SECRET.slice(-4)}`, provider: providerKey, authType: 'api_key' });
      for (const response of [created, await t.request({ method: 'GET', url: `/v1/connections/${view.id}`, token: key }), await t.request({ method: 'GET', url: '/v1/connections', token: key })]) {
        expect(response.body).not.toContain(SECRET);
        expect(response.body).not.toContain(SECRET.slice(0, 20));
      }
      const { rows } = await t.database.db.owner.query<{ credentials: Uint8Array }>('SELECT credentials FROM connections WHERE id = $1', [view.id]);
      expect(Buffer.from(rows[0]?.credentials ?? []).toString('latin1')).not.toContain(SECRET);
    });

    it('refuses bad input with stable codes and writes nothing', async () => {
      const { key, workspaceId } = await t.workspaceWithKey(['connections:write']);
      const cases: [Record<string, unknown>, string][] = [
        [{ provider: 'no-such-provider', name: 'x', credentials: { apiKey: 'abc' } }, 'provider_invalid'],
        [{ provider: providerKey, name: 'x', credentials: { password: 'abc' } }, 'credentials_invalid'],
        [{ provider: providerKey, name: 'x', credentials: { apiKey: 'line\r\nX-Injected: 1' } }, 'credentials_invalid'],
        [{ provider: providerKey, name: 'x', credentials: { apiKey: '' } }, 'credentials_invalid'],
        [{ provider: providerKey, name: 'x', credentials: { apiKey: 'a' }, extra: true }, 'validation_failed'],
        [{ provider: 'github', name: 'x' }, 'credentials_invalid'],
      ];
      for (const [body, code] of cases) {
        const response = await t.request({ method: 'POST', url: '/v1/connections', token: key, json: body });
        expect(response.json(), JSON.stringify(body)).toMatchObject({ code });
      }
      const { rows } = await t.database.db.owner.query<{ n: number }>('SELECT count(*)::int AS n FROM connections WHERE workspace_id = $1', [workspaceId]);
      expect(rows[0]?.n).toBe(0);
      await connect(key, undefined, 'same');
      expect((await connect(key, undefined, 'same')).json()).toMatchObject({ code: 'name_taken' });
    });

    it('relays an encoded body as sent, with its Content-Encoding, where the rest of the API refuses one', async () => {
      const { key } = await t.workspaceWithKey(['connections:write', 'proxy']);
      const id = (await connect(key)).json<{ id: string }>().id;
      upstream.requests.length = 0;
      const response = await t.request({ method: 'POST', url: `/v1/proxy/${id}/echo`, token: key, payload: 'opaque-bytes', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' } });
      expect(response.statusCode, response.body).toBe(200);
      expect(upstream.requests.at(-1)).toMatchObject({ body: 'opaque-bytes', headers: expect.objectContaining({ 'content-encoding': 'gzip' }) as unknown });
      expect((await t.request({ method: 'POST', url: '/v1/connections', token: key, payload: '{}', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' } })).json()).toMatchObject({ code: 'unsupported_encoding' });
    });

    it('answers 404 for another workspace\'s connection, for reads, writes, deletes and the relay alike', async () => {
      const a = await t.workspaceWithKey(['*']);
      const b = await t.workspaceWithKey(['*']);
      const id = (await connect(a.key)).json<{ id: string }>().id;
      for (const [method, url] of [['GET', `/v1/connections/${id}`], ['PATCH', `/v1/connections/${id}`], ['DELETE', `/v1/connections/${id}`], ['GET', `/v1/proxy/${id}/things`]] as const) {
        const response = await t.request({ method, url, token: b.key, ...(method === 'PATCH' ? { json: { name: 'stolen' } } : {}) });
        expect(response.statusCode, `${method} ${url}`).toBe(404);
        expect(response.json()).toMatchObject({ code: 'not_found' });
      }
      expect((await t.request({ method: 'GET', url: `/v1/connections/${id}`, token: a.key })).json()).toMatchObject({ name: expect.any(String) as string });
    });

    it('enforces the per-workspace connection limit from the tenant\'s plan', async () => {
      const { key, tenantId } = await t.workspaceWithKey(['connections:write']);
      expect((await t.admin('PATCH', `/v1/tenants/${tenantId}`, { limits: { connectionsPerWorkspace: 2 } })).statusCode).toBe(200);
      // A key's resolved principal (with its plan limits) is cached for a few seconds per process.
      t.app.core.authenticator.forgetWorkspace((await t.admin('GET', `/v1/tenants/${tenantId}/workspaces`)).json<{ data: { id: string }[] }>().data[0]?.id ?? '');
      expect((await connect(key)).statusCode).toBe(201);
      expect((await connect(key)).statusCode).toBe(201);
      const third = await connect(key);
      expect(third.statusCode).toBe(422);
      expect(third.json()).toMatchObject({ code: 'connection_limit_exceeded', limit: 2 });
    });

    it('relays with the credential injected, the caller\'s own headers withheld, and echoes scrubbed', async () => {
      const { key } = await t.workspaceWithKey(['connections:write', 'proxy']);
      const id = (await connect(key)).json<{ id: string }>().id;
      upstream.requests.length = 0;
      const response = await t.request({
        method: 'GET',
        url: `/v1/proxy/${id}/users/42/echo?expand=all`,
        token: key,
        headers: { 'x-trace': 'abc', cookie: 'bk=1', 'x-forwarded-for': '10.0.0.1', accept: 'application/json' },
      });
      expect(response.statusCode, response.body).toBe(200);
      const seen = upstream.requests.at(-1);
      expect(seen?.url).toBe('/v2/users/42/echo?expand=all');
      expect(seen?.headers.authorization).toBe(`Bearer ${SECRET}`);
      expect(seen?.headers['x-trace']).toBe('abc');
      expect(seen?.headers.cookie).toBeUndefined();
      expect(seen?.headers['x-forwarded-for']).toBeUndefined();
      expect(JSON.stringify(seen?.headers)).not.toContain(key);
      // The upstream reflected the secret in its body and a header: neither reaches the caller.
      expect(response.body).not.toContain(SECRET);
      expect(response.body).toContain('[redacted]');
      expect(response.headers['x-echo-authorization']).toBeUndefined();
      expect(response.headers['set-cookie']).toBeUndefined();

      const chunked = await t.request({ method: 'GET', url: `/v1/proxy/${id}/echo-chunked`, token: key });
      expect(chunked.statusCode).toBe(200);
      expect(chunked.body).not.toContain(SECRET);
      expect(chunked.body).toContain('Bearer [redacted]');

      const eu = await t.request({ method: 'GET', url: `/v1/proxy/${id}/things`, token: key, headers: { 'base-url': `${upstream.url}/eu` } });
      expect(eu.statusCode).toBe(200);
      expect(upstream.requests.at(-1)?.url).toBe('/eu/things');
    });

    it('refuses paths and base URLs that would leave the provider', async () => {
      const { key } = await t.workspaceWithKey(['connections:write', 'proxy']);
      const id = (await connect(key)).json<{ id: string }>().id;
      const before = upstream.requests.length;
      for (const [path, headers] of [
        ['..%2Fadmin', {}],
        // (`%2e%2e/` itself is normalised away by any WHATWG client before it is sent; target.test.ts covers it raw.)
        ['a/%2F%2Fevil.example/x', {}],
        ['things', { 'base-url': 'http://169.254.169.254' }],
        ['things', { 'base-url': `${upstream.url}/v3` }],
      ] as const) {
        const response = await t.request({ method: 'GET', url: `/v1/proxy/${id}/${path}`, token: key, headers });
        expect(response.statusCode, path).toBe(400);
        expect(response.json()).toMatchObject({ code: 'relay_target_not_allowed' });
      }
      expect(upstream.requests.length).toBe(before);
    });

    it('retries idempotent calls on 503 with Retry-After, streams bodies, and logs metadata only', async () => {
      const { key, workspaceId } = await t.workspaceWithKey(['connections:write', 'proxy']);
      const id = (await connect(key)).json<{ id: string }>().id;
      const flaky = await t.request({ method: 'GET', url: `/v1/proxy/${id}/run${Date.now()}/flaky/2?token=querysecret`, token: key });
      expect(flaky.statusCode).toBe(200);
      const posted = await t.request({ method: 'POST', url: `/v1/proxy/${id}/echo`, token: key, headers: { 'content-type': 'text/plain' }, payload: 'hello upstream' });
      expect(posted.statusCode).toBe(200);
      expect(posted.json<{ body: string }>().body).toBe('hello upstream');
      const big = await t.request({ method: 'GET', url: `/v1/proxy/${id}/stream/300000`, token: key });
      expect(big.rawPayload.length).toBe(300000);

      await t.app.core.relayLog.flush();
      const log = await t.request({ method: 'GET', url: `/v1/relay-log?connectionId=${id}`, token: key });
      const entries = log.json<{ data: { method: string; pathTemplate: string; status: number; attempts: number; host: string }[] }>().data;
      expect(entries.length).toBe(3);
      expect(entries.find((e) => e.pathTemplate.includes('flaky'))).toMatchObject({ status: 200, attempts: 3 });
      expect(log.body).not.toContain('querysecret');
      expect(log.body).not.toContain('hello upstream');
      const { rows } = await t.database.db.owner.query('SELECT * FROM relay_log WHERE workspace_id = $1', [workspaceId]);
      expect(JSON.stringify(rows)).not.toContain(SECRET);
    });

    it('audits the connection lifecycle in the workspace chain', async () => {
      const { key } = await t.workspaceWithKey(['*']);
      const id = (await connect(key)).json<{ id: string }>().id;
      expect((await t.request({ method: 'PATCH', url: `/v1/connections/${id}`, token: key, json: { credentials: { apiKey: 'sk_live_replaced_0000000000000' } } })).json()).toMatchObject({ hint: '…0000' });
      expect((await t.request({ method: 'DELETE', url: `/v1/connections/${id}`, token: key })).json()).toEqual({ deleted: true, revokedAtProvider: false });
      const audit = await t.request({ method: 'GET', url: '/v1/audit-log?limit=50', token: key });
      const actions = audit.json<{ data: { action: string }[] }>().data.map((e) => e.action);
      expect(actions).toEqual(expect.arrayContaining(['connection.create', 'connection.credentials.replace', 'connection.delete']));
      expect(audit.body).not.toContain(SECRET);
      expect((await t.request({ method: 'GET', url: '/v1/audit-log/verify', token: key })).json()).toMatchObject({ valid: true });
    });
  });
});
