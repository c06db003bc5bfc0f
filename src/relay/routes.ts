/**
 * `ANY /v1/proxy/{connectionId}/{path}`: the relay's HTTP face. Request bodies are not parsed;
 * they stream to the provider, with the body limit enforced twice: a Content-Length over it is
 * refused before the provider is contacted, and a body that grows over it on the way aborts the
 * upstream request. Either way the answer is 413 `payload_too_large` (and, the body being
 * unread, the connection is closed after it: see `http/connections.ts`).
 */
import { Readable, Transform } from 'node:stream';
import { Type } from 'typebox';
import { BulkheadError } from '../errors.js';
import { principalOf } from '../http/auth.js';
import type { HttpServer } from '../http/server.js';
import { isId } from '../ids.js';
import type { Relay } from './relay.js';

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

const tooLarge = (limit: number) => new BulkheadError('payload_too_large', `the request body exceeds ${limit} bytes`, { details: { limit } });

/** The body, failing once more than `limit` bytes have passed; `exceeded` says whether that happened. */
function limited(stream: Readable, limit: number): { body: Readable; exceeded: () => boolean } {
  let seen = 0;
  const guard = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      seen += chunk.length;
      if (seen > limit) callback(tooLarge(limit));
      else callback(null, chunk);
    },
  });
  stream.on('error', (error) => guard.destroy(error));
  return { body: stream.pipe(guard), exceeded: () => seen > limit };
}

export function registerRelayRoutes(app: HttpServer, deps: { relay: Relay; bodyLimit: number }): void {
  void app.register((scope, _options, done) => {
    // Bodies pass through as streams, whatever their type.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, payload, done) => {
      done(null, payload);
    });
    scope.route({
      method: [...METHODS],
      url: '/v1/proxy/:connectionId/*',
      // Bodies are forwarded as sent, so their Content-Encoding is the provider's to read.
      config: { auth: { scope: 'proxy' as const }, forwardsEncodedBody: true },
      schema: {
        // One operation per method in the document: getProxy, postProxy, …
        operationId: 'proxy',
        summary: 'Call the provider through a connection',
        tags: ['relay'],
        errors: ['relay_target_not_allowed', 'connection_not_active', 'egress_blocked', 'egress_failed', 'egress_timeout', 'egress_response_too_large', 'upstream_unavailable', 'oauth_refresh_failed', 'ciphertext_invalid', 'key_version_retired', 'workspace_key_missing', 'root_key_missing'],
        description: 'Calls the provider of the connection with its credential injected. The path after the connection id is joined to the provider\'s base URL (a `Base-Url` header may pick another of its allowed base URLs).',
        params: Type.Object({ connectionId: Type.String({ maxLength: 64 }), '*': Type.String() }),
      },
      handler: async (request, reply) => {
        const params = request.params as { connectionId: string; '*': string };
        if (!isId('connection', params.connectionId)) throw new BulkheadError('not_found', 'connection not found');
        const rawUrl = request.raw.url ?? '';
        const queryAt = rawUrl.indexOf('?');
        // The raw path (not Fastify's decoded param), so encoded separators are seen and refused.
        const prefix = `/v1/proxy/${params.connectionId}/`;
        const pathOnly = queryAt === -1 ? rawUrl : rawUrl.slice(0, queryAt);
        const path = pathOnly.startsWith(prefix) ? pathOnly.slice(prefix.length) : params['*'];
        const baseUrl = request.headers['base-url'];
        const declared = Number(request.headers['content-length']);
        if (Number.isFinite(declared) && declared > deps.bodyLimit) throw tooLarge(deps.bodyLimit);
        const body = request.body instanceof Readable ? limited(request.body, deps.bodyLimit) : undefined;
        let response;
        try {
          response = await deps.relay.call({
            workspaceId: principalOf(request).workspaceId,
            connectionId: params.connectionId,
            method: request.method,
            path,
            query: queryAt === -1 ? '' : rawUrl.slice(queryAt),
            headers: request.headers,
            body: body?.body,
            baseUrl: Array.isArray(baseUrl) ? baseUrl[0] : baseUrl,
          });
        } catch (error) {
          // The upstream request failed because we aborted it: the caller's fault, not the provider's.
          if (body?.exceeded()) throw tooLarge(deps.bodyLimit);
          throw error;
        }
        return reply.status(response.status).headers(response.headers).send(response.body);
      },
    });
    done();
  });
}
