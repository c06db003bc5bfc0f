/** Events over HTTP. `202` means the event and its deliveries are committed (the deliveries' own routes: delivery/routes.ts). */
import { Type } from 'typebox';
import type { FastifyRequest } from 'fastify';
import type { Config } from '../config.js';
import type { WithWorkspace } from '../db/tenant-tx.js';
import { deliveryReader } from '../delivery/deliveries.js';
import { Delivery } from '../delivery/routes.js';
import { principalOf } from '../http/auth.js';
import { Id, IdParams, named, Nullable, Page, PageQuery, Timestamp } from '../http/schemas.js';
import type { HttpServer } from '../http/server.js';
import { createIngestCoalescer } from './coalescer.js';
import type { EventInput, EventLimits, EventService } from './ingest.js';

const IdempotencyKey = Type.String({ minLength: 1, maxLength: 200, pattern: '^[\\x21-\\x7e]+$' });
const EventBody = named('EventInput', Type.Object(
  {
    type: Type.String({ minLength: 1, maxLength: 200 }),
    resource: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    resourceId: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    payload: Type.Unknown(),
    idempotencyKey: Type.Optional(IdempotencyKey),
  },
  { additionalProperties: false },
));
const Accepted = named('AcceptedEvent', Type.Object({ id: Id('event'), type: Type.String(), resource: Nullable(Type.String()), resourceId: Nullable(Type.String()), createdAt: Timestamp, deliveries: Type.Integer(), executions: Type.Integer({ description: 'Executions queued (rule transforms, instance triggers); the deliveries they produce are written when they run' }), replayed: Type.Boolean() }));
const Event = named('Event', Type.Object({ id: Id('event'), type: Type.String(), resource: Nullable(Type.String()), resourceId: Nullable(Type.String()), payload: Type.Unknown(), createdAt: Timestamp }));
export function registerEventRoutes(app: HttpServer, deps: { withWorkspace: WithWorkspace; events: EventService; config: Config; onIngested?: () => void }): void {
  const { withWorkspace, events, config } = deps;
  // Concurrent single events of one workspace share a commit (see coalescer.ts); each still gets its own answer.
  const coalescer = createIngestCoalescer({ withWorkspace, events, maxGroup: 500 });
  const limitsOf = (request: FastifyRequest): EventLimits => {
    const p = principalOf(request);
    return { maxPayloadBytes: p.tenantEventPayloadBytes ?? config.eventPayloadBytes, eventsPerMonth: p.tenantEventsPerMonth ?? config.eventsPerMonth };
  };
  const headerKey = (request: FastifyRequest) => {
    const value = request.headers['idempotency-key'];
    return typeof value === 'string' && /^[\x21-\x7e]{1,200}$/.test(value) ? value : undefined;
  };
  const accepted = (r: Awaited<ReturnType<EventService['ingest']>>[number]) => {
    const { payload: _payload, ...event } = r.event;
    return { ...event, deliveries: r.deliveries, executions: r.executions, replayed: r.replayed };
  };

  app.post('/v1/events', { config: { auth: { scope: 'events:write' as const } }, schema: { operationId: 'createEvent', summary: 'Send an event', description: 'Accepts one event and writes a delivery for every matching rule and destination in the same commit: `202` means it is durable. An `idempotencyKey` (or `Idempotency-Key` header) replays the first answer for 24 hours (`replayed: true`).', tags: ['events'], errors: ['idempotency_key_reused', 'invalid_event_type', 'quota_exceeded', 'ciphertext_invalid', 'key_version_retired', 'workspace_key_missing', 'root_key_missing'], body: EventBody, response: { 202: Accepted } } }, async (request, reply) => {
    const input: EventInput = { ...request.body, idempotencyKey: request.body.idempotencyKey ?? headerKey(request) };
    const result = await coalescer.ingest(principalOf(request).workspaceId, input, limitsOf(request));
    if (result.deliveries + result.executions > 0 && !result.replayed) deps.onIngested?.();
    if (result.replayed) reply.header('idempotent-replayed', 'true');
    return reply.status(202).send(accepted(result));
  });

  app.post('/v1/events/batch', { config: { auth: { scope: 'events:write' as const } }, schema: { operationId: 'createEventBatch', summary: 'Send events in a batch', description: 'Accepts up to 500 events in one commit: all are accepted or none. Each answer says how many deliveries and executions it queued.', tags: ['events'], errors: ['idempotency_key_reused', 'invalid_event_type', 'quota_exceeded', 'ciphertext_invalid', 'key_version_retired', 'workspace_key_missing', 'root_key_missing'], body: Type.Object({ events: Type.Array(EventBody, { minItems: 1, maxItems: 500 }) }, { additionalProperties: false }), response: { 202: Type.Object({ data: Type.Array(Accepted) }) } } }, async (request, reply) => {
    const results = await withWorkspace(principalOf(request).workspaceId, (tx) => events.ingest(tx, request.body.events, limitsOf(request)));
    if (results.some((r) => r.deliveries + r.executions > 0 && !r.replayed)) deps.onIngested?.();
    return reply.status(202).send({ data: results.map(accepted) });
  });

  app.get('/v1/events', { config: { auth: { scope: 'events:read' as const } }, schema: { operationId: 'listEvents', summary: 'List events', description: 'Lists the workspace\'s events, newest first, by type, resource and time range.', tags: ['events'], querystring: Type.Object({ ...PageQuery.properties, type: Type.Optional(Type.String({ maxLength: 200 })), resource: Type.Optional(Type.String({ maxLength: 200 })), since: Type.Optional(Timestamp), until: Type.Optional(Timestamp) }, { additionalProperties: false }), response: { 200: Page(Event) } } }, (request) =>
    withWorkspace(principalOf(request).workspaceId, (tx) => events.list(tx, request.query)),
  );

  app.get('/v1/events/:id', { config: { auth: { scope: 'events:read' as const } }, schema: { operationId: 'getEvent', summary: 'Read an event', description: 'Returns one event with its payload and its deliveries.', tags: ['events'], params: IdParams('event'), response: { 200: Type.Object({ ...Event.properties, deliveries: Type.Array(Delivery) }) } } }, (request) =>
    withWorkspace(principalOf(request).workspaceId, async (tx) => {
      const event = await events.get(tx, request.params.id);
      return { ...event, deliveries: await deliveryReader.forEvent(tx, event.id) };
    }),
  );
}
