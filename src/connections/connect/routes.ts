/**
 * Connect sessions: minted by the platform (`POST /v1/connect-sessions`), used by the end user on
 * the hosted page (`/connect/{token}`), and the OAuth redirect target (`/oauth/callback`). The
 * public routes authenticate by the session token itself; their pages forbid framing, caching,
 * referrers and scripts.
 */
import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';
import { BulkheadError } from '../../errors.js';
import { keyContext, principalOf } from '../../http/auth.js';
import { assertText } from '../../http/json.js';
import { Timestamp } from '../../http/schemas.js';
import type { HttpServer } from '../../http/server.js';
import type { ConnectionService } from '../connections.js';
import type { OAuthFlow } from '../oauth/flow.js';
import type { ProviderService } from '../providers.js';
import { donePage, errorPage, providerPage } from './page.js';
import type { ConnectSessions } from './sessions.js';

const CreateSession = Type.Object(
  {
    allowedProviders: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { minItems: 1, maxItems: 50, uniqueItems: true })),
    connectionName: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    connectionId: Type.Optional(Type.String({ maxLength: 40 })),
    endUser: Type.Optional(Type.Record(Type.String({ maxLength: 50 }), Type.String({ maxLength: 500 }), { maxProperties: 10 })),
  },
  { additionalProperties: false },
);

const Session = Type.Object({ id: Type.String(), token: Type.String({ description: 'Shown once' }), url: Type.String(), expiresAt: Timestamp });
const TokenParams = Type.Object({ token: Type.String({ maxLength: 100 }) }, { additionalProperties: false });

type Outcome = { readonly status: number; readonly html: string } | { readonly redirect: string };

const SECURITY_HEADERS = {
  'cache-control': 'no-store',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
};

/** Runs a page handler; Bulkhead errors become an error page (the end user sees no problem+json). */
async function outcome(work: () => Promise<Outcome>): Promise<Outcome> {
  try {
    return await work();
  } catch (error) {
    if (!(error instanceof BulkheadError)) throw error;
    // Server-side failures are not explained to the end user; the platform sees them in its logs.
    return error.status >= 500
      ? { status: 502, html: errorPage('The provider could not complete the connection. Please try again.') }
      : { status: error.status, html: errorPage(error.message) };
  }
}

function send(reply: FastifyReply, result: Outcome): FastifyReply {
  reply.headers(SECURITY_HEADERS);
  if ('redirect' in result) return reply.redirect(result.redirect, 302);
  return reply.status(result.status).header('content-type', 'text/html; charset=utf-8').send(result.html);
}

export function registerConnectRoutes(
  app: HttpServer,
  deps: { sessions: ConnectSessions; providers: ProviderService; connections: ConnectionService; flow: OAuthFlow; maxConnections: (workspaceId: string) => Promise<number> },
): void {
  const { sessions, providers } = deps;
  const publicRoute = { config: { auth: 'public' as const } };

  app.post('/v1/connect-sessions', { config: { auth: { scope: 'connections:write' as const } }, schema: { operationId: 'createConnectSession', summary: 'Create a connect session', description: 'Creates a short-lived hosted page (`url`) where an end user connects a provider account to the workspace; the token is shown once.', tags: ['connections'], errors: ['provider_not_allowed', 'provider_not_configured'], body: CreateSession, response: { 201: Session } } }, async (request, reply) => {
    const principal = principalOf(request);
    for (const key of request.body.allowedProviders ?? []) await providers.get(key).catch(() => { throw new BulkheadError('provider_invalid', `unknown provider "${key}"`); });
    return reply.status(201).send(await sessions.create(principal.workspaceId, keyContext(request), request.body));
  });

  const usable = async (allowed: readonly string[] | null) => {
    const all = await Promise.all((await providers.list()).map((p) => providers.get(p.key)));
    return all.filter((p) => (allowed === null || allowed.includes(p.key)) && (p.authType === 'api_key' || p.authType === 'basic' || p.oauthApp !== undefined));
  };

  void app.register((plugin, _options, done) => {
    const scope = plugin as unknown as HttpServer;
    // The page's forms post urlencoded bodies; this scope alone accepts them.
    scope.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 64 * 1024 }, (_request, body, done) => {
      const fields = Object.fromEntries(new URLSearchParams(body as string));
      try {
        assertText(fields, 'body');
        done(null, fields);
      } catch (error) {
        done(error as Error, undefined);
      }
    });

    scope.get('/connect/:token', { ...publicRoute, schema: { hide: true, params: TokenParams } }, async (request, reply) =>
      send(reply, await outcome(async () => {
        const session = await sessions.resolve(request.params.token);
        return { status: 200, html: providerPage(request.params.token, await usable(session.allowed_providers)) };
      })),
    );

    scope.post('/connect/:token/credentials', { ...publicRoute, schema: { hide: true, params: TokenParams } }, async (request, reply) =>
      send(reply, await outcome(async () => {
        const session = await sessions.resolve(request.params.token);
        const { provider: key, ...credentials } = (request.body ?? {}) as Record<string, string>;
        const allowed = await usable(session.allowed_providers);
        const provider = allowed.find((p) => p.key === key);
        if (!provider || provider.authType === 'oauth2_code') throw new BulkheadError('provider_not_allowed', 'this provider is not offered by this link');
        const ctx = { actor: { type: 'connect_session' as const, id: session.id } };
        await sessions.claim(session);
        try {
          const created = await deps.connections.create(session.workspace_id, ctx, { provider: provider.key, name: session.connection_name ?? `${provider.key}-${session.id.slice(-6)}`, credentials }, { maxConnections: await deps.maxConnections(session.workspace_id) });
          await sessions.attach(session, created.id);
        } catch (error) {
          await sessions.release(session);
          throw error;
        }
        return { status: 200, html: donePage(provider.name) };
      })),
    );

    scope.get('/connect/:token/oauth/:provider', { ...publicRoute, schema: { hide: true, params: Type.Object({ token: Type.String({ maxLength: 100 }), provider: Type.String({ maxLength: 64 }) }) } }, async (request, reply) =>
      send(reply, await outcome(async () => {
        const session = await sessions.resolve(request.params.token);
        const provider = (await usable(session.allowed_providers)).find((p) => p.key === request.params.provider);
        if (!provider) throw new BulkheadError('provider_not_allowed', 'this provider is not offered by this link');
        return { redirect: await deps.flow.start(session, provider) };
      })),
    );

    scope.get('/oauth/callback', { ...publicRoute, schema: { hide: true, querystring: Type.Object({ code: Type.Optional(Type.String({ maxLength: 4096 })), state: Type.Optional(Type.String({ maxLength: 4096 })), error: Type.Optional(Type.String({ maxLength: 200 })), error_description: Type.Optional(Type.String({ maxLength: 2000 })), iss: Type.Optional(Type.String({ maxLength: 2000 })), scope: Type.Optional(Type.String({ maxLength: 4096 })) }) } }, async (request, reply) =>
      send(reply, await outcome(async () => {
        const connection = await deps.flow.callback(request.query);
        return { status: 200, html: donePage(connection.provider) };
      })),
    );
    done();
  });
}
