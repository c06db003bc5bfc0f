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
import { Id, IdParams, named, Timestamp } from '../../http/schemas.js';
import { bodyFieldInvalid } from '../../http/validation.js';
import { checkWebUrl, type WebUrlPolicy } from '../../http/web-url.js';
import type { Branding } from '../../tenancy/branding.js';
import type { WithWorkspace } from '../../db/tenant-tx.js';
import type { HttpServer } from '../../http/server.js';
import type { ConnectionService } from '../connections.js';
import type { OAuthFlow } from '../oauth/flow.js';
import type { Provider, ProviderService } from '../providers.js';
import { donePage, errorPage, pageCsp, providerPage } from './page.js';
import { type ConnectSessions, returnTo } from './sessions.js';

const CreateSession = Type.Object(
  {
    allowedProviders: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { minItems: 1, maxItems: 50, uniqueItems: true })),
    connectionName: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    connectionId: Type.Optional(Type.String({ maxLength: 40 })),
    endUser: Type.Optional(Type.Record(Type.String({ maxLength: 50 }), Type.String({ maxLength: 500 }), { maxProperties: 10 })),
    returnUrl: Type.Optional(Type.String({ maxLength: 2000, description: 'Sent back here with `session` and `status` appended; https (http: BULKHEAD_CONNECT_HTTP_RETURN_HOSTS)' })),
  },
  { additionalProperties: false },
);

const Session = Type.Object({ id: Id('connectSession'), token: Type.String({ description: 'Shown once' }), url: Type.String(), expiresAt: Timestamp });
const SessionView = named('ConnectSession', Type.Object({
  id: Id('connectSession'),
  status: Type.Union([Type.Literal('pending'), Type.Literal('completed'), Type.Literal('expired'), Type.Literal('failed')]),
  connectionId: Type.Union([Type.String(), Type.Null()]),
  provider: Type.Union([Type.String(), Type.Null()]),
  allowedProviders: Type.Union([Type.Array(Type.String()), Type.Null()]),
  returnUrl: Type.Union([Type.String(), Type.Null()]),
  failure: Type.Union([Type.Object({ reason: Type.Union([Type.Literal('provider_error'), Type.Literal('state_mismatch'), Type.Literal('token_exchange_failed'), Type.Literal('connection_rejected')]), detail: Type.String() }), Type.Null()]),
  expiresAt: Timestamp,
  createdAt: Timestamp,
  finishedAt: Type.Union([Timestamp, Type.Null()]),
}));
const TokenParams = Type.Object({ token: Type.String({ maxLength: 100 }) }, { additionalProperties: false });

/** What a page handler answers: a page, or (once the session has an outcome) the platform's return URL. */
type Outcome = { readonly status: number; readonly html: string; readonly csp?: string } | { readonly redirect: string; readonly back?: true };

const SECURITY_HEADERS = {
  'cache-control': 'no-store',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};
const DEFAULT_CSP = pageCsp({ branding: null, returnUrl: null });

/** Bulkhead errors become an error page (the end user sees no problem+json). */
function errorOutcome(error: unknown, branding: Branding | null = null): Outcome {
  if (!(error instanceof BulkheadError)) throw error;
  // Server-side failures are not explained to the end user; the platform sees them in its logs.
  return error.status >= 500
    ? { status: 502, html: errorPage('The provider could not complete the connection. Please try again.', branding) }
    : { status: error.status, html: errorPage(error.message, branding) };
}

async function outcome(work: () => Promise<Outcome>): Promise<Outcome> {
  try {
    return await work();
  } catch (error) {
    return errorOutcome(error);
  }
}

function send(reply: FastifyReply, result: Outcome): FastifyReply {
  reply.headers(SECURITY_HEADERS);
  // Back to the platform with 303: after a form post the browser follows with GET, never re-posting the credential.
  if ('redirect' in result) return reply.header('content-security-policy', DEFAULT_CSP).redirect(result.redirect, result.back ? 303 : 302);
  return reply.status(result.status).header('content-security-policy', result.csp ?? DEFAULT_CSP).header('content-type', 'text/html; charset=utf-8').send(result.html);
}

/** Can an end user connect this provider on the page? OAuth kinds need the platform's OAuth app. */
const connectable = (p: Provider) => p.authType === 'api_key' || p.authType === 'basic' || p.oauthApp !== undefined;

/** End-user mistakes the form can be retried after; any other refusal ends the session. */
const RETRYABLE = new Set(['credentials_invalid', 'validation_failed', 'text_invalid', 'provider_not_allowed']);

export function registerConnectRoutes(
  app: HttpServer,
  deps: { sessions: ConnectSessions; providers: ProviderService; connections: ConnectionService; flow: OAuthFlow; maxConnections: (workspaceId: string) => Promise<number>; returnUrls: WebUrlPolicy; withWorkspace: WithWorkspace },
): void {
  const { sessions, providers } = deps;
  const publicRoute = { config: { auth: 'public' as const } };
  const write = { auth: { scope: 'connections:write' as const } };

  app.post('/v1/connect-sessions', { config: write, schema: { operationId: 'createConnectSession', summary: 'Create a connect session', description: 'A short-lived hosted page (`url`) where an end user connects an account; token shown once. An OAuth provider without its OAuth app: 422 `provider_not_configured`.', tags: ['connections'], errors: ['provider_invalid', 'provider_not_configured', 'not_found'], body: CreateSession, response: { 201: Session } } }, async (request, reply) => {
    const principal = principalOf(request);
    const unconfigured: string[] = [];
    for (const key of request.body.allowedProviders ?? []) {
      const provider = await providers.get(key).catch(() => { throw new BulkheadError('provider_invalid', `unknown provider "${key}"`); });
      if (!connectable(provider)) unconfigured.push(key);
    }
    if (unconfigured.length > 0) {
      throw new BulkheadError('provider_not_configured', `${unconfigured.join(', ')} ${unconfigured.length === 1 ? 'has' : 'have'} no OAuth app configured, so an end user could not connect ${unconfigured.length === 1 ? 'it' : 'them'} (PUT /v1/providers/{key}/oauth-app)`, { details: { providers: unconfigured } });
    }
    let returnUrl: string | undefined;
    if (request.body.returnUrl !== undefined) {
      const checked = checkWebUrl(request.body.returnUrl, deps.returnUrls);
      if (!checked.ok) throw bodyFieldInvalid('/returnUrl', checked.reason);
      returnUrl = checked.url.href;
    }
    return reply.status(201).send(await sessions.create(principal.workspaceId, keyContext(request), { ...request.body, returnUrl }));
  });

  app.get('/v1/connect-sessions/:id', { config: write, schema: { operationId: 'getConnectSession', summary: 'Read a connect session', description: '`pending`, `completed` (`connectionId`), `expired` or `failed` (`failure.reason`).', tags: ['connections'], errors: ['not_found'], params: IdParams('connectSession'), response: { 200: SessionView } } }, async (request) =>
    sessions.view(principalOf(request).workspaceId, request.params.id),
  );

  const usable = async (allowed: readonly string[] | null) => {
    const all = await Promise.all((await providers.list()).map((p) => providers.get(p.key)));
    return all.filter((p) => (allowed === null || allowed.includes(p.key)) && connectable(p));
  };

  /** The page for a session with an outcome: back to the platform if it gave a return URL. */
  const finished = async (session: { workspaceId: string; id: string }, page: () => Outcome): Promise<Outcome> => {
    const target = await sessions.returnFor(session.workspaceId, session.id);
    return target === undefined ? page() : { redirect: target, back: true };
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
        const { row, branding } = await sessions.lookup(request.params.token);
        // An expired link sends the end user back (status=expired) when the platform said where.
        const target = sessions.statusOf(row) === 'expired' ? returnTo(row, 'expired') : undefined;
        if (target !== undefined) return { redirect: target, back: true };
        try {
          sessions.check(row);
        } catch (error) {
          return errorOutcome(error, branding);
        }
        return { status: 200, html: providerPage(request.params.token, await usable(row.allowed_providers), branding), csp: pageCsp({ branding, returnUrl: row.return_url }) };
      })),
    );

    scope.post('/connect/:token/credentials', { ...publicRoute, schema: { hide: true, params: TokenParams } }, async (request, reply) =>
      send(reply, await outcome(async () => {
        const { row: session, branding } = await sessions.lookup(request.params.token);
        sessions.check(session);
        const { provider: key, ...credentials } = (request.body ?? {}) as Record<string, string>;
        const allowed = await usable(session.allowed_providers);
        const provider = allowed.find((p) => p.key === key);
        if (!provider || provider.authType === 'oauth2_code') throw new BulkheadError('provider_not_allowed', 'this provider is not offered by this link');
        const ctx = { actor: { type: 'connect_session' as const, id: session.id } };
        await sessions.claim(session);
        const ref = { workspaceId: session.workspace_id, id: session.id };
        try {
          const created = await deps.connections.create(session.workspace_id, ctx, { provider: provider.key, name: session.connection_name ?? `${provider.key}-${session.id.slice(-6)}`, credentials }, { maxConnections: await deps.maxConnections(session.workspace_id) });
          await deps.withWorkspace(session.workspace_id, (tx) => sessions.complete(tx, session.id, { connectionId: created.id, provider: provider.key, reauthorized: false }));
        } catch (error) {
          if (error instanceof BulkheadError && !RETRYABLE.has(error.code)) {
            await sessions.fail(session.workspace_id, session.id, { reason: 'connection_rejected', detail: error.message, provider: provider.key });
            return finished(ref, () => errorOutcome(error, branding));
          }
          await sessions.release(session);
          return errorOutcome(error, branding);
        }
        return finished(ref, () => ({ status: 200, html: donePage(provider.name, branding) }));
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
        const result = await deps.flow.callback(request.query);
        const branding = await sessions.branding(result.session.workspaceId);
        if (!result.ok) {
          // Only a callback that moved the session to failed sends the end user back; a replay
          // of a finished one just shows the error.
          return result.failed ? finished(result.session, () => errorOutcome(result.error, branding)) : errorOutcome(result.error, branding);
        }
        return finished(result.session, () => ({ status: 200, html: donePage(result.connection.provider, branding) }));
      })),
    );
    done();
  });
}
