/**
 * Fastify set up the way every Bulkhead route relies on:
 *  - bodies are validated strictly (no type coercion, unknown properties rejected); query strings
 *    and path parameters may be coerced from text, which is all they can be;
 *  - every error leaves as problem+json through one handler, the router's own (bad URL encoding,
 *    over-long parameters) included;
 *  - JSON bodies go through the guarded parser (json.ts: nesting, text, number rules); query
 *    strings and path parameters follow the same text rule; a request body with a
 *    `Content-Encoding` is refused unless its route forwards bodies as sent (the relay);
 *  - only the media types a route declares are parsed: JSON everywhere (Fastify's default
 *    text/plain parser is removed, so text on a JSON route is 415, not a schema error), forms on
 *    the connect page, anything on the routes that take bytes as sent (relay, inbound hooks);
 *  - a known path asked with a method it lacks is 405 with `Allow`, derived from the router
 *    (see `allowedMethods`); a path no method has is 404;
 *  - every route must declare its auth requirement and its OpenAPI metadata (openapi.ts), or
 *    registration fails;
 *  - slow, stuck and early-answered connections are bounded and closed (`connections.ts`);
 *  - request ids come from a valid `X-Request-Id` or are generated, and are echoed back;
 *  - the OpenAPI 3.1 document is generated from the same schemas that validate requests (openapi.ts).
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Ajv, type Options as AjvOptions } from 'ajv';
import addFormatsModule from 'ajv-formats';
import Fastify, { type FastifyInstance, type HTTPMethods, LogController } from 'fastify';
import type { Logger } from '../logging.js';
import { BulkheadError } from '../errors.js';
import { type ConnectionPolicy, createConnectionPolicy } from './connections.js';
import { assertText, parseJson } from './json.js';
import { checkDocumented, swaggerOptions } from './openapi.js';
import { sendProblem } from './problem.js';
import { fastifyTrustProxy, type ProxyTrust } from './proxy-trust.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route passes its body on as sent (the relay), so a Content-Encoding travels with it. */
    forwardsEncodedBody?: boolean;
  }
}

// ajv-formats is CommonJS with a default export.
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

export type HttpServer = FastifyInstance<Server, IncomingMessage, ServerResponse, Logger, TypeBoxTypeProvider>;

const REQUEST_ID = /^[A-Za-z0-9._:-]{8,64}$/;

/**
 * `allErrors` stays off: with it on, one 1 MiB body of wrong array items costs Ajv millions of
 * error objects (measured: 2.4 million, 1.9 s and 400 MB for 120,000 items against a 19-literal
 * union), an amplifier any client can pull. Off, validation stops at the first mistake, which is
 * what the problem then describes (validation.ts). `verbose` hands the describer the failing
 * value and its schema (title, description); it costs nothing until a value fails.
 */
function validators(): { body: Ajv; text: Ajv } {
  const base: AjvOptions = { allErrors: false, verbose: true, removeAdditional: false, useDefaults: true, strict: false };
  return {
    body: addFormats(new Ajv({ ...base, coerceTypes: false })),
    text: addFormats(new Ajv({ ...base, coerceTypes: 'array' })),
  };
}

/**
 * The methods the router has a route for at this concrete path, sorted. HEAD is there wherever
 * GET is (Fastify exposes it); OPTIONS only where a route declares it (the relay): there is no
 * CORS, so an OPTIONS request elsewhere is 405 and its `Allow` says what a preflight would have.
 */
export function allowedMethods(app: Pick<HttpServer, 'findRoute'>, methods: ReadonlySet<HTTPMethods>, path: string): string[] {
  // Typed as always finding something; it answers null when nothing matches.
  return [...methods].filter((method) => (app.findRoute({ method, url: path }) as unknown) !== null).sort();
}

export async function createHttpServer(options: { logger: Logger; bodyLimit: number; trustProxy: ProxyTrust; version: string; connections: ConnectionPolicy }): Promise<HttpServer> {
  const connections = createConnectionPolicy(options.connections, options.logger);
  const app = Fastify({
    ...connections.serverOptions,
    loggerInstance: options.logger,
    bodyLimit: options.bodyLimit,
    trustProxy: fastifyTrustProxy(options.trustProxy),
    requestIdHeader: false,
    logController: new LogController({ requestIdLogLabel: 'requestId' }),
    genReqId: (req) => {
      const offered = req.headers['x-request-id'];
      return typeof offered === 'string' && REQUEST_ID.test(offered) ? offered : `req_${randomBytes(12).toString('base64url')}`;
    },
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    routerOptions: { ignoreTrailingSlash: false, maxParamLength: 200 },
    // Router refusals (bad percent-encoding, over-long parameters) answer through the same mapper.
    frameworkErrors: (error, request, reply) => {
      void sendProblem(request, reply.header('x-request-id', request.id), error);
    },
  }).withTypeProvider<TypeBoxTypeProvider>() as unknown as HttpServer;

  const ajv = validators();
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? ajv.body : ajv.text).compile(schema));

  // Every method some route answers; the 405 check asks the router about each of them.
  const methods = new Set<HTTPMethods>(['HEAD']);
  const operationIds = new Set<string>();
  app.addHook('onRoute', (route) => {
    if (route.url.startsWith('/documentation')) return;
    if (route.config?.auth === undefined) {
      throw new Error(`route ${route.method.toString()} ${route.url} declares no auth requirement`);
    }
    for (const method of [route.method].flat()) methods.add(method.toUpperCase());
    checkDocumented(route, operationIds);
  });
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  connections.register(app);
  app.addHook('onRequest', (request, _reply, done) => {
    const encoding = request.headers['content-encoding'];
    if (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity' && request.routeOptions.config.forwardsEncodedBody !== true) {
      done(new BulkheadError('unsupported_encoding', 'request bodies are accepted without a Content-Encoding (identity only)'));
      return;
    }
    done();
  });
  app.addHook('preValidation', (request, _reply, done) => {
    try {
      assertText(request.params, 'params');
      assertText(request.query, 'query');
      done();
    } catch (error) {
      done(error as Error);
    }
  });
  // Fastify parses text/plain by default, so text reached JSON routes as a string and failed
  // their schema ("must be object"); a route that takes other types registers its own parser.
  app.removeContentTypeParser('text/plain');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    if (body === '') {
      done(new BulkheadError('malformed_json', 'the request body is empty; send a JSON value'), undefined);
      return;
    }
    try {
      done(null, parseJson(body as string));
    } catch (error) {
      done(error as Error, undefined);
    }
  });
  app.setErrorHandler((error, request, reply) => sendProblem(request, reply, error));
  app.setNotFoundHandler({}, (request, reply) => {
    const path = request.url.split('?')[0] ?? '';
    const allowed = allowedMethods(app, methods, path);
    if (allowed.length === 0) return sendProblem(request, reply, new BulkheadError('route_not_found', `no route ${request.method} ${path}`));
    reply.header('Allow', allowed.join(', '));
    return sendProblem(request, reply, new BulkheadError('method_not_allowed', `${request.method} is not allowed on ${path}; allowed: ${allowed.join(', ')}`, { details: { allowed } }));
  });

  await app.register(swagger, swaggerOptions(options.version));
  app.get('/openapi.json', { config: { auth: 'public' }, schema: { hide: true } }, () => Promise.resolve(app.swagger()));
  return app;
}
