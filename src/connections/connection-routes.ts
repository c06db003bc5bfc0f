/**
 * Connection routes. The workspace is the calling key's; credentials are accepted on create and
 * replace, and only metadata (type, masked hint, expiry, scopes, status) is ever returned.
 */
import { Type } from 'typebox';
import { keyContext, principalOf } from '../http/auth.js';
import { errorResponses, Id, IdParams, NullableTimestamp, Page, PageQuery, Timestamp } from '../http/schemas.js';
import type { HttpServer } from '../http/server.js';
import type { ConnectionService } from './connections.js';

const Status = Type.Union([Type.Literal('active'), Type.Literal('needs_reauth'), Type.Literal('revoked'), Type.Literal('error')]);

const Connection = Type.Object({
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
});

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
  const security = [{ apiKey: [] }];
  const tags = ['connections'];

  app.post('/v1/connections', { ...write, schema: { tags, security, body: CreateConnection, response: { 201: Connection, ...errorResponses } } }, async (request, reply) => {
    const principal = principalOf(request);
    const view = await connections.create(principal.workspaceId, keyContext(request), request.body, {
      maxConnections: principal.tenantConnectionsPerWorkspace ?? deps.defaultMaxConnections,
    });
    return reply.status(201).send(view);
  });

  app.get('/v1/connections', { ...read, schema: { tags, security, querystring: ListQuery, response: { 200: Page(Connection), ...errorResponses } } }, (request) =>
    connections.list(principalOf(request).workspaceId, request.query),
  );

  app.get('/v1/connections/:id', { ...read, schema: { tags, security, params: IdParams('connection'), response: { 200: Connection, ...errorResponses } } }, (request) =>
    connections.get(principalOf(request).workspaceId, request.params.id),
  );

  app.patch('/v1/connections/:id', { ...write, schema: { tags, security, params: IdParams('connection'), body: UpdateConnection, response: { 200: Connection, ...errorResponses } } }, (request) =>
    connections.update(principalOf(request).workspaceId, keyContext(request), request.params.id, request.body),
  );

  app.delete('/v1/connections/:id', { ...write, schema: { tags, security, params: IdParams('connection'), response: { 200: Type.Object({ deleted: Type.Literal(true), revokedAtProvider: Type.Boolean() }), ...errorResponses } } }, async (request) => {
    const { revokedAtProvider } = await connections.remove(principalOf(request).workspaceId, keyContext(request), request.params.id);
    return { deleted: true as const, revokedAtProvider };
  });

  app.post('/v1/connections/:id/refresh', { ...write, schema: { tags, security, params: IdParams('connection'), response: { 200: Connection, ...errorResponses } } }, async (request) => {
    const workspaceId = principalOf(request).workspaceId;
    await connections.refresh(workspaceId, request.params.id, { force: true });
    return connections.get(workspaceId, request.params.id);
  });
}
