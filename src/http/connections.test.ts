/**
 * What the server does with slow and oversized requests on real sockets (not `inject`: whether a
 * connection stays open, and what comes after on it, is the point).
 */
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, testSecrets, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import { type RawConnection, type RawResponse, rawConnection, trickle } from '../testing/raw-http.js';
import { startUpstream, type Upstream } from '../testing/upstream.js';

const REQUEST_TIMEOUT_MS = 1500;
const UPLOADS_PER_ADDRESS = 3;
const BODY_LIMIT = 4096;

const head = (method: string, path: string, headers: Record<string, string | number>): string =>
  `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${Object.entries(headers).map(([name, value]) => `${name}: ${String(value)}\r\n`).join('')}\r\n`;

const problemCode = (response: RawResponse): string => (JSON.parse(response.body) as { code: string }).code;

describe.each(backends)('slow and oversized requests on real sockets on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    let upstream: Upstream;
    let port: number;
    let key: string;
    let connectionId: string;
    const open: RawConnection[] = [];
    const connectTo = async () => {
      const c = await rawConnection(port);
      open.push(c);
      return c;
    };

    beforeAll(async () => {
      upstream = await startUpstream();
      t = await startTestApp(backend, {
        config: { egressAllowCidrs: ['127.0.0.1/32'], requestTimeoutMs: REQUEST_TIMEOUT_MS, uploadsPerAddress: UPLOADS_PER_ADDRESS, bodyLimitBytes: BODY_LIMIT },
      });
      await t.app.http.listen({ host: '127.0.0.1', port: 0 });
      port = (t.app.http.server.address() as AddressInfo).port;
      const provider = await t.admin('POST', '/v1/providers', { key: `sockets-${backend.name}`, name: 'Sockets', authType: 'api_key', baseUrls: [upstream.url], apiKey: { in: 'header', name: 'Authorization', prefix: 'Bearer ' } });
      expect(provider.statusCode, provider.body).toBe(201);
      key = (await t.workspaceWithKey(['*'])).key;
      const connection = await t.request({ method: 'POST', url: '/v1/connections', token: key, json: { provider: `sockets-${backend.name}`, name: 'c', credentials: { apiKey: 'sk_sockets_0123456789' } } });
      expect(connection.statusCode, connection.body).toBe(201);
      connectionId = connection.json<{ id: string }>().id;
    });
    afterAll(async () => {
      for (const c of open) c.destroy();
      await t.close();
      await upstream.close();
    });

    it('a chunked body that never ends is answered 408 request_timeout and its connection closed', async () => {
      const c = await connectTo();
      const started = Date.now();
      c.write(head('POST', '/v1/events', { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'transfer-encoding': 'chunked' }));
      const dripping = trickle(c, 100, ' ');
      try {
        const response = await c.response(REQUEST_TIMEOUT_MS + 4000);
        expect(response.status).toBe(408);
        expect(response.headers['content-type']).toContain('application/problem+json');
        expect(problemCode(response)).toBe('request_timeout');
        await c.closed;
        expect(Date.now() - started).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 100);
      } finally {
        dripping.stop();
      }
    });

    it('a Content-Length body that is never completed is answered 408 and closed', async () => {
      const c = await connectTo();
      c.write(head('POST', '/v1/events', { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': 1000 }));
      c.write('{"type":"never.finished",');
      const response = await c.response(REQUEST_TIMEOUT_MS + 4000);
      expect({ status: response.status, code: problemCode(response) }).toEqual({ status: 408, code: 'request_timeout' });
      await c.closed;
    });

    it('an answer given before the body was read (401, 413) closes the connection at once', async () => {
      const unauthenticated = await connectTo();
      unauthenticated.write(head('POST', '/v1/events', { authorization: 'Bearer bk_live_not-a-key', 'content-type': 'application/json', 'transfer-encoding': 'chunked' }));
      const dripping = trickle(unauthenticated, 100, ' ');
      const announcedTooLarge = await connectTo();
      announcedTooLarge.write(head('POST', '/v1/tenants', { authorization: `Bearer ${testSecrets.adminToken}`, 'content-type': 'application/json', 'content-length': BODY_LIMIT * 10 }));
      announcedTooLarge.write('{"name":');
      try {
        for (const [c, status, code] of [[unauthenticated, 401, 'api_key_malformed'], [announcedTooLarge, 413, 'payload_too_large']] as const) {
          const response = await c.response(2000);
          const answeredAt = Date.now();
          expect({ status: response.status, code: problemCode(response), connection: response.headers['connection'] }).toEqual({ status, code, connection: 'close' });
          // Well before the request timeout would have closed it.
          expect((await c.closed) - answeredAt).toBeLessThan(REQUEST_TIMEOUT_MS / 2);
        }
      } finally {
        dripping.stop();
      }
    });

    it('ordinary requests keep their connection alive', async () => {
      const c = await connectTo();
      for (let i = 0; i < 2; i++) {
        const body = JSON.stringify({ type: 'keep.alive', payload: { i } });
        c.write(head('POST', '/v1/events', { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }) + body);
        const response = await c.response();
        expect(response.status, response.body).toBe(202);
        expect(response.headers['connection']).not.toBe('close');
      }
      expect(c.isClosed).toBe(false);
    });

    it(`one address holds at most ${UPLOADS_PER_ADDRESS} uploads in progress; the next is refused with 429 too_many_uploads and closed`, async () => {
      const slow: RawConnection[] = [];
      const drips: { stop(): void }[] = [];
      try {
        for (let i = 0; i < UPLOADS_PER_ADDRESS; i++) {
          const c = await connectTo();
          c.write(head('POST', '/v1/events', { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'transfer-encoding': 'chunked' }));
          drips.push(trickle(c, 100, ' '));
          slow.push(c);
        }
        await sleep(200);
        // A body that arrives with its headers is not a slow upload, whatever the others are doing.
        const quick = await connectTo();
        const body = JSON.stringify({ type: 'quick.one', payload: {} });
        quick.write(head('POST', '/v1/events', { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }) + body);
        expect((await quick.response()).status).toBe(202);

        const refused = await connectTo();
        refused.write(head('POST', '/v1/events', { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'transfer-encoding': 'chunked' }));
        refused.write('1\r\n \r\n');
        const response = await refused.response(2000);
        expect({ status: response.status, code: problemCode(response), connection: response.headers['connection'] }).toEqual({ status: 429, code: 'too_many_uploads', connection: 'close' });
        await refused.closed;
        expect(slow.every((c) => !c.isClosed)).toBe(true);

        // The slow ones time out and give their places back.
        await Promise.all(slow.map((c) => c.closed));
        const after = await connectTo();
        after.write(head('POST', '/v1/events', { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'transfer-encoding': 'chunked' }));
        await sleep(50);
        const late = JSON.stringify({ type: 'late.one', payload: {} });
        after.write(`${Buffer.byteLength(late).toString(16)}\r\n${late}\r\n0\r\n\r\n`);
        expect((await after.response()).status).toBe(202);
      } finally {
        for (const drip of drips) drip.stop();
      }
    });

    it('an oversized relay upload is answered 413 payload_too_large without the provider seeing it, and its connection is closed', async () => {
      const before = { ...upstream.counts, requests: upstream.requests.length };
      const announced = await connectTo();
      announced.write(head('POST', `/v1/proxy/${connectionId}/upload`, { authorization: `Bearer ${key}`, 'content-type': 'application/octet-stream', 'content-length': BODY_LIMIT + 1 }));
      announced.write('a'.repeat(100));
      const first = await announced.response(3000);
      expect({ status: first.status, code: problemCode(first), connection: first.headers['connection'] }).toEqual({ status: 413, code: 'payload_too_large', connection: 'close' });
      await announced.closed;
      // Refused before the provider was contacted at all.
      expect(upstream.counts.connections).toBe(before.connections);

      const growing = await connectTo();
      growing.write(head('POST', `/v1/proxy/${connectionId}/upload`, { authorization: `Bearer ${key}`, 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' }));
      const chunk = 'b'.repeat(1000);
      const dripping = trickle(growing, 20, chunk);
      try {
        const second = await growing.response(3000);
        expect({ status: second.status, code: problemCode(second), connection: second.headers['connection'] }).toEqual({ status: 413, code: 'payload_too_large', connection: 'close' });
        await growing.closed;
      } finally {
        dripping.stop();
      }
      await sleep(100);
      // The upstream request was aborted: never completed, and never more than the limit.
      expect(upstream.requests.length).toBe(before.requests);
      expect(upstream.counts.bodyBytes - before.bodyBytes).toBeLessThanOrEqual(BODY_LIMIT);

      // The next call, on a new connection, works at once.
      const next = await connectTo();
      next.write(head('GET', `/v1/proxy/${connectionId}/after`, { authorization: `Bearer ${key}` }));
      const third = await next.response(3000);
      expect(third.status, third.body).toBe(200);
    });
  });
});
