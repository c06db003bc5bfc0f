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
import { startDnsServer } from '../testing/dns-server.js';
import { ssrfTargets, ssrfZone } from '../testing/ssrf-targets.js';

describe.each(backends)('relay SSRF on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    let dns: Awaited<ReturnType<typeof startDnsServer>>;
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
      dns = await startDnsServer(ssrfZone);
      t = await startTestApp(backend, { resolve: dns.resolve }); // no egress allow-list: production-like
    });
    afterAll(async () => {
      await t.close();
      await dns.close();
      listener.close();
    });

    const httpTargets = ssrfTargets.filter(([url, reason]) => reason !== 'scheme' && /^https?:\/\//.test(url));
    const otherTargets = ssrfTargets.filter((target) => !httpTargets.includes(target));

    it(`refuses ${String(httpTargets.length)} hostile base URLs before connecting, with egress_blocked`, async () => {
      expect(httpTargets.length).toBeGreaterThanOrEqual(40);
      const baseUrls = httpTargets.map(([url]) => url.replace(':P', `:${String(port)}`).replace(/\/$/, ''));
      const { key } = await t.workspaceWithKey(['connections:write', 'proxy']);
      // A provider holds at most 20 base URLs: spread the table over several.
      const chunks: string[][] = [];
      for (let i = 0; i < baseUrls.length; i += 20) chunks.push(baseUrls.slice(i, i + 20));
      let checked = 0;
      for (const [n, chunk] of chunks.entries()) {
        const providerKey = `evil-${backend.name}-${String(n)}`;
        const created = await t.admin('POST', '/v1/providers', { key: providerKey, name: 'Evil', authType: 'api_key', baseUrls: chunk, apiKey: { in: 'header', name: 'X-Key' } });
        expect(created.statusCode, created.body).toBe(201);
        const connection = await t.request({ method: 'POST', url: '/v1/connections', token: key, json: { provider: providerKey, name: providerKey, credentials: { apiKey: 'k-0123456789abcdef' } } });
        const id = connection.json<{ id: string }>().id;
        for (const baseUrl of chunk) {
          const expected = httpTargets.find(([url]) => url.replace(':P', `:${String(port)}`).replace(/\/$/, '') === baseUrl)?.[1];
          const response = await t.request({ method: 'GET', url: `/v1/proxy/${id}/anything`, token: key, headers: { 'base-url': baseUrl } });
          expect(response.statusCode, baseUrl).toBe(422);
          expect(response.json(), baseUrl).toMatchObject({ code: 'egress_blocked', reason: expected });
          expect(attempts, baseUrl).toBe(0);
          checked++;
        }
      }
      expect(checked).toBe(httpTargets.length);
      expect(t.app.core.egress.metrics.blocked.address).toBeGreaterThanOrEqual(baseUrls.length - 1);
      // The refusals are counted on /metrics (admin only).
      expect((await t.request({ method: 'GET', url: '/metrics' })).statusCode).toBe(401);
      expect((await t.request({ method: 'GET', url: '/metrics', token: key })).statusCode).toBe(401);
      const metrics = await t.admin('GET', '/metrics');
      expect(metrics.statusCode).toBe(200);
      const blocked = /bulkhead_egress_blocked_total\{reason="address"\} (\d+)/.exec(metrics.body);
      expect(Number(blocked?.[1])).toBeGreaterThanOrEqual(baseUrls.length - 1);
      expect(metrics.body).toContain('bulkhead_http_request_duration_seconds_bucket');
    });

    it(`refuses the ${String(otherTargets.length)} non-http targets when the provider is defined`, async () => {
      for (const [url] of otherTargets) {
        const response = await t.admin('POST', '/v1/providers', { key: 'bad-scheme', name: 'x', authType: 'basic', baseUrls: [url.replace(':P', `:${String(port)}`)] });
        expect(response.statusCode, url).toBe(400);
      }
      expect(attempts).toBe(0);
    });

  });
});
