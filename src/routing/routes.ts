/** Destinations and rules over HTTP. The workspace is the calling key's. */
import { Type } from 'typebox';
import type { WithWorkspace } from '../db/tenant-tx.js';
import { keyContext, principalOf } from '../http/auth.js';
import { Id, IdParams, named, Nullable, Page, PageQuery, Timestamp } from '../http/schemas.js';
import type { HttpServer } from '../http/server.js';
import { DEFAULT_SECRET_OVERLAP_SECONDS, type DestinationService } from './destinations.js';
import { checkTransform, type RuleService, type TransformCompiler } from './rules.js';

const Pattern = Type.String({ minLength: 1, maxLength: 200 });
const Headers = Type.Record(Type.String({ maxLength: 100 }), Type.String({ maxLength: 1024 }), { maxProperties: 20 });

const Destination = named('Destination', Type.Object({
  id: Id('destination'),
  type: Type.Literal('webhook'),
  url: Type.String(),
  description: Nullable(Type.String()),
  enabled: Type.Boolean(),
  disabledReason: Nullable(Type.String()),
  headers: Type.Record(Type.String(), Type.String()),
  eventTypes: Nullable(Type.Array(Type.String())),
  rateLimitPerSecond: Nullable(Type.Integer()),
  maxInFlight: Nullable(Type.Integer()),
  ordered: Type.Boolean(),
  circuit: Type.Object({ state: Type.Union([Type.Literal('closed'), Type.Literal('open'), Type.Literal('half_open')]), consecutiveFailures: Type.Integer(), openUntil: Nullable(Timestamp) }),
  createdAt: Timestamp,
  updatedAt: Timestamp,
}));
const DestinationWithSecret = Type.Object({ ...Destination.properties, secret: Type.String({ description: 'Standard Webhooks signing secret (whsec_…)' }) });

const DestinationFields = {
  url: Type.String({ minLength: 8, maxLength: 2048, pattern: '^https?://' }),
  description: Type.Optional(Type.String({ maxLength: 500 })),
  enabled: Type.Optional(Type.Boolean()),
  headers: Type.Optional(Headers),
  eventTypes: Type.Optional(Type.Array(Pattern, { minItems: 1, maxItems: 100, uniqueItems: true })),
  rateLimitPerSecond: Type.Optional(Nullable(Type.Integer({ minimum: 1, maximum: 10_000, description: 'Deliveries per second to this destination across all workers (null: no limit)' }))),
  maxInFlight: Type.Optional(Nullable(Type.Integer({ minimum: 1, maximum: 1000, description: 'Deliveries in flight at once across all workers (null: the server default)' }))),
  ordered: Type.Optional(Type.Boolean()),
};
const CreateDestination = Type.Object({ type: Type.Optional(Type.Literal('webhook')), ...DestinationFields }, { additionalProperties: false });
const UpdateDestination = Type.Object({ ...DestinationFields, url: Type.Optional(DestinationFields.url) }, { additionalProperties: false, minProperties: 1 });

const Filter = Type.Record(Type.String({ maxLength: 200 }), Type.Unknown(), { description: 'Declarative payload filter: dot paths with literals or $eq $ne $in $nin $gt $gte $lt $lte $exists; $and $or $not' });
const Rule = named('Rule', Type.Object({
  id: Id('rule'),
  name: Type.String(),
  eventTypes: Type.Array(Type.String()),
  resource: Nullable(Type.String()),
  filter: Nullable(Filter),
  destinationIds: Type.Array(Type.String()),
  ordered: Type.Boolean(),
  enabled: Type.Boolean(),
  transform: Nullable(Type.Object({ language: Type.Union([Type.Literal('javascript'), Type.Literal('typescript')]), code: Type.String(), revision: Type.Integer() })),
  createdAt: Timestamp,
  updatedAt: Timestamp,
}));
const TransformInput = Type.Object(
  {
    language: Type.Union([Type.Literal('javascript'), Type.Literal('typescript')]),
    code: Type.String({ minLength: 1, maxLength: 256 * 1024, description: 'Defines function transform(event, ctx): returns the payload to deliver, an array (one delivery each), or null to drop' }),
  },
  { additionalProperties: false },
);
const RuleFields = {
  name: Type.String({ minLength: 1, maxLength: 200 }),
  eventTypes: Type.Array(Pattern, { minItems: 1, maxItems: 100, uniqueItems: true }),
  resource: Type.Optional(Nullable(Type.String({ minLength: 1, maxLength: 200 }))),
  filter: Type.Optional(Nullable(Filter)),
  destinationIds: Type.Array(Type.String({ maxLength: 40 }), { minItems: 1, maxItems: 50, uniqueItems: true }),
  ordered: Type.Optional(Type.Boolean()),
  enabled: Type.Optional(Type.Boolean()),
  transform: Type.Optional(Nullable(TransformInput)),
};
const CreateRule = Type.Object(RuleFields, { additionalProperties: false });
const UpdateRule = Type.Object(
  { ...RuleFields, name: Type.Optional(RuleFields.name), eventTypes: Type.Optional(RuleFields.eventTypes), destinationIds: Type.Optional(RuleFields.destinationIds) },
  { additionalProperties: false, minProperties: 1 },
);

export function registerRoutingRoutes(
  app: HttpServer,
  deps: { withWorkspace: WithWorkspace; destinations: DestinationService; rules: RuleService; compile: TransformCompiler; limits: { destinations: number; rules: number } },
): void {
  const { withWorkspace, destinations, rules } = deps;
  const scope = (s: 'destinations:read' | 'destinations:write' | 'rules:read' | 'rules:write') => ({ config: { auth: { scope: s } } });
  const ws = (request: Parameters<typeof principalOf>[0]) => principalOf(request).workspaceId;

  app.post('/v1/destinations', { ...scope('destinations:write'), schema: { operationId: 'createDestination', summary: 'Create a destination', description: 'Creates a webhook destination and its Standard Webhooks signing secret (returned once here, and from `getDestinationSecret`). The URL must pass the egress policy.', tags: ['destinations'], errors: ['limit_exceeded', 'name_taken', 'egress_blocked', 'ciphertext_invalid', 'key_version_retired', 'workspace_key_missing', 'root_key_missing'], body: CreateDestination, response: { 201: DestinationWithSecret } } }, async (request, reply) => {
    await destinations.validate(request.body);
    const created = await withWorkspace(ws(request), (tx) => destinations.create(tx, keyContext(request), request.body, { max: deps.limits.destinations }));
    return reply.status(201).send(created);
  });
  app.get('/v1/destinations', { ...scope('destinations:read'), schema: { operationId: 'listDestinations', summary: 'List destinations', description: 'Lists the workspace\'s destinations, a page at a time.', tags: ['destinations'], querystring: PageQuery, response: { 200: Page(Destination) } } }, (request) =>
    withWorkspace(ws(request), (tx) => destinations.list(tx, request.query)),
  );
  app.get('/v1/destinations/:id', { ...scope('destinations:read'), schema: { operationId: 'getDestination', summary: 'Read a destination', description: 'Returns one destination (without its secret).', tags: ['destinations'], params: IdParams('destination'), response: { 200: Destination } } }, (request) =>
    withWorkspace(ws(request), (tx) => destinations.get(tx, request.params.id)),
  );
  app.patch('/v1/destinations/:id', { ...scope('destinations:write'), schema: { operationId: 'updateDestination', summary: 'Update a destination', description: 'Changes a destination\'s URL, headers, rate limit, concurrency or enabled state.', tags: ['destinations'], errors: ['name_taken', 'egress_blocked', 'ciphertext_invalid', 'key_version_retired', 'workspace_key_missing', 'root_key_missing'], params: IdParams('destination'), body: UpdateDestination, response: { 200: Destination } } }, async (request) => {
    await destinations.validate(request.body);
    return withWorkspace(ws(request), (tx) => destinations.update(tx, keyContext(request), request.params.id, request.body));
  });
  app.delete('/v1/destinations/:id', { ...scope('destinations:write'), schema: { operationId: 'deleteDestination', summary: 'Delete a destination', description: 'Deletes a destination. One that rules still send to answers 409 `conflict` naming the rules.', tags: ['destinations'], errors: ['conflict'], params: IdParams('destination'), response: { 204: Type.Null() } } }, async (request, reply) => {
    await withWorkspace(ws(request), (tx) => destinations.remove(tx, keyContext(request), request.params.id));
    return reply.status(204).send(null);
  });
  app.get('/v1/destinations/:id/secret', { ...scope('destinations:write'), schema: { operationId: 'getDestinationSecret', summary: 'Read a destination\'s signing secret', description: 'Returns the current signing secret and the previous ones still accepted during a rotation overlap.', tags: ['destinations'], errors: ['ciphertext_invalid', 'key_version_retired', 'workspace_key_missing', 'root_key_missing'], params: IdParams('destination'), response: { 200: Type.Object({ secret: Type.String(), previous: Type.Array(Type.Object({ secret: Type.String(), expiresAt: Nullable(Timestamp) })) }) } } }, async (request) => {
    const secrets = await withWorkspace(ws(request), (tx) => destinations.signingSecrets(tx, request.params.id));
    const [current, ...previous] = secrets;
    return { secret: current?.secret ?? '', previous };
  });
  app.post('/v1/destinations/:id/rotate-secret', { ...scope('destinations:write'), schema: { operationId: 'rotateDestinationSecret', summary: 'Rotate a destination\'s signing secret', description: 'Generates a new signing secret; deliveries are signed with both until the overlap (default one day) ends.', tags: ['destinations'], errors: ['ciphertext_invalid', 'key_version_retired', 'workspace_key_missing', 'root_key_missing'], params: IdParams('destination'), body: Type.Optional(Type.Object({ overlapSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 7 * 86_400 })) }, { additionalProperties: false })), response: { 200: Type.Object({ secret: Type.String(), previousExpiresAt: Timestamp }) } } }, (request) =>
    withWorkspace(ws(request), (tx) => destinations.rotateSecret(tx, keyContext(request), request.params.id, (request.body as { overlapSeconds?: number } | undefined)?.overlapSeconds ?? DEFAULT_SECRET_OVERLAP_SECONDS)),
  );

  app.post('/v1/rules', { ...scope('rules:write'), schema: { operationId: 'createRule', summary: 'Create a rule', description: 'Creates a routing rule: event types (with `*` wildcards), an optional payload filter and transform, and the destinations that matching events are delivered to.', tags: ['rules'], errors: ['limit_exceeded', 'name_taken', 'transform_syntax_error'], body: CreateRule, response: { 201: Rule } } }, async (request, reply) => {
    // Checked before the transaction opens: parsing tenant code never holds a database connection.
    const transform = request.body.transform ? await checkTransform(deps.compile, request.body.transform) : undefined;
    const created = await withWorkspace(ws(request), (tx) => rules.create(tx, keyContext(request), { ...request.body, transform }, { max: deps.limits.rules }));
    return reply.status(201).send(created);
  });
  app.get('/v1/rules', { ...scope('rules:read'), schema: { operationId: 'listRules', summary: 'List rules', description: 'Lists the workspace\'s rules, a page at a time.', tags: ['rules'], querystring: PageQuery, response: { 200: Page(Rule) } } }, (request) =>
    withWorkspace(ws(request), (tx) => rules.list(tx, request.query)),
  );
  app.get('/v1/rules/:id', { ...scope('rules:read'), schema: { operationId: 'getRule', summary: 'Read a rule', description: 'Returns one rule with its revision.', tags: ['rules'], params: IdParams('rule'), response: { 200: Rule } } }, (request) =>
    withWorkspace(ws(request), (tx) => rules.get(tx, request.params.id)),
  );
  app.patch('/v1/rules/:id', { ...scope('rules:write'), schema: { operationId: 'updateRule', summary: 'Update a rule', description: 'Changes a rule; each change bumps its revision. Events already accepted keep the deliveries they were given.', tags: ['rules'], errors: ['name_taken', 'transform_syntax_error'], params: IdParams('rule'), body: UpdateRule, response: { 200: Rule } } }, async (request) => {
    const transform = request.body.transform ? await checkTransform(deps.compile, request.body.transform) : request.body.transform;
    return withWorkspace(ws(request), (tx) => rules.update(tx, keyContext(request), request.params.id, { ...request.body, transform }));
  });
  app.delete('/v1/rules/:id', { ...scope('rules:write'), schema: { operationId: 'deleteRule', summary: 'Delete a rule', description: 'Deletes a rule; deliveries it already produced go on.', tags: ['rules'], params: IdParams('rule'), response: { 204: Type.Null() } } }, async (request, reply) => {
    await withWorkspace(ws(request), (tx) => rules.remove(tx, keyContext(request), request.params.id));
    return reply.status(204).send(null);
  });
}
