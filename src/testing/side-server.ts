/**
 * A second HTTP server over a test app's services, wired as app.ts wires the API (same server
 * factory, same auth hook, the app's own authenticator and database), for route tests that
 * need their own settings (a lower count limit, a store built by the test).
 */
import { createAuthHook } from '../http/auth.js';
import { createHttpServer, type HttpServer } from '../http/server.js';
import { createAuthFailureLimiter, createRateLimiter } from '../limits/rate-limit.js';
import { createLogger } from '../logging.js';
import { version } from '../version.js';
import { type TestApp, testSecrets } from './app.js';

export async function startSideServer(t: TestApp, register: (http: HttpServer) => void): Promise<HttpServer> {
  const { core } = t.app;
  const http = await createHttpServer({ logger: createLogger({ level: 'silent' }), bodyLimit: t.config.bodyLimitBytes, trustProxy: false, version, connections: { requestTimeoutMs: t.config.requestTimeoutMs, uploadsPerAddress: t.config.uploadsPerAddress } });
  http.addHook(
    'onRequest',
    createAuthHook({
      adminToken: testSecrets.adminToken,
      authenticator: core.authenticator,
      rateLimiter: createRateLimiter(t.config.rateLimits),
      authFailures: createAuthFailureLimiter(t.config.authFailuresPerMinute),
      lastUsed: core.lastUsed,
      now: () => t.clock.now(),
    }),
  );
  register(http);
  await http.ready();
  return http;
}
