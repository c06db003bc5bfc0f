/** A whole Bulkhead (real Fastify stack, real database) for a test file, driven through `inject`. */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { type App, buildApp } from '../app.js';
import { type Config, parseConfig } from '../config.js';
import { databaseRef } from '../db/open.js';
import type { Runtime } from '../ids.js';
import { createLogger, type Logger } from '../logging.js';
import type { Resolver } from '../egress/client.js';
import type { Secrets } from '../secrets.js';
import type { Backend, TestDatabase } from './databases.js';

export interface TestClock extends Runtime {
  advance(ms: number): void;
  set(date: Date): void;
}

/** Real time plus an offset tests can move forward (expiry, grace periods). */
export function testClock(): TestClock {
  let offset = 0;
  return {
    now: () => new Date(Date.now() + offset),
    randomBytes: (size) => randomBytes(size),
    advance(ms) {
      offset += ms;
    },
    set(date) {
      offset = date.getTime() - Date.now();
    },
  };
}

export const testSecrets: Secrets = Object.freeze({
  adminToken: 'bk_admin_test_token_0123456789abcdefghijklmnop',
  apiKeyPepper: 'test-pepper-0123456789abcdefghijklmnopqrstuvwxyz',
  rootKeys: [{ version: 1, key: Buffer.alloc(32, 7) }],
  auditSigningKeys: [{ version: 1, seed: Buffer.alloc(32, 9) }],
});

export interface TestApp {
  readonly app: App;
  readonly database: TestDatabase;
  readonly clock: TestClock;
  readonly config: Config;
  request(options: InjectOptions & { token?: string | undefined; json?: unknown }): Promise<LightMyRequestResponse>;
  admin(method: NonNullable<InjectOptions['method']>, url: string, json?: unknown): Promise<LightMyRequestResponse>;
  /** A fresh tenant + workspace, and a key with the given scopes in it. */
  workspaceWithKey(scopes?: string[], options?: { environment?: string; allowedCidrs?: string[] }): Promise<{ tenantId: string; workspaceId: string; keyId: string; key: string }>;
  close(): Promise<void>;
}

export async function startTestApp(
  backend: Backend,
  options: {
    config?: Partial<Config>;
    redis?: Redis | undefined;
    database?: TestDatabase;
    logger?: Logger;
    resolve?: Resolver;
    /** The process's role (default `all`); with `startJobs` its workers and jobs run on their own. */
    role?: 'api' | 'worker' | 'all';
    startJobs?: boolean;
  } = {},
): Promise<TestApp> {
  const database = options.database ?? (await backend.open());
  const base = parseConfig({ LOG_LEVEL: 'silent' });
  // Injected requests hand their bodies over a turn after their headers, so each would hold an
  // upload place a real small request never takes; the bound itself is tested over real sockets
  // (src/http/connections.test.ts).
  const config: Config = Object.freeze({ ...base, appRole: database.appRole, uploadsPerAddress: 10_000, ...options.config });
  const clock = testClock();
  const app = await buildApp({
    config,
    secrets: testSecrets,
    logger: options.logger ?? createLogger({ level: config.logLevel }),
    db: databaseRef(database.db),
    runtime: clock,
    redis: options.redis,
    startJobs: options.startJobs ?? false,
    resolve: options.resolve,
    ...(options.role === undefined ? {} : { role: options.role }),
  });

  const request: TestApp['request'] = ({ token, json, headers, ...rest }) =>
    app.http.inject({
      ...rest,
      headers: { ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), ...(json === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      ...(json === undefined ? {} : { payload: JSON.stringify(json) }),
    });
  const admin: TestApp['admin'] = (method, url, json) => request({ method, url, token: testSecrets.adminToken, json });

  let counter = 0;
  return {
    app,
    database,
    clock,
    config,
    request,
    admin,
    async workspaceWithKey(scopes = ['*'], opts = {}) {
      const slug = `t-${randomBytes(4).toString('hex')}-${counter++}`;
      const tenant = await admin('POST', '/v1/tenants', { name: slug, slug });
      if (tenant.statusCode !== 201) throw new Error(`tenant: ${tenant.body}`);
      const tenantId = tenant.json<{ id: string }>().id;
      const ws = await admin('POST', `/v1/tenants/${tenantId}/workspaces`, { name: 'main', environment: opts.environment ?? 'production' });
      if (ws.statusCode !== 201) throw new Error(`workspace: ${ws.body}`);
      const workspaceId = ws.json<{ id: string }>().id;
      const key = await admin('POST', `/v1/workspaces/${workspaceId}/api-keys`, { name: 'test', scopes, ...(opts.allowedCidrs ? { allowedCidrs: opts.allowedCidrs } : {}) });
      if (key.statusCode !== 201) throw new Error(`key: ${key.body}`);
      const body = key.json<{ id: string; key: string }>();
      return { tenantId, workspaceId, keyId: body.id, key: body.key };
    },
    async close() {
      await app.close();
      if (!options.database) await database.close();
    },
  };
}
