/**
 * Deliveries over HTTP: the list, one delivery with its attempts, manual retry, and a
 * destination's recover. Reads go through the reader (deliveries.ts); the two writes are the
 * queue's own transitions (sql/retry.ts, sql/recover.ts).
 */
import { Type } from 'typebox';
import type { WithWorkspace } from '../db/tenant-tx.js';
import { principalOf } from '../http/auth.js';
import { Id, IdParams, named, Nullable, Page, PageQuery, Timestamp } from '../http/schemas.js';
import type { HttpServer } from '../http/server.js';
import type { Vault } from '../vault/vault.js';
import { deliveryReader } from './deliveries.js';
import { recoverDestination } from './sql/recover.js';
import { retryDelivery } from './sql/retry.js';

const Status = named('DeliveryStatus', Type.Union([Type.Literal('pending'), Type.Literal('delivering'), Type.Literal('retrying'), Type.Literal('delivered'), Type.Literal('failed'), Type.Literal('cancelled')]));

/** One delivery as the API shows it; an event's page (events/routes.ts) lists its deliveries in this shape too. */
export const Delivery = named('Delivery', Type.Object({
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

export function registerDeliveryRoutes(app: HttpServer, deps: { withWorkspace: WithWorkspace; vault: Vault; now: () => Date }): void {
  const { withWorkspace } = deps;

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
    const delivery = await withWorkspace(principalOf(request).workspaceId, (tx) => retryDelivery(tx, request.params.id, deps.now()));
    return reply.status(202).send(delivery);
  });

  app.post('/v1/destinations/:id/recover', { config: { auth: { scope: 'deliveries:write' as const } }, schema: { operationId: 'recoverDestination', summary: 'Requeue a destination\'s failed deliveries', description: 'Queues again every failed delivery of the destination created in the time range (`until` defaults to now), e.g. after an outage on the receiving side.', tags: ['deliveries'], params: IdParams('destination'), body: Type.Object({ since: Timestamp, until: Type.Optional(Timestamp) }, { additionalProperties: false }), response: { 202: Type.Object({ requeued: Type.Integer() }) } } }, async (request, reply) => {
    const until = request.body.until === undefined ? deps.now() : new Date(request.body.until);
    const requeued = await withWorkspace(principalOf(request).workspaceId, (tx) => recoverDestination(tx, { destinationId: request.params.id, since: new Date(request.body.since), until, now: deps.now() }));
    return reply.status(202).send({ requeued });
  });
}
