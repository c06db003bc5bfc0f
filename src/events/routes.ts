/** Events and deliveries over HTTP. `202` means the event and its deliveries are committed. */
import { Type } from 'typebox';
import type { FastifyRequest } from 'fastify';
import type { Config } from '../config.js';
import type { WithWorkspace } from '../db/tenant-tx.js';
import { deliveryReader } from '../delivery/deliveries.js';
import { principalOf } from '../http/auth.js';
import { Id, IdParams, named, Nullable, Page, PageQuery, Timestamp } from '../http/schemas.js';
import type { HttpServer } from '../http/server.js';
import { createIngestCoalescer } from './coalescer.js';
import type { EventInput, EventLimits, EventService } from './ingest.js';
import type { Vault } from '../vault/vault.js';

const Status = named('DeliveryStatus', Type.Union([Type.Literal('pending'), Type.Literal('delivering'), Type.Literal('retrying'), Type.Literal('delivered'), Type.Literal('failed'), Type.Literal('cancelled')]));
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
const Delivery = named('Delivery', Type.Object({
  id: Id('delivery'),
  eventId: Nullable(Type.String()),
  destinationId: Type.String(),
  ruleId: Nullable(Type.String()),
  executionId: Nullable(Type.String()),
  status: Status,
  attemptsThisRound: Type.Integer({ minimum: 0, description: 'Attempts in the current round, which the retry schedule counts; a manual retry or recover starts a new round at 0' }),
  attemptsTotal: Type.Integer({ minimum: 0, description: 'Attempts in all rounds: the length of the attempt history (`attempts[]` on GET /v1/deliveries/{id})' }),
  nextAttemptAt: Nullable(Timestamp),
  lastStatus: Nullable(Type.Integer()),
  lastError: Nullable(Type.String()),
  orderingKey: Nullable(Type.String()),
  createdAt: Timestamp,
  updatedAt: Timestamp,
}));

const Attempt = named('DeliveryAttempt', Type.Object({ attempt: Type.Integer(), startedAt: Timestamp, durationMs: Type.Integer(), status: Type.Union([Type.Integer(), Type.Null()]), error: Type.Union([Type.String(), Type.Null()]), responseBody: Type.Union([Type.String(), Type.Null()]) }));

export function registerEventRoutes(app: HttpServer, deps: { withWorkspace: WithWorkspace; events: EventService; config: Config; vault: Vault; now: () => Date; onIngested?: () => void }): void {
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

  app.get('/v1/deliveries', { config: { auth: { scope: 'deliveries:read' as const } }, schema: { operationId: 'listDeliveries', summary: 'List deliveries', description: 'Lists the workspace\'s deliveries, newest first, by status, destination or event.', tags: ['deliveries'], querystring: Type.Object({ ...PageQuery.properties, status: Type.Optional(Status), destinationId: Type.Optional(Type.String({ maxLength: 40 })), eventId: Type.Optional(Type.String({ maxLength: 40 })) }, { additionalProperties: false }), response: { 200: Page(Delivery) } } }, (request) =>
    withWorkspace(principalOf(request).workspaceId, (tx) => deliveryReader.list(tx, request.query)),
  );

  app.get('/v1/deliveries/:id', { config: { auth: { scope: 'deliveries:read' as const } }, schema: { operationId: 'getDelivery', summary: 'Read a delivery', description: 'Returns one delivery with every attempt made (status, duration, error, the start of the response body).', tags: ['deliveries'], errors: ['ciphertext_invalid', 'key_version_retired', 'workspace_key_missing', 'root_key_missing'], params: IdParams('delivery'), response: { 200: Type.Object({ ...Delivery.properties, attempts: Type.Array(Attempt) }) } } }, (request) =>
    withWorkspace(principalOf(request).workspaceId, async (tx) => {
      const delivery = await deliveryReader.get(tx, request.params.id);
      return { ...delivery, attempts: await deliveryReader.attempts(tx, deps.vault, delivery.id) };
    }),
  );

  app.post('/v1/deliveries/:id/retry', { config: { auth: { scope: 'deliveries:write' as const } }, schema: { operationId: 'retryDelivery', summary: 'Retry a delivery', description: 'Queues a failed or cancelled delivery for another round of attempts, now. A delivery still pending or retrying answers 409 `conflict`.', tags: ['deliveries'], errors: ['conflict'], params: IdParams('delivery'), response: { 202: Delivery } } }, async (request, reply) => {
    const delivery = await withWorkspace(principalOf(request).workspaceId, (tx) => deliveryReader.retry(tx, request.params.id, deps.now()));
    return reply.status(202).send(delivery);
  });

  app.post('/v1/destinations/:id/recover', { config: { auth: { scope: 'deliveries:write' as const } }, schema: { operationId: 'recoverDestination', summary: 'Requeue a destination\'s failed deliveries', description: 'Queues again every failed delivery of the destination created in the time range (`until` defaults to now), e.g. after an outage on the receiving side.', tags: ['deliveries'], params: IdParams('destination'), body: Type.Object({ since: Timestamp, until: Type.Optional(Timestamp) }, { additionalProperties: false }), response: { 202: Type.Object({ requeued: Type.Integer() }) } } }, async (request, reply) => {
    const until = request.body.until === undefined ? deps.now() : new Date(request.body.until);
    const requeued = await withWorkspace(principalOf(request).workspaceId, (tx) => deliveryReader.recover(tx, request.params.id, new Date(request.body.since), until, deps.now()));
    return reply.status(202).send({ requeued });
  });
}
