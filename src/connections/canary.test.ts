/**
 * The canary test (SPEC §2.4, "secrets never leave"): credentials carrying a unique canary go in
 * through every path — an API-key connection, a basic-auth connection, imported OAuth tokens, a
 * provider's OAuth client secret, tokens from a real OAuth flow — every endpoint is exercised,
 * including failing ones, and then the database (a full dump, and on PGlite the raw data files),
 * every log line at trace level, every response body and every header are searched.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PGlite } from '@electric-sql/pglite';
import { createLogger } from '../logging.js';
import { startTestApp, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import { startOAuthServer, type TestOAuthServer } from '../testing/oauth-server.js';
import { startUpstream, type Upstream } from '../testing/upstream.js';

const PUBLIC_URL = 'http://bulkhead.test';

describe.each(backends)('the canary on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    const canary = `CANARY${randomBytes(12).toString('hex')}`;
    const needles = new Set([canary]);
    const logLines: string[] = [];
    const seen: string[] = [];
    let t: TestApp;
    let upstream: Upstream;
    let oauth: TestOAuthServer;

    beforeAll(async () => {
      upstream = await startUpstream();
      oauth = await startOAuthServer({ redirectUris: [`${PUBLIC_URL}/oauth/callback`] });
      const sink = new Writable({
        write(chunk: Buffer, _encoding, done) {
          logLines.push(chunk.toString('utf8'));
          done();
        },
      });
      t = await startTestApp(backend, { config: { egressAllowCidrs: ['127.0.0.1/32'], publicUrl: PUBLIC_URL, logLevel: 'trace' }, logger: createLogger({ level: 'trace', destination: sink }) });
    });
    afterAll(async () => {
      await t.close();
      await upstream.close();
      await oauth.close();
    });

    /** Every response passes through here: its body and headers are kept for the final search. */
    const call = async (...args: Parameters<TestApp['request']>) => {
      const response = await t.request(...args);
      seen.push(response.body, JSON.stringify(response.headers));
      return response;
    };
    const admin = (method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', url: string, json?: unknown) => call({ method, url, token: 'bk_admin_test_token_0123456789abcdefghijklmnop', json });

    it('stores canaries through every path and exercises every endpoint', async () => {
      // Providers: one custom with an OAuth client secret, one for API keys, one for basic auth.
      expect((await admin('POST', '/v1/providers', { key: 'canary-oauth', name: 'Canary OAuth', authType: 'oauth2_code', baseUrls: [upstream.url], oauth2: { authorizeUrl: oauth.authorizeUrl, tokenUrl: oauth.tokenUrl, revokeUrl: oauth.revokeUrl, scopes: ['openid', 'offline_access', 'api:read'], clientId: oauth.clientId, clientSecret: oauth.clientSecret } })).statusCode).toBe(201);
      needles.add(oauth.clientSecret);
      expect((await admin('PUT', '/v1/providers/github/oauth-app', { clientId: 'gh', clientSecret: `${canary}-client-secret` })).statusCode).toBe(200);
      expect((await admin('POST', '/v1/providers', { key: 'canary-key', name: 'Canary Key', authType: 'api_key', baseUrls: [upstream.url], apiKey: { in: 'query', name: 'api_key' } })).statusCode).toBe(201);
      expect((await admin('POST', '/v1/providers', { key: 'canary-basic', name: 'Canary Basic', authType: 'basic', baseUrls: [upstream.url] })).statusCode).toBe(201);
      await admin('GET', '/v1/providers');
      await admin('GET', '/v1/providers/github');
      await admin('GET', '/v1/providers/canary-oauth');

      const { key } = await t.workspaceWithKey(['*']);
      const apiKeyConnection = await call({ method: 'POST', url: '/v1/connections', token: key, json: { provider: 'canary-key', name: 'k', credentials: { apiKey: `${canary}-apikey` } } });
      const basicConnection = await call({ method: 'POST', url: '/v1/connections', token: key, json: { provider: 'canary-basic', name: 'b', credentials: { username: 'user', password: `${canary}-password` } } });
      const imported = await call({ method: 'POST', url: '/v1/connections', token: key, json: { provider: 'canary-oauth', name: 'i', credentials: { accessToken: `${canary}-access`, refreshToken: `${canary}-refresh`, expiresAt: new Date(Date.now() + 3600_000).toISOString() } } });
      needles.add(Buffer.from(`user:${canary}-password`).toString('base64'));
      const ids = [apiKeyConnection, basicConnection, imported].map((r) => {
        expect(r.statusCode, r.body).toBe(201);
        return r.json<{ id: string }>().id;
      });

      // A real OAuth flow: its tokens are secrets too (captured from what the upstream receives).
      const session = await call({ method: 'POST', url: '/v1/connect-sessions', token: key, json: { allowedProviders: ['canary-oauth', 'canary-key'], connectionName: 'flow' } });
      const token = session.json<{ token: string }>().token;
      await call({ method: 'GET', url: `/connect/${token}` });
      const start = await call({ method: 'GET', url: `/connect/${token}/oauth/canary-oauth` });
      const callback = await oauth.authorize(String(start.headers.location), { redirectPrefix: `${PUBLIC_URL}/oauth/callback` });
      expect((await call({ method: 'GET', url: `${callback.pathname}${callback.search}` })).statusCode).toBe(200);
      const flowId = (await call({ method: 'GET', url: '/v1/connections?provider=canary-oauth', token: key })).json<{ data: { id: string; name: string }[] }>().data.find((c) => c.name === 'flow')?.id ?? '';

      // The relay, on every connection, against an upstream that echoes what it receives.
      for (const id of [...ids, flowId]) {
        expect((await call({ method: 'GET', url: `/v1/proxy/${id}/echo?x=1`, token: key })).statusCode).toBe(200);
        await call({ method: 'POST', url: `/v1/proxy/${id}/echo`, token: key, headers: { 'content-type': 'application/json' }, payload: '{"a":1}' });
        await call({ method: 'GET', url: `/v1/proxy/${id}/../escape`, token: key });
      }
      const flowBearer = upstream.requests.at(-1)?.headers.authorization?.slice(7) ?? '';
      expect(flowBearer.length).toBeGreaterThan(10);
      needles.add(flowBearer);

      // Reads, refresh, failures with secrets in the input, replacement, deletion.
      for (const id of [...ids, flowId]) await call({ method: 'GET', url: `/v1/connections/${id}`, token: key });
      await call({ method: 'POST', url: `/v1/connections/${flowId}/refresh`, token: key });
      await call({ method: 'POST', url: '/v1/connections', token: key, json: { provider: 'canary-key', name: 'k2', credentials: { apiKey: `${canary}-bad\n`, other: canary } } });
      await call({ method: 'POST', url: '/v1/connections', token: key, json: { provider: 'canary-key', name: 12, credentials: { apiKey: canary } } });
      await call({ method: 'POST', url: '/v1/connections', token: key, json: { provider: 'no-such-provider', name: 'x', credentials: { apiKey: canary } } });
      await call({ method: 'PATCH', url: `/v1/connections/${ids[0] ?? ''}`, token: key, json: { credentials: { apiKey: `${canary}-replaced` } } });
      await call({ method: 'PATCH', url: `/v1/connections/${ids[0] ?? ''}`, token: key, json: { credentials: { wrong: canary } } });
      await call({ method: 'DELETE', url: `/v1/connections/${ids[2] ?? ''}`, token: key });
      await call({ method: 'DELETE', url: `/v1/connections/${flowId}`, token: key });
      await t.app.core.relayLog.flush();
      await call({ method: 'GET', url: '/v1/connections', token: key });
      await call({ method: 'GET', url: '/v1/relay-log', token: key });
      await call({ method: 'GET', url: '/v1/operational-events', token: key });
      await call({ method: 'GET', url: '/v1/audit-log', token: key });
      await call({ method: 'GET', url: '/v1/audit-log/verify', token: key });
      await admin('GET', '/v1/platform/audit-log');
      await call({ method: 'GET', url: '/openapi.json' });
      expect(seen.length).toBeGreaterThan(60);
    });

    it('finds the canary nowhere: not in the database, the logs, any response or any header', async () => {
      const hex = (s: string) => Buffer.from(s, 'utf8').toString('hex');
      const check = (where: string, haystack: string) => {
        for (const needle of needles) {
          const at = haystack.indexOf(needle);
          expect(at === -1, `${where} contains a secret: …${haystack.slice(Math.max(0, at - 20), at + 300)}`).toBe(true);
          expect(haystack.includes(hex(needle)), `${where} contains a secret (hex)`).toBe(false);
        }
      };
      expect(logLines.length).toBeGreaterThan(50);
      check('logs', logLines.join('\n'));
      check('responses', seen.join('\n'));

      // Every table, as the owner, rows as JSON with bytea as hex.
      const owner = t.database.db.owner;
      const tables = (await owner.query<{ tablename: string }>("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).rows.map((r) => r.tablename);
      expect(tables).toEqual(expect.arrayContaining(['connections', 'providers', 'connect_sessions', 'relay_log', 'audit_log']));
      for (const table of tables) {
        const { rows } = await owner.query(`SELECT to_jsonb(t)::text AS row FROM ${table} t`);
        check(`table ${table}`, rows.map((r) => String(r['row'])).join('\n'));
      }
      if (backend.name === 'pglite') {
        // The raw data files (heap pages and WAL).
        const dump = await (t.database.db as unknown as { pglite: PGlite }).pglite.dumpDataDir('none');
        check('PGlite data files', Buffer.from(await dump.arrayBuffer()).toString('latin1'));
      } else if (t.database.url !== undefined) {
        const { stdout } = await promisify(execFile)('pg_dump', ['--data-only', t.database.url], { maxBuffer: 256 * 1024 * 1024 });
        expect(stdout).toContain('COPY public.connections');
        check('pg_dump', stdout);
      }
    });
  });
});
