/** Read-only views of what Bulkhead recorded in the workspace: relay calls and operational events. */
import { Type } from 'typebox';
import type { WithWorkspace } from '../db/tenant-tx.js';
import { principalOf } from '../http/auth.js';
import { named, Page, PageQuery, Timestamp } from '../http/schemas.js';
import type { HttpServer } from '../http/server.js';
import { idPattern } from '../ids.js';
import { decodeCursor, toPage } from '../pagination.js';

const RelayCall = named('RelayCall', Type.Object({
  id: Type.String(),
  connectionId: Type.String(),
  method: Type.String(),
  host: Type.String(),
  pathTemplate: Type.String(),
  status: Type.Union([Type.Integer(), Type.Null()]),
  outcome: Type.String(),
  durationMs: Type.Integer(),
  requestBytes: Type.Integer(),
  responseBytes: Type.Integer(),
  attempts: Type.Integer(),
  occurredAt: Timestamp,
}));

const OperationalEvent = named('OperationalEvent', Type.Object({
  id: Type.String(),
  type: Type.String(),
  resource: Type.Union([Type.String(), Type.Null()]),
  resourceId: Type.Union([Type.String(), Type.Null()]),
  payload: Type.Record(Type.String(), Type.Unknown()),
  occurredAt: Timestamp,
}));

interface RelayRow {
  id: string;
  connection_id: string;
  method: string;
  host: string;
  path_template: string;
  status: number | null;
  outcome: string;
  duration_ms: number;
  request_bytes: number;
  response_bytes: number;
  attempts: number;
  occurred_at: Date;
}

interface EventRow {
  id: string;
  type: string;
  resource: string | null;
  resource_id: string | null;
  payload: Record<string, unknown>;
  occurred_at: Date;
}

export function registerWorkspaceLogRoutes(app: HttpServer, deps: { withWorkspace: WithWorkspace }): void {
  const read = { config: { auth: { scope: 'connections:read' as const } } };

  app.get('/v1/relay-log', { ...read, schema: { operationId: 'listRelayLog', summary: 'List relay calls', description: 'Lists the relay calls of the workspace, newest first, optionally for one connection: method, host, path, status, outcome and duration (never bodies or credentials).', tags: ['relay'], querystring: Type.Object({ ...PageQuery.properties, connectionId: Type.Optional(Type.String({ maxLength: 40 })) }, { additionalProperties: false }), response: { 200: Page(RelayCall) } } }, (request) =>
    deps.withWorkspace(principalOf(request).workspaceId, async (tx) => {
      const after = decodeCursor(request.query.cursor, new RegExp(idPattern('relayCall')));
      // Newest first: the id is time-ordered.
      const { rows } = await tx.query<RelayRow>(
        `SELECT id, connection_id, method, host, path_template, status, outcome, duration_ms, request_bytes, response_bytes, attempts, occurred_at FROM relay_log
         WHERE ($1::text IS NULL OR id < $1) AND ($2::text IS NULL OR connection_id = $2) ORDER BY id DESC LIMIT $3`,
        [after ?? null, request.query.connectionId ?? null, request.query.limit + 1],
      );
      return toPage(rows, request.query.limit, (r) => r.id, (r) => ({
        id: r.id, connectionId: r.connection_id, method: r.method, host: r.host, pathTemplate: r.path_template, status: r.status, outcome: r.outcome,
        durationMs: r.duration_ms, requestBytes: r.request_bytes, responseBytes: r.response_bytes, attempts: r.attempts, occurredAt: r.occurred_at.toISOString(),
      }));
    }),
  );

  app.get('/v1/operational-events', { ...read, schema: { operationId: 'listOperationalEvents', summary: 'List operational events', description: 'Lists what happened to the workspace\'s connections without a request (refresh failures, reauthorisation needed, revocations), newest first.', tags: ['connections'], querystring: PageQuery, response: { 200: Page(OperationalEvent) } } }, (request) =>
    deps.withWorkspace(principalOf(request).workspaceId, async (tx) => {
      const after = decodeCursor(request.query.cursor, new RegExp(idPattern('operationalEvent')));
      const { rows } = await tx.query<EventRow>(
        'SELECT id, type, resource, resource_id, payload, occurred_at FROM operational_events WHERE ($1::text IS NULL OR id < $1) ORDER BY id DESC LIMIT $2',
        [after ?? null, request.query.limit + 1],
      );
      return toPage(rows, request.query.limit, (r) => r.id, (r) => ({ id: r.id, type: r.type, resource: r.resource, resourceId: r.resource_id, payload: r.payload, occurredAt: r.occurred_at.toISOString() }));
    }),
  );
}
