/**
 * Integrations over HTTP.
 *
 *  - Templates (`/v1/integrations`): the platform's, admin token only. Publish, list, read; a
 *    published version cannot be changed or deleted, so there is no route for either.
 *  - Catalog (`/v1/integration-catalog`): the same templates as a workspace sees them
 *    (`integrations:read`), to render a config form and pick what to bind: versions, config
 *    fields, slots and triggers, not the steps.
 *  - Instances (`/v1/instances`): a workspace's deployments (`integrations:read` / `:write`).
 *
 * A template body is checked by validateTemplate rather than by the route schema, so every
 * problem comes back at once as `template_invalid` with JSON pointers (the JSON Schema is served
 * at GET /v1/integrations/schema).
 */
import { Type } from 'typebox';
import type { WithWorkspace } from '../db/tenant-tx.js';
import { adminContext, keyContext, principalOf } from '../http/auth.js';
import { Id, IdParams, named, Nullable, Page, PageQuery, Timestamp } from '../http/schemas.js';
import type { HttpServer } from '../http/server.js';
import type { InstanceService } from './instances.js';
import type { IntegrationService, VersionManifest } from './integrations.js';
import { type TemplateDocument, templateSchema } from './template.js';

/** Instance bodies are config values and ids: far below the server-wide limit. */
export const INSTANCE_BODY_LIMIT = 64 * 1024;

const Version = Type.String({ minLength: 1, maxLength: 128 });
const VersionSummary = Type.Object({ version: Type.String(), createdAt: Timestamp });
const Integration = named('Integration', Type.Object({
  id: Id('integration'),
  name: Type.String(),
  description: Nullable(Type.String()),
  latestVersion: Type.String(),
  versions: Type.Array(VersionSummary, { description: 'every published version, oldest first' }),
  createdAt: Timestamp,
  updatedAt: Timestamp,
}));
// Typed as the service's interfaces; serialised as open objects (fast-json-stringify keeps every key of a record).
const OpenObject = <T>(description?: string) => Type.Unsafe<T>(Type.Record(Type.String(), Type.Unknown(), description === undefined ? {} : { description }));
const DOCUMENT = 'An integration template document; its JSON Schema is at GET /v1/integrations/schema';
// The top-level members are named so unknown ones are refused here; what each must hold is
// judged by validateTemplate against the published schema, which lists every problem at once.
const Document = named('IntegrationTemplate', Type.Object(
  Object.fromEntries(['$schema', 'name', 'version', 'description', 'config', 'connections', 'destinations', 'inboundSources', 'triggers', 'steps', 'capabilities'].map((k) => [k, Type.Optional(Type.Unknown())])),
  { description: DOCUMENT, additionalProperties: false },
));
const IntegrationVersion = named('IntegrationVersion', Type.Object({ integrationId: Id('integration'), name: Type.String(), version: Type.String(), document: OpenObject<TemplateDocument>(DOCUMENT), createdAt: Timestamp }));
const Manifest = named('IntegrationManifest', Type.Object({
  integrationId: Id('integration'),
  name: Type.String(),
  version: Type.String(),
  description: Nullable(Type.String()),
  config: OpenObject<VersionManifest['config']>('config fields by name (type, required, default, ...)'),
  connections: OpenObject<VersionManifest['connections']>('connection slots: provider, scopes, description'),
  destinations: OpenObject<VersionManifest['destinations']>(),
  inboundSources: OpenObject<VersionManifest['inboundSources']>(),
  triggers: Type.Unsafe<VersionManifest['triggers']>(Type.Array(Type.Unknown())),
  createdAt: Timestamp,
}));
const VersionParams = Type.Object({ id: Type.String({ maxLength: 64 }), version: Version }, { additionalProperties: false });

const SlotKey = Type.String({ minLength: 1, maxLength: 64 });
const BoundId = Type.String({ minLength: 1, maxLength: 40 });
const Bindings = (description: string) => Type.Record(SlotKey, BoundId, { maxProperties: 20, description });
const BindingPatch = (description: string) => Type.Record(SlotKey, Nullable(BoundId), { maxProperties: 20, description: `${description}; null unbinds a slot` });
const ConfigValues = Type.Record(Type.String({ minLength: 1, maxLength: 64 }), Type.Union([Type.String({ maxLength: 10_000 }), Type.Number(), Type.Boolean(), Type.Null()]), {
  maxProperties: 50,
  description: 'Config values by field name. Secret fields are write-only; null clears a value',
});

const Attention = Type.Object({
  kind: Type.Union([Type.Literal('connection'), Type.Literal('destination'), Type.Literal('inboundSource')]),
  slot: Type.String(),
  reason: Type.Union([Type.Literal('unbound'), Type.Literal('missing'), Type.Literal('needs_reauth'), Type.Literal('revoked'), Type.Literal('error'), Type.Literal('disabled')]),
});
const Instance = named('Instance', Type.Object({
  id: Id('instance'),
  name: Type.String(),
  integrationId: Id('integration'),
  integrationName: Type.String(),
  version: Type.String(),
  enabled: Type.Boolean(),
  state: Type.Union([Type.Literal('active'), Type.Literal('disabled'), Type.Literal('needs_attention')]),
  attention: Type.Array(Attention),
  config: Type.Record(Type.String(), Type.Unknown(), { description: 'non-secret values' }),
  secrets: Type.Array(Type.Object({ name: Type.String(), set: Type.Boolean() }), { description: 'secret fields and whether each holds a value (values are never returned)' }),
  connections: Type.Record(Type.String(), Type.String()),
  destinations: Type.Record(Type.String(), Type.String()),
  inboundSources: Type.Record(Type.String(), Type.String()),
  logPayloads: Type.Boolean(),
  createdAt: Timestamp,
  updatedAt: Timestamp,
}));
const Name = Type.String({ minLength: 1, maxLength: 200 });
const CreateInstance = Type.Object(
  {
    name: Name,
    integrationId: Type.String({ maxLength: 64 }),
    version: Version,
    config: Type.Optional(ConfigValues),
    connections: Type.Optional(Bindings('connection slot → connection id; a connection slot may stay unbound (the instance then needs attention)')),
    destinations: Type.Optional(Bindings('destination slot → destination id; every destination slot must be bound')),
    inboundSources: Type.Optional(Bindings('inbound source slot → inbound source id; every inbound slot must be bound')),
    enabled: Type.Optional(Type.Boolean()),
    logPayloads: Type.Optional(Type.Boolean({ description: 'record step payloads (sealed) in executions' })),
  },
  { additionalProperties: false },
);
const UpdateInstance = Type.Object(
  {
    name: Type.Optional(Name),
    config: Type.Optional(Type.Record(Type.String({ minLength: 1, maxLength: 64 }), Type.Union([Type.String({ maxLength: 10_000 }), Type.Number(), Type.Boolean(), Type.Null()]), {
      maxProperties: 50,
      description: 'Replaces every non-secret value (fields not sent get their default); secrets not sent keep their stored value, null clears one',
    })),
    connections: Type.Optional(BindingPatch('connection slot → connection id')),
    destinations: Type.Optional(BindingPatch('destination slot → destination id')),
    inboundSources: Type.Optional(BindingPatch('inbound source slot → inbound source id')),
    enabled: Type.Optional(Type.Boolean()),
    logPayloads: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false, minProperties: 1 },
);
const UpgradeInstance = Type.Object(
  {
    version: Version,
    config: Type.Optional(ConfigValues),
    connections: Type.Optional(BindingPatch('bindings for the new version')),
    destinations: Type.Optional(BindingPatch('bindings for the new version')),
    inboundSources: Type.Optional(BindingPatch('bindings for the new version')),
  },
  { additionalProperties: false },
);
const InstanceListQuery = Type.Object({ ...PageQuery.properties, integrationId: Type.Optional(Type.String({ maxLength: 64 })) }, { additionalProperties: false });

/** Templates: platform admin only. */
export function registerIntegrationRoutes(app: HttpServer, deps: { integrations: IntegrationService }): void {
  const { integrations } = deps;
  const admin = { config: { auth: 'admin' as const } };

  app.get('/v1/integrations/schema', { ...admin, schema: { operationId: 'getIntegrationTemplateSchema', summary: 'Read the template JSON Schema', description: 'Returns the JSON Schema (draft 2020-12) that integration template documents are checked against.', tags: ['integrations'], response: { 200: Type.Unknown({ description: 'JSON Schema (draft 2020-12) of a template document' }) } } }, () =>
    Promise.resolve(templateSchema),
  );
  app.post('/v1/integrations', { ...admin, schema: { operationId: 'createIntegration', summary: 'Publish an integration template', description: 'Publishes the first version of an integration template. Every problem in the document is reported at once, each with its JSON pointer.', tags: ['integrations'], errors: ['template_invalid', 'transform_syntax_error', 'name_taken', 'version_exists'], body: Document, response: { 201: Integration } } }, async (request, reply) =>
    reply.status(201).send(await integrations.create(adminContext(request), request.body)),
  );
  app.get('/v1/integrations', { ...admin, schema: { operationId: 'listIntegrations', summary: 'List integration templates', description: 'Lists the published integration templates with their versions.', tags: ['integrations'], querystring: PageQuery, response: { 200: Page(Integration) } } }, (request) => integrations.list(request.query));
  app.get('/v1/integrations/:id', { ...admin, schema: { operationId: 'getIntegration', summary: 'Read an integration template', description: 'Returns one template with every published version.', tags: ['integrations'], params: IdParams('integration'), response: { 200: Integration } } }, (request) =>
    integrations.get(request.params.id),
  );
  app.post('/v1/integrations/:id/versions', { ...admin, schema: { operationId: 'createIntegrationVersion', summary: 'Publish a new template version', description: 'Publishes a newer version of a template (semver, greater than the latest). Instances move to it only when upgraded.', tags: ['integrations'], errors: ['template_invalid', 'transform_syntax_error', 'version_exists', 'version_not_newer'], params: IdParams('integration'), body: Document, response: { 201: IntegrationVersion } } }, async (request, reply) =>
    reply.status(201).send(await integrations.publishVersion(adminContext(request), request.params.id, request.body)),
  );
  app.get('/v1/integrations/:id/versions/:version', { ...admin, schema: { operationId: 'getIntegrationVersion', summary: 'Read a template version', description: 'Returns one published version\'s document.', tags: ['integrations'], params: VersionParams, response: { 200: IntegrationVersion } } }, (request) =>
    integrations.getVersion(request.params.id, request.params.version),
  );
}

/** The published templates, read by a workspace's key (`integrations:read`). */
export function registerIntegrationCatalogRoutes(app: HttpServer, deps: { withWorkspace: WithWorkspace; integrations: IntegrationService }): void {
  const { withWorkspace, integrations } = deps;
  const read = { config: { auth: { scope: 'integrations:read' as const } } };
  const ws = (request: Parameters<typeof principalOf>[0]) => principalOf(request).workspaceId;

  app.get('/v1/integration-catalog', { ...read, schema: { operationId: 'listIntegrationCatalog', summary: 'List the integration catalog', description: 'Lists the integrations a workspace can install.', tags: ['integrations'], querystring: PageQuery, response: { 200: Page(Integration) } } }, (request) =>
    withWorkspace(ws(request), (tx) => integrations.catalog.list(tx, request.query)),
  );
  app.get('/v1/integration-catalog/:id', { ...read, schema: { operationId: 'getIntegrationCatalogEntry', summary: 'Read a catalog integration', description: 'Returns one installable integration with its versions.', tags: ['integrations'], params: IdParams('integration'), response: { 200: Integration } } }, (request) =>
    withWorkspace(ws(request), (tx) => integrations.catalog.get(tx, request.params.id)),
  );
  app.get('/v1/integration-catalog/:id/versions/:version', { ...read, schema: { operationId: 'getIntegrationManifest', summary: 'Read a catalog version\'s manifest', description: 'Returns what installing a version needs: its config fields (secret ones marked), connection slots and destination slots.', tags: ['integrations'], params: VersionParams, response: { 200: Manifest } } }, (request) =>
    withWorkspace(ws(request), (tx) => integrations.catalog.version(tx, request.params.id, request.params.version)),
  );
}

/** Instances of the calling key's workspace. */
export function registerInstanceRoutes(app: HttpServer, deps: { withWorkspace: WithWorkspace; instances: InstanceService; limits: { instances: number } }): void {
  const { withWorkspace, instances } = deps;
  const scope = (s: 'integrations:read' | 'integrations:write') => ({ config: { auth: { scope: s } } });
  const ws = (request: Parameters<typeof principalOf>[0]) => principalOf(request).workspaceId;
  const bodyLimit = Math.min(INSTANCE_BODY_LIMIT, app.initialConfig.bodyLimit ?? INSTANCE_BODY_LIMIT);

  app.post('/v1/instances', { ...scope('integrations:write'), bodyLimit, schema: { operationId: 'createInstance', summary: 'Install an integration', description: 'Installs a version of an integration into the workspace with its config, secrets (sealed) and bindings to connections and destinations.', tags: ['instances'], errors: ['config_invalid', 'binding_invalid', 'limit_exceeded', 'name_taken', 'ciphertext_invalid', 'key_version_retired', 'workspace_key_missing', 'root_key_missing'], body: CreateInstance, response: { 201: Instance } } }, async (request, reply) => {
    const created = await withWorkspace(ws(request), (tx) => instances.create(tx, keyContext(request), request.body, { max: deps.limits.instances }));
    return reply.status(201).send(created);
  });
  app.get('/v1/instances', { ...scope('integrations:read'), schema: { operationId: 'listInstances', summary: 'List instances', description: 'Lists the workspace\'s installed integrations.', tags: ['instances'], querystring: InstanceListQuery, response: { 200: Page(Instance) } } }, (request) =>
    withWorkspace(ws(request), (tx) => instances.list(tx, request.query)),
  );
  app.get('/v1/instances/:id', { ...scope('integrations:read'), schema: { operationId: 'getInstance', summary: 'Read an instance', description: 'Returns one instance with its non-secret config and which secret fields hold a value.', tags: ['instances'], params: IdParams('instance'), response: { 200: Instance } } }, (request) =>
    withWorkspace(ws(request), (tx) => instances.get(tx, request.params.id)),
  );
  app.patch('/v1/instances/:id', { ...scope('integrations:write'), bodyLimit, schema: { operationId: 'updateInstance', summary: 'Update an instance', description: 'Changes an instance\'s config, secrets, bindings or enabled state. Secrets not sent keep their stored value; null clears one.', tags: ['instances'], errors: ['config_invalid', 'binding_invalid', 'name_taken', 'ciphertext_invalid', 'key_version_retired', 'workspace_key_missing', 'root_key_missing'], params: IdParams('instance'), body: UpdateInstance, response: { 200: Instance } } }, (request) =>
    withWorkspace(ws(request), (tx) => instances.update(tx, keyContext(request), request.params.id, request.body)),
  );
  app.delete('/v1/instances/:id', { ...scope('integrations:write'), schema: { operationId: 'deleteInstance', summary: 'Uninstall an integration', description: 'Deletes an instance and its sealed secrets.', tags: ['instances'], params: IdParams('instance'), response: { 204: Type.Null() } } }, async (request, reply) => {
    await withWorkspace(ws(request), (tx) => instances.remove(tx, keyContext(request), request.params.id));
    return reply.status(204).send(null);
  });
  app.post('/v1/instances/:id/upgrade', { ...scope('integrations:write'), bodyLimit, schema: { operationId: 'upgradeInstance', summary: 'Upgrade an instance', description: 'Moves an instance to a newer version of its integration, migrating its config; a config the new version refuses answers 409 `config_migration_failed`.', tags: ['instances'], errors: ['config_invalid', 'binding_invalid', 'config_migration_failed', 'version_not_newer', 'ciphertext_invalid', 'key_version_retired', 'workspace_key_missing', 'root_key_missing'], params: IdParams('instance'), body: UpgradeInstance, response: { 200: Instance } } }, (request) =>
    withWorkspace(ws(request), (tx) => instances.upgrade(tx, keyContext(request), request.params.id, request.body)),
  );
}
