/** Platform routes (admin token): tenants and workspaces. */
import { Type } from 'typebox';
import { adminContext } from '../http/auth.js';
import { errorResponses, Id, IdParams, Page, PageQuery, Timestamp } from '../http/schemas.js';
import type { HttpServer } from '../http/server.js';
import type { TenancyService } from './tenancy-service.js';

const Slug = Type.String({ pattern: '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$', description: 'lower-case letters, digits and dashes' });
const Name = Type.String({ minLength: 1, maxLength: 200 });
const Environment = Type.String({ pattern: '^[a-z][a-z0-9-]{0,31}$', description: 'e.g. `production`, `sandbox`, `staging`; `production` workspaces get `bk_live_` keys' });
const Limits = Type.Object(
  {
    requestsPerMinute: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000_000 })),
    connectionsPerWorkspace: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
    eventsPerMonth: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000_000_000 })),
    eventPayloadBytes: Type.Optional(Type.Integer({ minimum: 1024, maximum: 1_048_576 })),
    executionRetentionDays: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650, description: 'Days finished executions are kept (default BULKHEAD_EXECUTION_RETENTION_DAYS)' })),
  },
  { additionalProperties: false },
);

const Tenant = Type.Object({
  id: Id('tenant'),
  name: Type.String(),
  slug: Type.String(),
  region: Type.String(),
  isolationTier: Type.String(),
  limits: Limits,
  createdAt: Timestamp,
  updatedAt: Timestamp,
});

const Workspace = Type.Object({
  id: Id('workspace'),
  tenantId: Id('tenant'),
  name: Type.String(),
  environment: Type.String(),
  placement: Type.String(),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});

const CreateTenant = Type.Object(
  { name: Name, slug: Slug, region: Type.Optional(Type.String({ pattern: '^[a-z0-9-]{1,32}$' })), limits: Type.Optional(Limits) },
  { additionalProperties: false },
);
const PatchTenant = Type.Object({ name: Type.Optional(Name), limits: Type.Optional(Limits) }, { additionalProperties: false, minProperties: 1 });
const CreateWorkspace = Type.Object({ name: Name, environment: Environment }, { additionalProperties: false });
const PatchWorkspace = Type.Object({ name: Type.Optional(Name) }, { additionalProperties: false, minProperties: 1 });
const DeleteTenantQuery = Type.Object({ cascade: Type.Boolean({ default: false }) }, { additionalProperties: false });

const admin = { auth: 'admin' as const };
const security = [{ adminToken: [] }];

/** `afterWorkspaceDeleted` runs after the deletion committed (e.g. to evict cached API keys). */
export function registerTenancyRoutes(app: HttpServer, service: TenancyService, hooks: { afterWorkspaceDeleted: (workspaceId: string) => void }): void {
  app.post('/v1/tenants', { config: admin, schema: { tags: ['platform'], security, body: CreateTenant, response: { 201: Tenant, ...errorResponses } } }, async (request, reply) =>
    reply.status(201).send(await service.createTenant(adminContext(request), request.body)),
  );
  app.get('/v1/tenants', { config: admin, schema: { tags: ['platform'], security, querystring: PageQuery, response: { 200: Page(Tenant), ...errorResponses } } }, async (request) =>
    service.listTenants(request.query),
  );
  app.get('/v1/tenants/:id', { config: admin, schema: { tags: ['platform'], security, params: IdParams('tenant'), response: { 200: Tenant, ...errorResponses } } }, async (request) =>
    service.getTenant(request.params.id),
  );
  app.patch('/v1/tenants/:id', { config: admin, schema: { tags: ['platform'], security, params: IdParams('tenant'), body: PatchTenant, response: { 200: Tenant, ...errorResponses } } }, async (request) =>
    service.updateTenant(adminContext(request), request.params.id, request.body),
  );
  app.delete('/v1/tenants/:id', { config: admin, schema: { tags: ['platform'], security, params: IdParams('tenant'), querystring: DeleteTenantQuery, response: { 204: Type.Null(), ...errorResponses } } }, async (request, reply) => {
    const deleted = await service.deleteTenant(adminContext(request), request.params.id, { cascade: request.query.cascade });
    deleted.forEach(hooks.afterWorkspaceDeleted);
    return reply.status(204).send(null);
  });

  app.post('/v1/tenants/:id/workspaces', { config: admin, schema: { tags: ['platform'], security, params: IdParams('tenant'), body: CreateWorkspace, response: { 201: Workspace, ...errorResponses } } }, async (request, reply) =>
    reply.status(201).send(await service.createWorkspace(adminContext(request), request.params.id, request.body)),
  );
  app.get('/v1/tenants/:id/workspaces', { config: admin, schema: { tags: ['platform'], security, params: IdParams('tenant'), querystring: PageQuery, response: { 200: Page(Workspace), ...errorResponses } } }, async (request) =>
    service.listWorkspaces(request.params.id, request.query),
  );
  app.get('/v1/workspaces/:id', { config: admin, schema: { tags: ['platform'], security, params: IdParams('workspace'), response: { 200: Workspace, ...errorResponses } } }, async (request) =>
    service.getWorkspace(request.params.id),
  );
  app.patch('/v1/workspaces/:id', { config: admin, schema: { tags: ['platform'], security, params: IdParams('workspace'), body: PatchWorkspace, response: { 200: Workspace, ...errorResponses } } }, async (request) =>
    service.updateWorkspace(adminContext(request), request.params.id, request.body),
  );
  app.delete('/v1/workspaces/:id', { config: admin, schema: { tags: ['platform'], security, params: IdParams('workspace'), response: { 204: Type.Null(), ...errorResponses } } }, async (request, reply) => {
    await service.deleteWorkspace(adminContext(request), request.params.id);
    hooks.afterWorkspaceDeleted(request.params.id);
    return reply.status(204).send(null);
  });
}
