/** Platform routes (admin token): tenants and workspaces. */
import { Type } from 'typebox';
import { adminContext } from '../http/auth.js';
import { Id, IdParams, named, Page, PageQuery, Timestamp } from '../http/schemas.js';
import type { HttpServer } from '../http/server.js';
import { BrandingSchema } from './branding.js';
import type { TenancyService } from './tenancy-service.js';

const Slug = Type.String({ pattern: '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$', description: 'lower-case letters, digits and dashes' });
const Name = Type.String({ minLength: 1, maxLength: 200 });
const Environment = Type.String({ pattern: '^[a-z][a-z0-9-]{0,31}$', description: 'e.g. `production`, `sandbox`, `staging`; `production` workspaces get `bk_live_` keys' });
const Limits = named('TenantLimits', Type.Object(
  {
    requestsPerMinute: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000_000 })),
    connectionsPerWorkspace: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
    eventsPerMonth: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000_000_000 })),
    eventPayloadBytes: Type.Optional(Type.Integer({ minimum: 1024, maximum: 1_048_576 })),
    executionRetentionDays: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650, description: 'Days finished executions are kept (default BULKHEAD_EXECUTION_RETENTION_DAYS)' })),
    retentionDays: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650, description: 'Days events, deliveries and the relay and operational logs are kept (default BULKHEAD_RETENTION_DAYS)' })),
  },
  { additionalProperties: false },
));

const Tenant = named('Tenant', Type.Object({
  id: Id('tenant'),
  name: Type.String(),
  slug: Type.String(),
  region: Type.String(),
  isolationTier: Type.String(),
  limits: Limits,
  branding: Type.Union([BrandingSchema, Type.Null()]),
  createdAt: Timestamp,
  updatedAt: Timestamp,
}));

const Workspace = named('Workspace', Type.Object({
  id: Id('workspace'),
  tenantId: Id('tenant'),
  name: Type.String(),
  environment: Type.String(),
  placement: Type.String(),
  createdAt: Timestamp,
  updatedAt: Timestamp,
}));

const CreateTenant = Type.Object(
  { name: Name, slug: Slug, region: Type.Optional(Type.String({ pattern: '^[a-z0-9-]{1,32}$' })), limits: Type.Optional(Limits) },
  { additionalProperties: false },
);
const PatchTenant = Type.Object({ name: Type.Optional(Name), limits: Type.Optional(Limits), branding: Type.Optional(Type.Union([BrandingSchema, Type.Null()], { description: 'null clears it' })) }, { additionalProperties: false, minProperties: 1 });
const CreateWorkspace = Type.Object({ name: Name, environment: Environment }, { additionalProperties: false });
const PatchWorkspace = Type.Object({ name: Type.Optional(Name) }, { additionalProperties: false, minProperties: 1 });
const DeleteTenantQuery = Type.Object({ cascade: Type.Boolean({ default: false }) }, { additionalProperties: false });

const admin = { auth: 'admin' as const };

/** `afterWorkspaceDeleted` runs after the deletion committed (e.g. to evict cached API keys). */
export function registerTenancyRoutes(app: HttpServer, service: TenancyService, hooks: { afterWorkspaceDeleted: (workspaceId: string) => void }): void {
  app.post('/v1/tenants', { config: admin, schema: { operationId: 'createTenant', summary: 'Create a tenant', description: 'Creates a tenant with its limits (omitted limits use the server defaults). The slug is unique across the platform.', tags: ['tenancy'], errors: ['slug_taken'], body: CreateTenant, response: { 201: Tenant } } }, async (request, reply) =>
    reply.status(201).send(await service.createTenant(adminContext(request), request.body)),
  );
  app.get('/v1/tenants', { config: admin, schema: { operationId: 'listTenants', summary: 'List tenants', description: 'Lists the platform\'s tenants, oldest first, a page at a time.', tags: ['tenancy'], querystring: PageQuery, response: { 200: Page(Tenant) } } }, async (request) =>
    service.listTenants(request.query),
  );
  app.get('/v1/tenants/:id', { config: admin, schema: { operationId: 'getTenant', summary: 'Read a tenant', description: 'Returns one tenant with its limits.', tags: ['tenancy'], params: IdParams('tenant'), response: { 200: Tenant } } }, async (request) =>
    service.getTenant(request.params.id),
  );
  app.patch('/v1/tenants/:id', { config: admin, schema: { operationId: 'updateTenant', summary: 'Update a tenant', description: 'Renames a tenant, changes its limits (unsent ones kept) or its connect-page branding.', tags: ['tenancy'], params: IdParams('tenant'), body: PatchTenant, response: { 200: Tenant } } }, async (request) =>
    service.updateTenant(adminContext(request), request.params.id, request.body),
  );
  app.delete('/v1/tenants/:id', { config: admin, schema: { operationId: 'deleteTenant', summary: 'Delete a tenant', description: 'Deletes a tenant. A tenant that still has workspaces answers 409 `tenant_not_empty` unless `cascade=true`, which deletes its workspaces and everything in them.', tags: ['tenancy'], errors: ['tenant_not_empty'], params: IdParams('tenant'), querystring: DeleteTenantQuery, response: { 204: Type.Null() } } }, async (request, reply) => {
    const deleted = await service.deleteTenant(adminContext(request), request.params.id, { cascade: request.query.cascade });
    deleted.forEach(hooks.afterWorkspaceDeleted);
    return reply.status(204).send(null);
  });

  app.post('/v1/tenants/:id/workspaces', { config: admin, schema: { operationId: 'createWorkspace', summary: 'Create a workspace in a tenant', description: 'Creates a workspace. `production` workspaces get `bk_live_` keys, every other environment `bk_test_` keys. Names are unique within the tenant.', tags: ['tenancy'], errors: ['name_taken'], params: IdParams('tenant'), body: CreateWorkspace, response: { 201: Workspace } } }, async (request, reply) =>
    reply.status(201).send(await service.createWorkspace(adminContext(request), request.params.id, request.body)),
  );
  app.get('/v1/tenants/:id/workspaces', { config: admin, schema: { operationId: 'listWorkspaces', summary: 'List a tenant\'s workspaces', description: 'Lists the workspaces of one tenant, a page at a time.', tags: ['tenancy'], params: IdParams('tenant'), querystring: PageQuery, response: { 200: Page(Workspace) } } }, async (request) =>
    service.listWorkspaces(request.params.id, request.query),
  );
  app.get('/v1/workspaces/:id', { config: admin, schema: { operationId: 'getWorkspace', summary: 'Read a workspace', description: 'Returns one workspace with its tenant, environment and placement.', tags: ['tenancy'], params: IdParams('workspace'), response: { 200: Workspace } } }, async (request) =>
    service.getWorkspace(request.params.id),
  );
  app.patch('/v1/workspaces/:id', { config: admin, schema: { operationId: 'updateWorkspace', summary: 'Rename a workspace', description: 'Changes a workspace\'s name (unique within its tenant).', tags: ['tenancy'], errors: ['name_taken'], params: IdParams('workspace'), body: PatchWorkspace, response: { 200: Workspace } } }, async (request) =>
    service.updateWorkspace(adminContext(request), request.params.id, request.body),
  );
  app.delete('/v1/workspaces/:id', { config: admin, schema: { operationId: 'deleteWorkspace', summary: 'Delete a workspace', description: 'Deletes a workspace and everything in it (keys, connections, events, deliveries, audit log). Its API keys stop working at once.', tags: ['tenancy'], params: IdParams('workspace'), response: { 204: Type.Null() } } }, async (request, reply) => {
    await service.deleteWorkspace(adminContext(request), request.params.id);
    hooks.afterWorkspaceDeleted(request.params.id);
    return reply.status(204).send(null);
  });
}
