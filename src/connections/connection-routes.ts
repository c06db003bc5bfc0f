/**
 * Connection routes. The workspace is the calling key's; credentials are accepted on create and
 * replace, and only metadata (type, masked hint, expiry, scopes, status) is ever returned.
 */
import { Type } from 'typebox';
import { keyContext, principalOf } from '../http/auth.js';
import { Id, IdParams, named, NullableTimestamp, Page, PageQuery, Timestamp } from '../http/schemas.js';
import type { HttpServer } from '../http/server.js';
import type { ConnectionService } from './connections.js';

const Status = named('ConnectionStatus', Type.Union([Type.Literal('active'), Type.Literal('needs_reauth'), Type.Literal('revoked'), Type.Literal('error')]));

const Connection = named('Connection', Type.Object({
  id: Id('connection'),
  provider: Type.String(),
  name: Type.String(),
  authType: Type.String(),
  status: Status,
  statusReason: Type.Union([Type.String(), Type.Null()]),
  hint: Type.Union([Type.String(), Type.Null()], { description: 'A masked hint such as the last 4 characters; never the credential' }),
  scopes: Type.Array(Type.String()),
  metadata: Type.Record(Type.String(), Type.Unknown()),
  expiresAt: NullableTimestamp,
  lastRefreshedAt: NullableTimestamp,
  createdAt: Timestamp,
  updatedAt: Timestamp,
}));

const Credentials = Type.Record(Type.String({ maxLength: 50 }), Type.String({ maxLength: 8192 }), {
  maxProperties: 5,
  description: '`{ apiKey }`, `{ username, password }`, nothing for client credentials, or `{ accessToken, refreshToken?, expiresAt? }` to import OAuth tokens',
});
const Metadata = Type.Record(Type.String({ maxLength: 100 }), Type.Unknown(), { maxProperties: 50 });

const CreateConnection = Type.Object(
  {
    provider: Type.String({ minLength: 1, maxLength: 64 }),
    name: Type.String({ minLength: 1, maxLength: 200 }),
    credentials: Type.Optional(Credentials),
    metadata: Type.Optional(Metadata),
  },
  { additionalProperties: false },
);

const UpdateConnection = Type.Object(
  { name: Type.Optional(CreateConnection.properties.name), metadata: Type.Optional(Metadata), credentials: Type.Optional(Credentials) },
  { additionalProperties: false, minProperties: 1 },
);

const ListQuery = Type.Object({ ...PageQuery.properties, provider: Type.Optional(Type.String({ maxLength: 64 })), status: Type.Optional(Status) }, { additionalProperties: false });

export function registerConnectionRoutes(app: HttpServer, deps: { connections: ConnectionService; defaultMaxConnections: number }): void {
  const { connections } = deps;
  const read = { config: { auth: { scope: 'connections:read' as const } } };
  const write = { config: { auth: { scope: 'connections:write' as const } } };

  app.post('/v1/connections', { ...write, schema: { operationId: 'createConnection', summary: 'Create a connection', description: 'Stores a credential for a provider, sealed with the workspace key: an API key, basic credentials, client credentials (fetched now) or imported OAuth tokens. Only metadata is ever returned.', tags: ['connections'], errors: ['name_taken', 'credentials_invalid', 'provider_not_configured', 'connection_limit_exceeded', 'egress_blocked', 'egress_failed', 'egress_timeout', 'oauth_exchange_failed', 'ciphertext_invalid', 'key_version_retired', 'workspace_key_missing', 'root_key_missing'], body: CreateConnection, response: { 201: Connection } } }, async (request, reply) => {
    const principal = principalOf(request);
    const view = await connections.create(principal.workspaceId, keyContext(request), request.body, {
      maxConnections: principal.tenantConnectionsPerWorkspace ?? deps.defaultMaxConnections,
    });
    return reply.status(201).send(view);
  });

  app.get('/v1/connections', { ...read, schema: { operationId: 'listConnections', summary: 'List connections', description: 'Lists the workspace\'s connections, optionally by provider or status. Credentials are never returned.', tags: ['connections'], querystring: ListQuery, response: { 200: Page(Connection) } } }, (request) =>
    connections.list(principalOf(request).workspaceId, request.query),
  );

  app.get('/v1/connections/:id', { ...read, schema: { operationId: 'getConnection', summary: 'Read a connection', description: 'Returns one connection\'s metadata: type, masked hint, scopes, expiry and status.', tags: ['connections'], params: IdParams('connection'), response: { 200: Connection } } }, (request) =>
    connections.get(principalOf(request).workspaceId, request.params.id),
  );

  app.patch('/v1/connections/:id', { ...write, schema: { operationId: 'updateConnection', summary: 'Update a connection', description: 'Renames a connection, replaces its metadata, or replaces its credential (sealed again; the connection becomes active).', tags: ['connections'], errors: ['name_taken', 'credentials_invalid', 'conflict', 'ciphertext_invalid', 'key_version_retired', 'workspace_key_missing', 'root_key_missing'], params: IdParams('connection'), body: UpdateConnection, response: { 200: Connection } } }, (request) =>
    connections.update(principalOf(request).workspaceId, keyContext(request), request.params.id, request.body),
  );

  app.delete('/v1/connections/:id', { ...write, schema: { operationId: 'deleteConnection', summary: 'Delete a connection', description: 'Deletes a connection and its sealed credential, revoking the token at the provider where the provider supports it (`revokedAtProvider`).', tags: ['connections'], errors: ['ciphertext_invalid', 'key_version_retired', 'workspace_key_missing', 'root_key_missing'], params: IdParams('connection'), response: { 200: Type.Object({ deleted: Type.Literal(true), revokedAtProvider: Type.Boolean() }) } } }, async (request) => {
    const { revokedAtProvider } = await connections.remove(principalOf(request).workspaceId, keyContext(request), request.params.id);
    return { deleted: true as const, revokedAtProvider };
  });

  app.post('/v1/connections/:id/refresh', { ...write, schema: { operationId: 'refreshConnection', summary: 'Refresh a connection\'s token', description: 'Refreshes an OAuth connection\'s access token now, whatever its expiry, and returns the connection.', tags: ['connections'], errors: ['connection_not_active', 'oauth_refresh_failed', 'provider_not_configured', 'egress_blocked', 'egress_failed', 'egress_timeout', 'ciphertext_invalid', 'key_version_retired', 'workspace_key_missing', 'root_key_missing'], params: IdParams('connection'), response: { 200: Connection } } }, async (request) => {
    const workspaceId = principalOf(request).workspaceId;
    await connections.refresh(workspaceId, request.params.id, { force: true });
    return connections.get(workspaceId, request.params.id);
  });
}
