/**
 * Inbound sources over HTTP: the workspace's API (`/v1/inbound-sources`, API key with
 * `inbound:*` scopes) and the public receiving endpoint (`POST /hooks/{id}`, no credentials:
 * the signature is the authentication).
 *
 * The public route lives in its own encapsulated plugin, which alone replaces the body parsers
 * with one that keeps the raw bytes of any content type (signatures are computed over them), and
 * alone counts its refusals. Before the body is read, `onRequest` resolves the source (404),
 * applies its rate limit (429) and refuses a declared length over the workspace's limit (413).
 */
import type { FastifyRequest } from 'fastify';
import type { Redis } from 'ioredis';
import { Type } from 'typebox';
import type { WithWorkspace } from '../db/tenant-tx.js';
import { BulkheadError } from '../errors.js';
import { keyContext, principalOf } from '../http/auth.js';
import { sendProblem } from '../http/problem.js';
import { Id, IdParams, named, Nullable, Page, PageQuery, Timestamp } from '../http/schemas.js';
import type { HttpServer } from '../http/server.js';
import { MAX_TEMPLATE_LENGTH } from './event-type.js';
import { createSourceRateLimiter } from './rate-limit.js';
import type { InboundReceiver, InboundTarget } from './receive.js';
import type { InboundSources } from './sources.js';

/** Secrets stay verifying this long after a rotation unless the caller says otherwise. */
export const DEFAULT_SECRET_OVERLAP_SECONDS = 86_400;
/** The largest body the public route reads at all; each workspace's event payload limit applies below it. */
export const MAX_INBOUND_BODY_BYTES = 1_048_576;

const SchemeSchema = Type.Union([Type.Literal('standard-webhooks'), Type.Literal('github'), Type.Literal('stripe'), Type.Literal('slack'), Type.Literal('hmac')]);
const Secret = Type.String({ minLength: 16, maxLength: 512, pattern: '^[\\x21-\\x7e]+$' });
const HmacOptions = named('HmacOptions', Type.Object({
  header: Type.String({ pattern: '^[A-Za-z0-9!#$%&\'*+.^_`|~-]{1,100}$' }),
  algorithm: Type.Union([Type.Literal('sha256'), Type.Literal('sha512')]),
  encoding: Type.Union([Type.Literal('hex'), Type.Literal('base64')]),
  prefix: Type.String(),
}));
const CreateSource = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 200 }),
    scheme: SchemeSchema,
    secret: Type.Optional(Secret),
    eventType: Type.Optional(Type.String({ minLength: 1, maxLength: MAX_TEMPLATE_LENGTH, description: 'Event type, or a template with {header:<name>} / {body:<path>} placeholders' })),
    toleranceSeconds: Type.Optional(Type.Integer({ minimum: 10, maximum: 3600 })),
    hmac: Type.Optional(
      Type.Object(
        {
          header: HmacOptions.properties.header,
          algorithm: Type.Optional(HmacOptions.properties.algorithm),
          encoding: Type.Optional(HmacOptions.properties.encoding),
          prefix: Type.Optional(Type.String({ maxLength: 32, pattern: '^[\\x21-\\x7e]*$' })),
        },
        { additionalProperties: false },
      ),
    ),
    rateLimitPerMinute: Type.Optional(Type.Integer({ minimum: 1, maximum: 60_000 })),
  },
  { additionalProperties: false },
);
const Source = named('InboundSource', Type.Object({
  id: Id('inboundSource'),
  name: Type.String(),
  scheme: SchemeSchema,
  url: Type.String({ description: 'The public URL to give the provider' }),
  eventType: Type.String(),
  toleranceSeconds: Nullable(Type.Integer()),
  hmac: Nullable(HmacOptions),
  rateLimitPerMinute: Type.Integer(),
  receivedCount: Type.Integer(),
  rejectedCount: Type.Integer(),
  lastReceivedAt: Nullable(Timestamp),
  lastRejectedAt: Nullable(Timestamp),
  lastRejectedReason: Nullable(Type.String()),
  createdAt: Timestamp,
}));
const SourceWithSecret = Type.Object({ ...Source.properties, secret: Type.Optional(Type.String({ description: 'Present once, when Bulkhead generated the secret' })) });
const RotateSecret = Type.Object(
  { secret: Type.Optional(Secret), overlapSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 7 * 86_400 })) },
  { additionalProperties: false },
);

export function registerInboundRoutes(
  app: HttpServer,
  deps: { withWorkspace: WithWorkspace; sources: InboundSources; receiver: InboundReceiver; maxSources: number; bodyLimit: number; redis?: Redis | undefined },
): void {
  const { withWorkspace, sources, receiver } = deps;
  const scope = (s: 'inbound:read' | 'inbound:write') => ({ config: { auth: { scope: s } } });
  const ws = (request: FastifyRequest) => principalOf(request).workspaceId;

  app.post('/v1/inbound-sources', { ...scope('inbound:write'), schema: { operationId: 'createInboundSource', summary: 'Create an inbound source', description: 'Creates a public `/hooks/{id}` URL that accepts signed webhooks from a provider (HMAC, Standard Webhooks, Stripe, GitHub, …) and turns them into events.', tags: ['inbound'], errors: ['limit_exceeded', 'name_taken', 'ciphertext_invalid', 'key_version_retired', 'workspace_key_missing', 'root_key_missing'], body: CreateSource, response: { 201: SourceWithSecret } } }, async (request, reply) => {
    sources.validate(request.body);
    const created = await withWorkspace(ws(request), (tx) => sources.create(tx, keyContext(request), request.body, { max: deps.maxSources }));
    return reply.status(201).header('cache-control', 'no-store').send(created);
  });
  app.get('/v1/inbound-sources', { ...scope('inbound:read'), schema: { operationId: 'listInboundSources', summary: 'List inbound sources', description: 'Lists the workspace\'s inbound sources with their public URLs.', tags: ['inbound'], querystring: PageQuery, response: { 200: Page(Source) } } }, (request) =>
    withWorkspace(ws(request), (tx) => sources.list(tx, request.query)),
  );
  app.get('/v1/inbound-sources/:id', { ...scope('inbound:read'), schema: { operationId: 'getInboundSource', summary: 'Read an inbound source', description: 'Returns one inbound source (without its secret).', tags: ['inbound'], params: IdParams('inboundSource'), response: { 200: Source } } }, (request) =>
    withWorkspace(ws(request), (tx) => sources.get(tx, request.params.id)),
  );
  app.delete('/v1/inbound-sources/:id', { ...scope('inbound:write'), schema: { operationId: 'deleteInboundSource', summary: 'Delete an inbound source', description: 'Deletes an inbound source; its URL answers 404 from then on.', tags: ['inbound'], params: IdParams('inboundSource'), response: { 204: Type.Null() } } }, async (request, reply) => {
    await withWorkspace(ws(request), (tx) => sources.remove(tx, keyContext(request), request.params.id));
    return reply.status(204).send(null);
  });
  app.post('/v1/inbound-sources/:id/rotate-secret', { ...scope('inbound:write'), schema: { operationId: 'rotateInboundSourceSecret', summary: 'Rotate an inbound source\'s secret', description: 'Sets or generates a new verification secret; the previous one is still accepted until the overlap ends.', tags: ['inbound'], errors: ['ciphertext_invalid', 'key_version_retired', 'workspace_key_missing', 'root_key_missing'], params: IdParams('inboundSource'), body: Type.Optional(RotateSecret), response: { 200: Type.Object({ secret: Type.Optional(Type.String()), previousExpiresAt: Timestamp }) } } }, async (request, reply) => {
    const body = request.body as { secret?: string; overlapSeconds?: number } | undefined;
    const rotated = await withWorkspace(ws(request), (tx) => sources.rotateSecret(tx, keyContext(request), request.params.id, { secret: body?.secret, overlapSeconds: body?.overlapSeconds ?? DEFAULT_SECRET_OVERLAP_SECONDS }));
    return reply.header('cache-control', 'no-store').send(rotated);
  });

  const limiter = createSourceRateLimiter(deps.redis);
  void app.register((plugin, _options, done) => {
    const hooks = plugin as unknown as HttpServer;
    const targets = new WeakMap<FastifyRequest, InboundTarget>();
    // Signatures cover the exact bytes: keep every body as a Buffer, whatever its content type.
    hooks.removeAllContentTypeParsers();
    hooks.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: Math.min(deps.bodyLimit, MAX_INBOUND_BODY_BYTES) }, (_request, body, parsed) => {
      parsed(null, body);
    });
    hooks.setErrorHandler(async (error, request, reply) => {
      const target = targets.get(request);
      try {
        const reason = await receiver.rejected(target, error);
        request.log.info({ inboundSource: target?.sourceId, reason }, 'inbound request rejected');
      } catch (countError) {
        request.log.warn({ err: countError }, 'could not count a rejected inbound request');
      }
      return sendProblem(request, reply, error);
    });

    hooks.post(
      '/hooks/:inboundId',
      {
        config: { auth: 'public' },
        schema: {
          operationId: 'receiveInboundWebhook',
          summary: 'Receive a signed webhook from a provider (no API key: the signature authenticates)',
          description: 'The provider posts here as it would to any webhook receiver. The signature is checked with the source\'s secret (and scheme); a verified request becomes an event (`202`, `duplicate: true` for a replayed delivery id), a verification challenge is answered (`200`). A refused request stores nothing.',
          tags: ['inbound'],
          errors: ['signature_missing', 'signature_invalid', 'signature_expired', 'signature_replayed', 'rate_limited', 'database_unavailable', 'quota_exceeded', 'invalid_event_type', 'ciphertext_invalid', 'key_version_retired', 'workspace_key_missing', 'root_key_missing'],
          params: Type.Object({ inboundId: Type.String() }, { additionalProperties: false }),
          response: { 200: Type.Object({ challenge: Type.String() }), 202: Type.Object({ eventId: Id('event'), duplicate: Type.Boolean() }) },
        },
        onRequest: async (request, reply) => {
          reply.header('cache-control', 'no-store');
          const target = await receiver.resolve(request.params.inboundId);
          targets.set(request, target);
          const wait = await limiter.consume(target.sourceId, target.rateLimitPerMinute);
          if (wait > 0) {
            reply.header('Retry-After', wait);
            throw new BulkheadError('rate_limited', 'this inbound source is receiving more requests than its limit', { details: { retryAfter: wait } });
          }
          const declared = Number(request.headers['content-length']);
          if (Number.isFinite(declared) && declared > target.limits.maxPayloadBytes) throw new BulkheadError('payload_too_large', 'the request body is larger than this workspace accepts');
        },
      },
      async (request, reply) => {
        const target = targets.get(request);
        if (!target) throw new Error('inbound route reached without a resolved source');
        const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
        const outcome = await receiver.receive(target, { headers: request.headers, body });
        if (outcome.kind === 'challenge') return reply.status(200).send({ challenge: outcome.challenge });
        return reply.status(202).send({ eventId: outcome.eventId, duplicate: outcome.duplicate });
      },
    );
    done();
  });
}
