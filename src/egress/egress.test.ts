/**
 * The SSRF table: every hostile target is refused before a connection exists. A recording
 * listener on loopback (where every loopback form below would land) counts connection attempts;
 * a real DNS server on loopback gives names private answers.
 */
import { once } from 'node:events';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDnsServer } from '../testing/dns-server.js';
import { ssrfTargets, ssrfZone } from '../testing/ssrf-targets.js';
import { classifyAddress, parseAllowList } from './address-policy.js';
import { createEgressClient, type EgressClient } from './client.js';

async function recorder(host: string): Promise<{ server: TcpServer; port: number; connections: () => number }> {
  let count = 0;
  const server = createTcpServer((socket) => {
    count++;
    socket.destroy();
  });
  server.listen(0, host);
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port, connections: () => count };
}

describe('address classification', () => {
  it.each([
    ['127.0.0.1', 'loopback'], ['127.255.255.254', 'loopback'], ['10.1.2.3', 'private'], ['172.16.0.1', 'private'], ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'], ['169.254.169.254', 'linkLocal'], ['100.64.0.1', 'carrierGradeNat'], ['0.0.0.0', 'unspecified'], ['255.255.255.255', 'broadcast'],
    ['224.0.0.1', 'multicast'], ['240.0.0.1', 'reserved'], ['198.18.0.1', 'reserved'], ['192.0.2.1', 'reserved'], ['198.51.100.7', 'reserved'], ['203.0.113.9', 'reserved'],
    ['192.0.0.8', 'reserved'], ['::1', 'loopback'], ['::', 'unspecified'], ['fe80::1', 'linkLocal'], ['fc00::1', 'uniqueLocal'], ['fd12:3456::1', 'uniqueLocal'],
    ['fec0::1', 'deprecatedSiteLocal'], ['ff02::1', 'multicast'], ['::ffff:127.0.0.1', 'loopback'], ['::ffff:10.0.0.1', 'private'], ['::127.0.0.1', 'loopback'], ['::7f00:1', 'ipv4Compatible'], ['::808:808', 'ipv4Compatible'],
    ['64:ff9b::7f00:1', 'rfc6052'], ['64:ff9b::808:808', 'rfc6052'], ['2002:7f00:1::', '6to4'], ['2001::1', 'teredo'], ['2001:db8::1', 'reserved'], ['100::1', 'discard'],
  ])('refuses %s (%s)', (address, range) => {
    expect(classifyAddress(address)).toMatchObject({ allowed: false, range });
  });

  it.each(['8.8.8.8', '1.1.1.1', '93.184.216.34', '2606:4700:4700::1111', '2a00:1450:4001:80b::200e'])('allows global unicast %s', (address) => {
    expect(classifyAddress(address)).toMatchObject({ allowed: true, range: 'unicast' });
  });

  it('allows exactly the allow-listed range', () => {
    const allow = parseAllowList(['127.0.0.1/32']);
    expect(classifyAddress('127.0.0.1', allow).allowed).toBe(true);
    expect(classifyAddress('::ffff:127.0.0.1', allow).allowed).toBe(true);
    expect(classifyAddress('127.0.0.2', allow).allowed).toBe(false);
    expect(classifyAddress('fe80::1%eth0', allow).allowed).toBe(false);
    expect(() => parseAllowList(['127.0.0.1/33'])).toThrow();
  });
});

describe('egress client', () => {
  let loop: Awaited<ReturnType<typeof recorder>>;
  let dns: Awaited<ReturnType<typeof startDnsServer>>;
  let strict: EgressClient;

  beforeAll(async () => {
    loop = await recorder('127.0.0.1');
    dns = await startDnsServer(ssrfZone);
    strict = createEgressClient({ resolve: dns.resolve });
  });
  afterAll(async () => {
    await strict.close();
    await dns.close();
    loop.server.close();
  });

  const P = () => loop.port;
  const table = ssrfTargets;

  it(`refuses all ${String(table.length)} hostile targets before connecting`, async () => {
    expect(table.length).toBeGreaterThanOrEqual(40);
    const blockedBefore = Object.values(strict.metrics.blocked).reduce((a, b) => a + b, 0);
    for (const [template, reason] of table) {
      const url = template.replaceAll(':P', `:${String(P())}`);
      await expect(strict.request(url, { method: 'GET' }), url).rejects.toMatchObject({ code: 'egress_blocked', details: { reason } });
      expect(loop.connections(), url).toBe(0);
    }
    // checkUrl (used when a destination is saved) agrees on every one of them.
    for (const [template, reason] of table) {
      await expect(strict.checkUrl(template.replaceAll(':P', `:${String(P())}`)), template).rejects.toMatchObject({ details: { reason } });
    }
    expect(Object.values(strict.metrics.blocked).reduce((a, b) => a + b, 0) - blockedBefore).toBe(table.length * 2);
    expect(loop.connections()).toBe(0);
    expect(dns.queries).toEqual(expect.arrayContaining(['rebind.test', 'mixed.test']));
  });

  it('refuses https-less targets in https-only mode', async () => {
    const https = createEgressClient({ httpsOnly: true, allowCidrs: ['127.0.0.1/32'] });
    await expect(https.request(`http://127.0.0.1:${String(P())}/`, { method: 'GET' })).rejects.toMatchObject({ details: { reason: 'scheme' } });
    expect(loop.connections()).toBe(0);
    await https.close();
  });

  describe('with loopback allowed (local development)', () => {
    let upstream: HttpServer;
    let base: string;
    let sockets = 0;
    const seen: { url: string; host: string | undefined; authorization: string | undefined; method: string | undefined }[] = [];
    let trap: Awaited<ReturnType<typeof recorder>>;
    let client: EgressClient;

    beforeAll(async () => {
      trap = await recorder('127.0.0.2');
      upstream = createHttpServer((req, res) => {
        seen.push({ url: req.url ?? '', host: req.headers.host, authorization: req.headers.authorization, method: req.method });
        const url = new URL(req.url ?? '/', 'http://x');
        const hop = Number(url.searchParams.get('hop') ?? '0');
        switch (url.pathname) {
          case '/redirect-private':
            res.writeHead(302, { location: `http://127.0.0.2:${String(trap.port)}/` }).end();
            return;
          case '/redirect-mapped':
            res.writeHead(302, { location: `http://[::ffff:127.0.0.2]:${String(trap.port)}/` }).end();
            return;
          case '/redirect-decimal':
            res.writeHead(307, { location: `http://2130706434:${String(trap.port)}/` }).end();
            return;
          case '/redirect-file':
            res.writeHead(302, { location: 'file:///etc/passwd' }).end();
            return;
          case '/loop':
            res.writeHead(302, { location: `/loop?hop=${String(hop + 1)}` }).end();
            return;
          case '/to-other-origin':
            res.writeHead(303, { location: `http://api.test:${String((upstream.address() as AddressInfo).port)}/landing` }).end();
            return;
          case '/big':
            res.writeHead(200);
            res.end(Buffer.alloc(2 * 1024 * 1024, 1));
            return;
          case '/slow-headers':
            setTimeout(() => res.writeHead(200).end('late'), 1500);
            return;
          case '/slow-body':
            res.writeHead(200);
            res.write('a');
            setTimeout(() => res.end('b'), 1500);
            return;
          default:
            res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
        }
      });
      upstream.on('connection', () => sockets++);
      upstream.listen(0, '127.0.0.1');
      await once(upstream, 'listening');
      base = `http://127.0.0.1:${String((upstream.address() as AddressInfo).port)}`;
      const names = await startDnsServer({ 'api.test': ['127.0.0.1'] });
      client = createEgressClient({ allowCidrs: ['127.0.0.1/32'], resolve: names.resolve, headersTimeoutMs: 300, bodyTimeoutMs: 300 });
    });
    afterAll(async () => {
      await client.close();
      upstream.closeAllConnections();
      upstream.close();
      trap.server.close();
    });

    it('reaches an allow-listed server, keeps the connection alive, and keeps the Host of a resolved name', async () => {
      const before = sockets;
      for (const path of ['/a', '/b', '/c']) {
        expect((await client.request(`${base}${path}`, { method: 'GET' })).body.toString()).toBe('ok');
        // Let the finished response hand its socket back to the pool before the next request.
        await new Promise((resolve) => setImmediate(resolve));
      }
      expect(sockets - before).toBe(1);
      const port = (upstream.address() as AddressInfo).port;
      await client.request(`http://api.test:${String(port)}/named`, { method: 'GET' });
      expect(seen.at(-1)).toMatchObject({ url: '/named', host: `api.test:${String(port)}` });
    });

    it('re-validates every redirect hop and refuses ones into private space', async () => {
      for (const path of ['/redirect-private', '/redirect-mapped', '/redirect-decimal']) {
        await expect(client.request(`${base}${path}`, { method: 'GET', redirect: 'follow' }), path).rejects.toMatchObject({ code: 'egress_blocked', details: { reason: 'address' } });
      }
      await expect(client.request(`${base}/redirect-file`, { method: 'GET', redirect: 'follow' })).rejects.toMatchObject({ details: { reason: 'scheme' } });
      await expect(client.request(`${base}/loop`, { method: 'GET', redirect: 'follow' })).rejects.toMatchObject({ details: { reason: 'redirect_limit' } });
      expect(seen.filter((s) => s.url.startsWith('/loop')).length).toBe(4);
      await expect(client.request(`${base}/redirect-private`, { method: 'GET', redirect: 'error' })).rejects.toMatchObject({ details: { reason: 'redirect' } });
      expect((await client.request(`${base}/redirect-private`, { method: 'GET' })).status).toBe(302);
      expect(trap.connections()).toBe(0);
    });

    it('drops credentials when a followed redirect changes origin, and turns 303 POST into GET', async () => {
      const response = await client.request(`${base}/to-other-origin`, { method: 'POST', body: 'x', headers: { authorization: 'Bearer secret-token', 'x-api-key': 'k' }, credentialHeaders: ['x-api-key'], redirect: 'follow' });
      expect(response.status).toBe(200);
      expect(seen.at(-1)).toMatchObject({ url: '/landing', method: 'GET', authorization: undefined });
    });

    it('caps response size and time', async () => {
      await expect(client.request(`${base}/big`, { method: 'GET', maxResponseBytes: 1024 * 1024 })).rejects.toMatchObject({ code: 'egress_response_too_large' });
      await expect(client.request(`${base}/slow-headers`, { method: 'GET' })).rejects.toMatchObject({ code: 'egress_timeout' });
      await expect(client.request(`${base}/slow-body`, { method: 'GET' })).rejects.toMatchObject({ code: 'egress_timeout' });
    });
  });
});
