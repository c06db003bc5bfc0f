/**
 * The SSRF table through the relay: a platform that (by mistake or malice) defines a provider
 * whose base URLs point into private space gets every call refused before a connection exists.
 */
import { once } from 'node:events';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';

const targets = [
  'http://127.0.0.1:P', 'http://127.1:P', 'http://2130706433:P', 'http://0x7f.1:P', 'http://0177.0.0.1:P', 'http://0:P', 'http://[::1]:P',
  'http://[::ffff:127.0.0.1]:P', 'http://[::127.0.0.1]:P', 'http://[64:ff9b::127.0.0.1]:P', 'http://localhost:P', 'http://169.254.169.254',
  'http://10.0.0.1', 'http://172.16.0.1', 'http://192.168.1.1', 'http://100.64.0.1', 'http://198.18.0.1', 'http://[fd00::1]', 'http://[fe80::1]', 'http://224.0.0.1',
];

describe.each(backends)('relay SSRF on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    let attempts = 0;
    const listener = createServer((socket) => {
      attempts++;
      socket.destroy();
    });
    let port = 0;
    beforeAll(async () => {
      listener.listen(0, '127.0.0.1');
      await once(listener, 'listening');
      port = (listener.address() as AddressInfo).port;
      t = await startTestApp(backend); // no egress allow-list: production-like
    });
    afterAll(async () => {
      await t.close();
      listener.close();
    });

    it(`refuses ${String(targets.length)} private base URLs before connecting, with egress_blocked`, async () => {
      const baseUrls = targets.map((u) => u.replace(':P', `:${String(port)}`));
      const created = await t.admin('POST', '/v1/providers', { key: `evil-${backend.name}`, name: 'Evil', authType: 'api_key', baseUrls, apiKey: { in: 'header', name: 'X-Key' } });
      expect(created.statusCode, created.body).toBe(201);
      const { key } = await t.workspaceWithKey(['connections:write', 'proxy']);
      const connection = await t.request({ method: 'POST', url: '/v1/connections', token: key, json: { provider: `evil-${backend.name}`, name: 'evil', credentials: { apiKey: 'k-0123456789abcdef' } } });
      const id = connection.json<{ id: string }>().id;
      for (const baseUrl of baseUrls) {
        const response = await t.request({ method: 'GET', url: `/v1/proxy/${id}/anything`, token: key, headers: { 'base-url': baseUrl } });
        expect(response.statusCode, baseUrl).toBe(422);
        expect(response.json()).toMatchObject({ code: 'egress_blocked', reason: 'address' });
      }
      expect(attempts).toBe(0);
      expect(t.app.core.egress.metrics.blocked.address).toBeGreaterThanOrEqual(baseUrls.length);
      // The refusals are counted on /metrics (admin only).
      expect((await t.request({ method: 'GET', url: '/metrics' })).statusCode).toBe(401);
      expect((await t.request({ method: 'GET', url: '/metrics', token: key })).statusCode).toBe(401);
      const metrics = await t.admin('GET', '/metrics');
      expect(metrics.statusCode).toBe(200);
      const blocked = /bulkhead_egress_blocked_total\{reason="address"\} (\d+)/.exec(metrics.body);
      expect(Number(blocked?.[1])).toBeGreaterThanOrEqual(baseUrls.length);
      expect(metrics.body).toContain('bulkhead_http_request_duration_seconds_bucket');
    });

    it('refuses non-http base URLs when the provider is defined', async () => {
      for (const baseUrl of ['file:///etc/passwd', 'gopher://127.0.0.1:70', 'ftp://example.com']) {
        const response = await t.admin('POST', '/v1/providers', { key: 'bad-scheme', name: 'x', authType: 'basic', baseUrls: [baseUrl] });
        expect(response.statusCode, baseUrl).toBe(400);
      }
    });
  });
});
