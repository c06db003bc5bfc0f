/**
 * API key routes. Platform: mint a key into a workspace (admin token, unrestricted). Workspace:
 * manage the workspace's own keys with a key holding `keys:manage`; the workspace is the calling
 * key's, and the calling key (the principal, which carries its grant) is the `caller` that
 * narrows what it can see and make (see `api-keys.ts`).
 */
import { Type } from 'typebox';
import type { WithWorkspace } from '../db/tenant-tx.js';
import { adminContext, keyContext, principalOf } from '../http/auth.js';
import { Id, IdParams, named, NullableTimestamp, Page, PageQuery, Timestamp } from '../http/schemas.js';
import type { HttpServer } from '../http/server.js';
import type { TenancyService } from '../tenancy/tenancy-service.js';
import { type ApiKeyService, MAX_GRACE_SECONDS } from './api-keys.js';
import type { KeyAuthenticator } from './authenticate.js';
import { allScopes } from './scopes.js';

// The title names the thing in validation problems: `unknown scope "x"; allowed: …`.
const ScopeSchema = Type.Union(allScopes.map((s) => Type.Literal(s)), { title: 'scope' });

const ApiKey = named('ApiKey', Type.Object({
  id: Id('apiKey'),
  workspaceId: Id('workspace'),
  name: Type.String(),
  prefix: Type.String({ description: 'The first characters of the key, for recognising it' }),
  scopes: Type.Array(Type.String()),
  allowedCidrs: Type.Array(Type.String()),
  status: Type.Union([Type.Literal('active'), Type.Literal('expired'), Type.Literal('revoked')]),
  expiresAt: NullableTimestamp,
  revokedAt: NullableTimestamp,
  lastUsedAt: NullableTimestamp,
  rotatedFrom: Type.Union([Type.String(), Type.Null()]),
  createdAt: Timestamp,
}));

const ApiKeyWithSecret = named('ApiKeyWithSecret', Type.Object({
  ...ApiKey.properties,
  key: Type.String({ description: 'The key itself. Shown once; store it now' }),
}));

const CreateApiKey = named('CreateApiKey', Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 200 }),
    scopes: Type.Array(ScopeSchema, { minItems: 1, maxItems: allScopes.length, uniqueItems: true }),
    allowedCidrs: Type.Optional(Type.Array(Type.String({ maxLength: 49 }), {
      maxItems: 50,
      uniqueItems: true,
      description: 'Addresses the key may be used from (empty: anywhere). Minted by a CIDR-bound key: each must lie inside one of that key\'s CIDRs, and omitted means that key\'s list',
    })),
    expiresAt: Type.Optional(Type.String({ format: 'date-time', description: 'When the key stops working (omitted: never). Minted by an expiring key: no later than that key, and omitted means its expiry' })),
  },
  { additionalProperties: false },
));

// Shared by the workspace routes: what a key may do to other keys (see api-keys.ts).
const narrower = 'A key acts only on keys whose scopes its own cover (`r:write` covers `r:read`, only `*` covers `*`); any other key answers 404 exactly as a missing one.';

const Rotate = Type.Object(
  { gracePeriodSeconds: Type.Integer({ minimum: 0, maximum: MAX_GRACE_SECONDS, default: 86_400 }) },
  { additionalProperties: false },
);

const RotateResult = Type.Object({ ...ApiKeyWithSecret.properties, previous: ApiKey });

export function registerApiKeyRoutes(
  app: HttpServer,
  deps: { apiKeys: ApiKeyService; tenancy: TenancyService; withWorkspace: WithWorkspace; authenticator: KeyAuthenticator },
): void {
  const { apiKeys, withWorkspace } = deps;
  const admin = { config: { auth: 'admin' as const } };
  const manage = { config: { auth: { scope: 'keys:manage' as const } } };

  app.post('/v1/workspaces/:id/api-keys', { ...admin, schema: { operationId: 'createWorkspaceApiKey', tags: ['api-keys'], summary: 'Mint a key into a workspace', description: 'The admin token is unrestricted: any scopes, CIDRs and expiry.', params: IdParams('workspace'), body: CreateApiKey, response: { 201: ApiKeyWithSecret } } }, async (request, reply) => {
    const workspace = await deps.tenancy.getWorkspace(request.params.id);
    const { view, key } = await withWorkspace(workspace.id, (tx) => apiKeys.create(tx, adminContext(request), request.body, { environment: workspace.environment }));
    return reply.status(201).send({ ...view, key });
  });
  app.get('/v1/workspaces/:id/api-keys', { ...admin, schema: { operationId: 'listWorkspaceApiKeys', description: 'Lists every key of the workspace, whatever its scopes or status (the platform sees them all).', tags: ['api-keys'], summary: 'List every key of a workspace', params: IdParams('workspace'), querystring: PageQuery, response: { 200: Page(ApiKey) } } }, async (request) => {
    const workspace = await deps.tenancy.getWorkspace(request.params.id);
    return withWorkspace(workspace.id, (tx) => apiKeys.list(tx, request.query));
  });

  app.post('/v1/api-keys', { ...manage, schema: { operationId: 'createApiKey', tags: ['api-keys'], errors: ['restriction_exceeds_parent'], summary: 'Mint a key no wider than the calling key', description: 'Delegation only narrows: the scopes must be covered by the calling key\'s (else 403 `insufficient_scope`); the new key\'s CIDRs must lie within the calling key\'s and its expiry be no later (else 403 `restriction_exceeds_parent`, naming the `field`). Omitted CIDRs or expiry inherit the calling key\'s.', body: CreateApiKey, response: { 201: ApiKeyWithSecret } } }, async (request, reply) => {
    const principal = principalOf(request);
    const { view, key } = await withWorkspace(principal.workspaceId, (tx) =>
      apiKeys.create(tx, keyContext(request), request.body, { environment: principal.environment, caller: principal }),
    );
    return reply.status(201).send({ ...view, key });
  });
  app.get('/v1/api-keys', { ...manage, schema: { operationId: 'listApiKeys', tags: ['api-keys'], summary: 'List the keys the calling key may act on', description: `${narrower} The calling key is listed too.`, querystring: PageQuery, response: { 200: Page(ApiKey) } } }, async (request) =>
    withWorkspace(principalOf(request).workspaceId, (tx) => apiKeys.list(tx, { ...request.query, caller: principalOf(request) })),
  );
  app.get('/v1/api-keys/:id', { ...manage, schema: { operationId: 'getApiKey', tags: ['api-keys'], summary: 'Read a key', description: narrower, params: IdParams('apiKey'), response: { 200: ApiKey } } }, async (request) =>
    withWorkspace(principalOf(request).workspaceId, (tx) => apiKeys.get(tx, request.params.id, principalOf(request))),
  );
  app.post('/v1/api-keys/:id/rotate', { ...manage, schema: { operationId: 'rotateApiKey', tags: ['api-keys'], errors: ['conflict', 'restriction_exceeds_parent'], summary: 'Rotate a key: a successor with the same grant, the old key kept for the grace period', description: `${narrower} The successor copies the old key's scopes, CIDRs and expiry and is handed to the caller, so the calling key must be able to mint it: a key with tighter CIDRs or an earlier expiry than the one it rotates gets 403 \`restriction_exceeds_parent\`. A key may always rotate itself.`, params: IdParams('apiKey'), body: Rotate, response: { 201: RotateResult } } }, async (request, reply) => {
    const principal = principalOf(request);
    const result = await withWorkspace(principal.workspaceId, (tx) =>
      apiKeys.rotate(tx, keyContext(request), request.params.id, { gracePeriodSeconds: request.body.gracePeriodSeconds, environment: principal.environment, caller: principal }),
    );
    // Evict after commit, so no request can re-cache the old state in between.
    deps.authenticator.forget(result.previous.id);
    return reply.status(201).send({ ...result.view, key: result.key, previous: result.previous });
  });
  app.delete('/v1/api-keys/:id', { ...manage, schema: { operationId: 'revokeApiKey', tags: ['api-keys'], summary: 'Revoke a key', description: narrower, params: IdParams('apiKey'), response: { 204: Type.Null() } } }, async (request, reply) => {
    await withWorkspace(principalOf(request).workspaceId, (tx) => apiKeys.revoke(tx, keyContext(request), request.params.id, principalOf(request)));
    deps.authenticator.forget(request.params.id);
    return reply.status(204).send(null);
  });
}
