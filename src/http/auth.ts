/**
 * Authentication, authorisation and rate limiting, decided per route from its declared
 * `config.auth`. A route that declares nothing cannot be registered (see `server.ts`), so
 * "forgot to protect the endpoint" is a start-up failure, not a vulnerability.
 *
 * All of it runs in `onRequest`, before the body is read: an unauthenticated client cannot make
 * us parse its payload.
 *
 * A route takes one kind of credential (the platform admin token, or a workspace API key) or, for
 * reads the platform and workspaces share (the provider catalog), either. A credential of the
 * other kind is told so (`401 wrong_credential_kind`, with the kind the route takes) instead of
 * being judged as a bad credential of the route's kind: "the admin token is not valid" sends a
 * client holding a perfectly good API key looking in the wrong place.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ActionContext } from '../audit/context.js';
import { BulkheadError } from '../errors.js';
import type { KeyAuthenticator, Principal } from '../identity/authenticate.js';
import type { LastUsedRecorder } from '../identity/last-used.js';
import { hasApiKeyPrefix } from '../identity/api-key-format.js';
import { hasScope, type Scope } from '../identity/scopes.js';
import type { AuthFailureLimiter, RateLimiter, RateLimitState } from '../limits/rate-limit.js';

/**
 * `admin`: the admin token only. `{ scope }`: an API key holding the scope. `{ scope, alsoAdmin }`:
 * either; the handler sees `request.principal` undefined for the admin token.
 */
export type AuthRequirement = 'public' | 'admin' | { readonly scope: Scope; readonly alsoAdmin?: true };

export type CredentialKind = 'admin_token' | 'api_key';

declare module 'fastify' {
  interface FastifyContextConfig {
    auth?: AuthRequirement;
  }
  interface FastifyRequest {
    principal: Principal | undefined;
  }
}

export interface AuthDeps {
  readonly adminToken: string;
  readonly authenticator: KeyAuthenticator;
  readonly rateLimiter: RateLimiter;
  readonly authFailures: AuthFailureLimiter;
  readonly lastUsed: LastUsedRecorder;
  readonly now: () => Date;
}

const digest = (value: string): Buffer => createHash('sha256').update(value, 'utf8').digest();

function bearer(request: FastifyRequest): string {
  const header = request.headers.authorization;
  const match = header === undefined ? null : /^Bearer ([\x21-\x7e]{1,512})$/.exec(header);
  if (!match?.[1]) throw new BulkheadError('unauthenticated', 'send credentials as "Authorization: Bearer <token>"');
  return match[1];
}

const WRONG_KIND: Record<CredentialKind, string> = {
  admin_token: 'this route takes the platform admin token, not a workspace API key',
  api_key: 'this route takes a workspace API key (bk_live_… / bk_test_…), not the platform admin token',
};

const wrongKind = (expected: CredentialKind, got: CredentialKind): BulkheadError =>
  new BulkheadError('wrong_credential_kind', WRONG_KIND[expected], { details: { expected, got } });

function setRateHeaders(reply: FastifyReply, state: RateLimitState): void {
  reply.header('RateLimit-Limit', state.limit);
  reply.header('RateLimit-Remaining', state.remaining);
  reply.header('RateLimit-Reset', state.resetSeconds);
}

export function createAuthHook(deps: AuthDeps) {
  // Compare digests, so the comparison takes the same time whatever the presented length.
  const adminDigest = digest(deps.adminToken);

  /** The admin token, anything in the API key format, or neither (judged as the route's kind). */
  const kindOf = (token: string): CredentialKind | undefined =>
    timingSafeEqual(digest(token), adminDigest) ? 'admin_token' : hasApiKeyPrefix(token) ? 'api_key' : undefined;

  async function identify(request: FastifyRequest, requirement: Exclude<AuthRequirement, 'public'>): Promise<Principal | undefined> {
    const token = bearer(request);
    const kind = kindOf(token);
    const takesAdmin = requirement === 'admin' || requirement.alsoAdmin === true;
    if (kind === 'admin_token') {
      if (takesAdmin) return undefined;
      throw wrongKind('api_key', kind);
    }
    if (requirement === 'admin') {
      if (kind === 'api_key') throw wrongKind('admin_token', kind);
      throw new BulkheadError('admin_token_invalid', 'the admin token is not valid');
    }
    return deps.authenticator.authenticate(token, request.ip);
  }

  return async function authenticate(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const requirement = request.routeOptions.config.auth;
    // The not-found handler is the one "route" without a declared requirement.
    if (requirement === 'public' || request.is404) return;
    if (requirement === undefined) throw new BulkheadError('internal_error', 'route has no auth requirement');

    let principal: Principal | undefined;
    try {
      principal = await identify(request, requirement);
    } catch (error) {
      if (!(error instanceof BulkheadError && error.status === 401)) throw error;
      // Failures are throttled, not successes: an address past its allowance still gets in with a
      // valid credential (held to that credential's budgets below), and a failure from it says
      // only "too many failures", never which check failed.
      const blocked = await deps.authFailures.recordFailure(request.ip);
      if (blocked > 0) {
        reply.header('Retry-After', blocked);
        throw new BulkheadError('rate_limited', 'too many failed authentications from this address', { details: { scope: 'auth_failures', retryAfter: blocked } });
      }
      throw error;
    }
    // The admin token, on a route that takes it.
    if (requirement === 'admin' || principal === undefined) return;

    if (!hasScope(principal.scopes, requirement.scope)) {
      throw new BulkheadError('insufficient_scope', `this API key lacks the "${requirement.scope}" scope`, { details: { requiredScope: requirement.scope } });
    }
    const outcome = await deps.rateLimiter.consume(principal);
    setRateHeaders(reply, outcome.state);
    if (!outcome.allowed) {
      reply.header('Retry-After', outcome.retryAfterSeconds);
      throw new BulkheadError('rate_limited', `the ${outcome.scope.replace('_', ' ')} request budget is spent`, { details: { scope: outcome.scope, retryAfter: outcome.retryAfterSeconds } });
    }
    deps.lastUsed.record(principal.workspaceId, principal.keyId, deps.now());
    request.principal = principal;
  };
}

/** The principal of a route that declared a scope (the hook guarantees it is there). */
export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new BulkheadError('internal_error', 'route reached without a principal');
  return request.principal;
}

export function adminContext(request: FastifyRequest): ActionContext {
  return { actor: { type: 'admin', id: 'platform' }, requestId: request.id, ip: request.ip };
}

export function keyContext(request: FastifyRequest): ActionContext {
  return { actor: { type: 'api_key', id: principalOf(request).keyId }, requestId: request.id, ip: request.ip };
}
