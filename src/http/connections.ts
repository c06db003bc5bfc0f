/**
 * How the HTTP server treats connections, so that no client holds one open for free:
 *
 *  - a whole request (headers and body) must arrive within `requestTimeoutMs`, or it is answered
 *    408 `request_timeout` and its connection closed. Node's `requestTimeout` bounds exactly that
 *    (from the first byte until the body has been received, not the handler's work after it);
 *    Fastify turns it off by default, and Node checks it only every 30 s unless told otherwise;
 *  - an answer sent before the request's body has arrived (a 401 or 429 from `onRequest`, a 413
 *    on the announced length, a relay refusal) carries `Connection: close`, and Node then closes
 *    the socket once the answer is written, instead of reading the rest of the body to keep the
 *    connection for the next request;
 *  - one client address may have at most `uploadsPerAddress` bodies still arriving at once; the
 *    next gets 429 `too_many_uploads` (and, being answered early, its connection is closed);
 *  - while the server drains for shutdown every answer closes its connection, and a request that
 *    arrives on a kept-alive connection meanwhile is refused with 503 `not_ready`.
 */
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyRequest } from 'fastify';
import { BulkheadError } from '../errors.js';
import type { Logger } from '../logging.js';
import { problemFor } from './problem.js';
import type { HttpServer } from './server.js';

export interface ConnectionPolicy {
  readonly requestTimeoutMs: number;
  readonly uploadsPerAddress: number;
}

/** Whether the parser has seen the whole request (read by the application or not). */
const arrived = (request: FastifyRequest): boolean => request.raw.complete;

const hasBody = (request: FastifyRequest): boolean => {
  const length = request.headers['content-length'];
  return request.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
};

export function createConnectionPolicy(policy: ConnectionPolicy, logger: Logger) {
  /** The response in progress on each socket, so a timeout never writes into an answer already begun. */
  const responses = new WeakMap<Duplex, ServerResponse>();
  const uploads = new Map<string, number>();
  let draining = false;

  /** Holds one of the address's upload places until the body has arrived or the request is gone. */
  function holdUpload(request: FastifyRequest, response: ServerResponse): void {
    const address = request.ip;
    const held = uploads.get(address) ?? 0;
    if (held >= policy.uploadsPerAddress) {
      throw new BulkheadError('too_many_uploads', `this address already has ${policy.uploadsPerAddress} request bodies arriving`, { details: { limit: policy.uploadsPerAddress } });
    }
    uploads.set(address, held + 1);
    const socket = request.raw.socket;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      socket.off('close', release);
      const left = (uploads.get(address) ?? 1) - 1;
      if (left > 0) uploads.set(address, left);
      else uploads.delete(address);
    };
    request.raw.once('end', release);
    request.raw.once('close', release);
    // Once answered, the request holds no place: its connection is closed after an early answer.
    // (Also the only release light-my-request's injected requests ever signal.)
    response.once('finish', release);
    response.once('close', release);
    socket.once('close', release);
  }

  function onClientError(error: NodeJS.ErrnoException, socket: Duplex): void {
    if (error.code === 'ECONNRESET' || socket.destroyed) return;
    const timedOut = error.code === 'ERR_HTTP_REQUEST_TIMEOUT';
    logger.debug({ code: error.code }, timedOut ? 'request timed out' : 'client error');
    if (socket.writable && responses.get(socket)?.headersSent !== true) {
      const cause = timedOut
        ? new BulkheadError('request_timeout', `the request did not arrive within ${policy.requestTimeoutMs} ms`)
        : error.code === 'HPE_HEADER_OVERFLOW'
          ? { statusCode: 431, message: 'the request headers are too large' }
          : new BulkheadError('bad_request', 'the request is not valid HTTP');
      const body = JSON.stringify(problemFor(cause, `req_${randomBytes(12).toString('base64url')}`).problem);
      const status = timedOut ? 408 : error.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
      socket.write(`HTTP/1.1 ${status} ${timedOut ? 'Request Timeout' : 'Bad Request'}\r\nContent-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    }
    socket.destroy(error);
  }

  return {
    /** Constructor options for Fastify. */
    serverOptions: {
      requestTimeout: policy.requestTimeoutMs,
      http: {
        requestTimeout: policy.requestTimeoutMs,
        headersTimeout: Math.min(60_000, policy.requestTimeoutMs),
        // Node looks at its timeouts on this period (30 s by default, which would let a 30 s timeout run to 60).
        connectionsCheckingInterval: Math.max(100, Math.min(1_000, Math.floor(policy.requestTimeoutMs / 4))),
      },
      clientErrorHandler: onClientError,
      // Our own refusal (problem+json) replaces Fastify's plain 503 while draining.
      return503OnClosing: false,
      forceCloseConnections: 'idle' as const,
    },

    register(app: HttpServer): void {
      app.addHook('onRequest', async (request, reply) => {
        responses.set(request.raw.socket, reply.raw);
        if (draining) throw new BulkheadError('not_ready', 'the server is shutting down');
        if (!hasBody(request) || arrived(request)) return;
        // The parser hands over the headers before it reads on in the same chunk; one turn of the
        // event loop later a body that arrived with its headers reads as complete and takes no place.
        await new Promise((resolve) => setImmediate(resolve));
        if (!arrived(request)) holdUpload(request, reply.raw);
      });
      app.addHook('onSend', async (request, reply, payload) => {
        if (draining || !arrived(request)) reply.header('connection', 'close');
        return payload;
      });
      app.addHook('preClose', (done) => {
        draining = true;
        done();
      });
    },

    /** Bodies still arriving, by address (for shutdown logs). */
    uploadsInProgress: (): number => [...uploads.values()].reduce((a, b) => a + b, 0),
  };
}
