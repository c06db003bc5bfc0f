/**
 * API key routes. Platform: mint a key into a workspace (admin token). Workspace: manage the
 * workspace's own keys with a key holding `keys:manage`; the workspace is the calling key's.
 */
import { Type } from 'typebox';
import type { WithWorkspace } from '../db/tenant-tx.js';
import { adminContext, keyContext, principalOf } from '../http/auth.js';
import { errorResponses, Id, IdParams, NullableTimestamp, Page, PageQuery, Timestamp } from '../http/schemas.js';
import type { HttpServer } from '../http/server.js';
import type { TenancyService } from '../tenancy/tenancy-service.js';
import { type ApiKeyService, MAX_GRACE_SECONDS } from './api-keys.js';
import type { KeyAuthenticator } from './authenticate.js';
import { allScopes } from './scopes.js';

const ScopeSchema = Type.Union(allScopes.map((s) => Type.Literal(s)));

const ApiKey = Type.Object({
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
});

const ApiKeyWithSecret = Type.Object({
  ...ApiKey.properties,
  key: Type.String({ description: 'The key itself. Shown once; store it now' }),
});

const CreateApiKey = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 200 }),
    scopes: Type.Array(ScopeSchema, { minItems: 1, maxItems: allScopes.length, uniqueItems: true }),
    allowedCidrs: Type.Optional(Type.Array(Type.String({ maxLength: 49 }), { maxItems: 50, uniqueItems: true })),
    expiresAt: Type.Optional(Timestamp),
  },
  { additionalProperties: false },
);

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
  const adminSecurity = [{ adminToken: [] }];
  const keySecurity = [{ apiKey: [] }];

  app.post('/v1/workspaces/:id/api-keys', { ...admin, schema: { tags: ['platform'], security: adminSecurity, params: IdParams('workspace'), body: CreateApiKey, response: { 201: ApiKeyWithSecret, ...errorResponses } } }, async (request, reply) => {
    const workspace = await deps.tenancy.getWorkspace(request.params.id);
    const { view, key } = await withWorkspace(workspace.id, (tx) => apiKeys.create(tx, adminContext(request), request.body, { environment: workspace.environment }));
    return reply.status(201).send({ ...view, key });
  });
  app.get('/v1/workspaces/:id/api-keys', { ...admin, schema: { tags: ['platform'], security: adminSecurity, params: IdParams('workspace'), querystring: PageQuery, response: { 200: Page(ApiKey), ...errorResponses } } }, async (request) => {
    const workspace = await deps.tenancy.getWorkspace(request.params.id);
    return withWorkspace(workspace.id, (tx) => apiKeys.list(tx, request.query));
  });

  app.post('/v1/api-keys', { ...manage, schema: { tags: ['api-keys'], security: keySecurity, body: CreateApiKey, response: { 201: ApiKeyWithSecret, ...errorResponses } } }, async (request, reply) => {
    const principal = principalOf(request);
    const { view, key } = await withWorkspace(principal.workspaceId, (tx) =>
      apiKeys.create(tx, keyContext(request), request.body, { environment: principal.environment, creatorScopes: principal.scopes }),
    );
    return reply.status(201).send({ ...view, key });
  });
  app.get('/v1/api-keys', { ...manage, schema: { tags: ['api-keys'], security: keySecurity, querystring: PageQuery, response: { 200: Page(ApiKey), ...errorResponses } } }, async (request) =>
    withWorkspace(principalOf(request).workspaceId, (tx) => apiKeys.list(tx, request.query)),
  );
  app.get('/v1/api-keys/:id', { ...manage, schema: { tags: ['api-keys'], security: keySecurity, params: IdParams('apiKey'), response: { 200: ApiKey, ...errorResponses } } }, async (request) =>
    withWorkspace(principalOf(request).workspaceId, (tx) => apiKeys.get(tx, request.params.id)),
  );
  app.post('/v1/api-keys/:id/rotate', { ...manage, schema: { tags: ['api-keys'], security: keySecurity, params: IdParams('apiKey'), body: Rotate, response: { 201: RotateResult, ...errorResponses } } }, async (request, reply) => {
    const principal = principalOf(request);
    const result = await withWorkspace(principal.workspaceId, (tx) =>
      apiKeys.rotate(tx, keyContext(request), request.params.id, { gracePeriodSeconds: request.body.gracePeriodSeconds, environment: principal.environment }),
    );
    // Evict after commit, so no request can re-cache the old state in between.
    deps.authenticator.forget(result.previous.id);
    return reply.status(201).send({ ...result.view, key: result.key, previous: result.previous });
  });
  app.delete('/v1/api-keys/:id', { ...manage, schema: { tags: ['api-keys'], security: keySecurity, params: IdParams('apiKey'), response: { 204: Type.Null(), ...errorResponses } } }, async (request, reply) => {
    await withWorkspace(principalOf(request).workspaceId, (tx) => apiKeys.revoke(tx, keyContext(request), request.params.id));
    deps.authenticator.forget(request.params.id);
    return reply.status(204).send(null);
  });
}
