/**
 * A real OAuth 2.0 authorization server for tests: panva's oidc-provider on loopback, with
 * refresh-token rotation on, RFC 7009 revocation, and a counter of token-endpoint requests per
 * grant type (what the single-flight test counts). `authorize()` plays the end user: it follows
 * the authorization redirect through the provider's own login and consent forms with a cookie
 * jar, and returns the redirect back to the client with the code.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider, { type KoaContextWithOIDC } from 'oidc-provider';

export interface TestOAuthServer {
  readonly issuer: string;
  readonly authorizeUrl: string;
  readonly tokenUrl: string;
  readonly revokeUrl: string;
  readonly clientId: string;
  readonly clientSecret: string;
  /** Token endpoint requests seen, by grant_type. */
  readonly tokenRequests: Map<string, number>;
  /** Revocation requests seen. */
  readonly revocations: { count: number };
  /** Drives the end user's login and consent; returns the final redirect URL to the client. */
  authorize(url: string, options: { redirectPrefix: string }): Promise<URL>;
  /** Revokes every grant of the account: what "the user removed the app" looks like. */
  revokeAllGrants(): Promise<void>;
  close(): Promise<void>;
}

export async function startOAuthServer(options: { redirectUris: string[]; accessTokenTtlSeconds?: number }): Promise<TestOAuthServer> {
  const server: Server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const clientId = 'bulkhead-test-client';
  const clientSecret = 'test-client-secret-0123456789abcdefghijkl';
  const grants = new Set<string>();

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: options.redirectUris,
        grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
        scope: 'openid offline_access api:read',
      },
    ],
    scopes: ['openid', 'offline_access', 'api:read'],
    pkce: { required: () => true },
    features: { revocation: { enabled: true }, clientCredentials: { enabled: true }, devInteractions: { enabled: true } },
    ttl: { AccessToken: options.accessTokenTtlSeconds ?? 3600, ClientCredentials: options.accessTokenTtlSeconds ?? 3600 },
    issueRefreshToken: () => Promise.resolve(true),
    rotateRefreshToken: () => true,
    findAccount: (_ctx, id) => Promise.resolve({ accountId: id, claims: () => Promise.resolve({ sub: id }) }),
    // Consent is given once per client, then reused (as providers do for returning users).
    loadExistingGrant: async (ctx) => {
      const accountId = ctx.oidc.session?.accountId;
      const client = ctx.oidc.client;
      if (!accountId || !client) return undefined;
      const grant = new ctx.oidc.provider.Grant({ accountId, clientId: client.clientId });
      grant.addOIDCScope('openid offline_access api:read');
      const id = await grant.save();
      grants.add(id);
      return grant;
    },
  });
  provider.proxy = false;

  const tokenRequests = new Map<string, number>();
  const revocations = { count: 0 };
  const count = (ctx: KoaContextWithOIDC) => {
    const params = ctx.oidc.params as Record<string, unknown> | undefined;
    const grantType = typeof params?.['grant_type'] === 'string' ? params['grant_type'] : 'unknown';
    tokenRequests.set(grantType, (tokenRequests.get(grantType) ?? 0) + 1);
  };
  provider.on('grant.success', (ctx) => { count(ctx); });
  provider.on('grant.error', (ctx) => { count(ctx); });
  provider.use(async (ctx, next) => {
    if (ctx.method === 'POST' && ctx.path === '/token/revocation') revocations.count++;
    await next();
  });
  const handle = provider.callback();
  server.on('request', (req, res) => {
    void handle(req, res);
  });

  async function authorize(url: string, { redirectPrefix }: { redirectPrefix: string }): Promise<URL> {
    const jar = new Map<string, string>();
    const cookieHeader = () => [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const remember = (response: Response) => {
      for (const line of response.headers.getSetCookie()) {
        const [pair] = line.split(';');
        const eq = pair?.indexOf('=') ?? -1;
        if (pair && eq > 0) jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
      }
    };
    let next = new URL(url);
    let method = 'GET';
    let body: string | undefined;
    for (let hop = 0; hop < 20; hop++) {
      if (next.toString().startsWith(redirectPrefix)) return next;
      const response = await fetch(next, {
        method,
        redirect: 'manual',
        headers: { cookie: cookieHeader(), ...(body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
        ...(body ? { body } : {}),
      });
      remember(response);
      const location = response.headers.get('location');
      if (location) {
        await response.arrayBuffer();
        next = new URL(location, next);
        method = 'GET';
        body = undefined;
        continue;
      }
      const html = await response.text();
      if (response.status !== 200) throw new Error(`authorization server answered ${response.status}: ${html.slice(0, 500)}`);
      const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
      const prompt = /name="prompt" value="([^"]+)"/.exec(html)?.[1];
      if (!action || !prompt) throw new Error(`no interaction form in: ${html.slice(0, 500)}`);
      next = new URL(action.replaceAll('&amp;', '&'), next);
      method = 'POST';
      body = new URLSearchParams(prompt === 'login' ? { prompt, login: 'end-user-1', password: 'irrelevant' } : { prompt }).toString();
    }
    throw new Error('too many redirects in the authorization flow');
  }

  return {
    issuer,
    authorizeUrl: `${issuer}/auth`,
    tokenUrl: `${issuer}/token`,
    revokeUrl: `${issuer}/token/revocation`,
    clientId,
    clientSecret,
    tokenRequests,
    revocations,
    authorize,
    async revokeAllGrants() {
      for (const id of grants) {
        const grant = await provider.Grant.find(id);
        await grant?.destroy();
      }
      // Refresh tokens carry their grant id; oidc-provider refuses them once the grant is gone.
    },
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}
