/**
 * The egress policy, end to end.
 *
 *  - The classification table (`classifyAddress`, pure).
 *  - The SSRF table: every hostile target is refused before a connection exists. A recording
 *    listener on one port of 127.0.0.1, 127.0.0.2 and ::1 counts connection attempts, and a
 *    control run with a permissive allow-list shows the loopback targets really would land there.
 *    A real DNS server on loopback (dns2) gives names private answers.
 *  - Redirect chains into private space, re-validated hop by hop.
 *  - What is allowed (loopback allow-listed, as in local development): keep-alive, Host, pinning
 *    against a resolver that changes its answer, credentials across origins, caps and timeouts.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { type AddressInfo, createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDnsServer } from '../testing/dns-server.js';
import { ssrfTargets, ssrfZone } from '../testing/ssrf-targets.js';
import { classifyAddress, parseAllowList } from './address-policy.js';
import { createEgressClient, type EgressClient } from './client.js';
import { type BlockReason, EgressError } from './errors.js';
import { pinnedLookup, type ResolvedAddress, type Resolver, resolveJudged } from './resolve.js';

// ---------------------------------------------------------------------------------------------
// helpers

const portOf = (server: TcpServer | HttpServer): number => (server.address() as AddressInfo).port;

async function listenOn(server: TcpServer | HttpServer, port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const fail = () => {
      resolve(false);
    };
    server.once('error', fail);
    server.listen(port, host, () => {
      server.off('error', fail);
      resolve(true);
    });
  });
}

const closeServer = (server: TcpServer | HttpServer): Promise<void> =>
  new Promise((resolve) => {
    server.close(() => {
      resolve();
    });
  });

interface Recorder {
  readonly port: number;
  /** Connections accepted so far, on any of its addresses. */
  connections(): number;
  /** The local address of each accepted connection. */
  readonly seen: string[];
  close(): Promise<void>;
}

/**
 * A TCP listener on the same port (`port`, or a free one) of every host given, counting (and
 * dropping) every connection; undefined when that port is taken on one of them.
 */
async function tryRecorder(hosts: readonly string[], port = 0): Promise<Recorder | undefined> {
  const seen: string[] = [];
  const servers: TcpServer[] = [];
  for (const host of hosts) {
    const server = createTcpServer((socket) => {
      seen.push(socket.localAddress ?? '?');
      socket.destroy();
    });
    if (!(await listenOn(server, port, host))) {
      await Promise.all(servers.map(closeServer));
      return undefined;
    }
    servers.push(server);
    port = portOf(server);
  }
  return {
    port,
    connections: () => seen.length,
    seen,
    close: async () => {
      await Promise.all(servers.map(closeServer));
    },
  };
}

async function recorder(hosts: readonly string[]): Promise<Recorder> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const found = await tryRecorder(hosts);
    if (found) return found;
  }
  throw new Error('no port free on every recorder address');
}

/** Asserts a refusal by policy: an EgressError with code egress_blocked and this reason. */
async function expectBlocked(promise: Promise<unknown>, reason: BlockReason, label: string): Promise<void> {
  const outcome: unknown = await promise.then(
    () => 'fulfilled',
    (error: unknown) => error,
  );
  expect(outcome, label).toBeInstanceOf(EgressError);
  expect(outcome, label).toMatchObject({ code: 'egress_blocked', details: { reason } });
}

/** Reads a stream to its end, counting bytes into `read`. */
async function drain(body: Readable, read = { bytes: 0 }): Promise<number> {
  for await (const chunk of body) read.bytes += (chunk as Buffer).length;
  return read.bytes;
}

const sumBlocked = (client: EgressClient): number => Object.values(client.metrics.blocked).reduce((a, b) => a + b, 0);
const tick = () => new Promise((resolve) => setImmediate(resolve));

// ---------------------------------------------------------------------------------------------

describe('address classification', () => {
  it.each([
    // IPv4 special-purpose ranges
    ['0.0.0.0', 'unspecified'], ['0.1.2.3', 'unspecified'], ['10.0.0.1', 'private'], ['10.255.255.255', 'private'], ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'], ['192.168.0.1', 'private'], ['127.0.0.1', 'loopback'], ['127.255.255.254', 'loopback'], ['169.254.0.1', 'linkLocal'],
    ['169.254.169.254', 'linkLocal'], ['100.64.0.1', 'carrierGradeNat'], ['100.127.255.254', 'carrierGradeNat'], ['255.255.255.255', 'broadcast'],
    ['224.0.0.1', 'multicast'], ['239.255.255.250', 'multicast'], ['240.0.0.1', 'reserved'], ['250.1.2.3', 'reserved'], ['198.18.0.1', 'reserved'],
    ['198.19.255.254', 'reserved'], ['192.0.2.1', 'reserved'], ['198.51.100.1', 'reserved'], ['203.0.113.1', 'reserved'], ['192.0.0.1', 'reserved'],
    ['192.88.99.1', 'reserved'],
    // IPv6 special-purpose ranges, and IPv6 outside 2000::/3
    ['::1', 'loopback'], ['::', 'unspecified'], ['fe80::1', 'linkLocal'], ['febf::1', 'linkLocal'], ['ff02::1', 'multicast'], ['ff0e::1', 'multicast'],
    ['fc00::1', 'uniqueLocal'], ['fd00:ec2::254', 'uniqueLocal'], ['fec0::1', 'deprecatedSiteLocal'], ['2001:db8::1', 'reserved'], ['100::1', 'discard'],
    ['2001:2::1', 'benchmarking'], ['4000::1', 'reserved'], ['[::1]', 'loopback'],
    // IPv6 forms carrying IPv4: mapped ones judged as the IPv4 address, the rest refused outright
    ['::ffff:127.0.0.1', 'loopback'], ['::ffff:7f00:1', 'loopback'], ['[::ffff:7f00:1]', 'loopback'], ['::ffff:10.0.0.1', 'private'],
    ['::ffff:169.254.169.254', 'linkLocal'], ['::127.0.0.1', 'ipv4Compatible'], ['::7f00:1', 'ipv4Compatible'], ['::8.8.8.8', 'ipv4Compatible'],
    ['64:ff9b::7f00:1', 'rfc6052'], ['64:ff9b::8.8.8.8', 'rfc6052'], ['64:ff9b:1::a00:1', 'rfc6052'], ['2002:7f00:1::', '6to4'], ['2002:808:808::1', '6to4'],
    ['2001::1', 'teredo'], ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'teredo'], ['::ffff:0:7f00:1', 'rfc6145'],
    // not an address in the strict notation sockets use
    ['fe80::1%eth0', 'invalid'], ['0177.0.0.1', 'invalid'], ['127.1', 'invalid'], ['2130706433', 'invalid'], ['localhost', 'invalid'], ['', 'invalid'], ['1.2.3.4.5', 'invalid'],
  ])('refuses %s (%s)', (address, range) => {
    expect(classifyAddress(address)).toMatchObject({ allowed: false, range, reason: range });
  });

  it.each([
    ['8.8.8.8', '8.8.8.8'], ['1.1.1.1', '1.1.1.1'], ['93.184.216.34', '93.184.216.34'], ['2606:4700:4700::1111', '2606:4700:4700::1111'],
    ['[2606:4700:4700::1111]', '2606:4700:4700::1111'], ['2a00:1450:4001:80b::200e', '2a00:1450:4001:80b::200e'], ['::ffff:8.8.8.8', '8.8.8.8'],
  ])('allows global unicast %s (judged as %s)', (input, address) => {
    const verdict = classifyAddress(input);
    expect(verdict).toMatchObject({ allowed: true, range: 'unicast', address });
    expect(verdict.reason).toBeUndefined();
  });

  it('reads ::a.b.c.d as the operating system does (IPv4-compatible), not as ipaddr.js does (IPv4-mapped)', () => {
    // ipaddr.js alone would call this 8.8.8.8 and allow it; a socket would dial ::808:808.
    expect(classifyAddress('::8.8.8.8')).toMatchObject({ allowed: false, address: '::808:808' });
    expect(classifyAddress('::10.0.0.1')).toMatchObject({ allowed: false, range: 'ipv4Compatible', address: '::a00:1' });
    // Allow-listing 127.0.0.1 must not let ::127.0.0.1 (which is not 127.0.0.1) through.
    expect(classifyAddress('::127.0.0.1', ['127.0.0.1/32']).allowed).toBe(false);
  });

  it('allows exactly the allow-listed ranges, matched against the judged address', () => {
    for (const allow of [['127.0.0.1/32'], parseAllowList(['127.0.0.1/32'])]) {
      expect(classifyAddress('127.0.0.1', allow)).toMatchObject({ allowed: true, range: 'loopback' });
      expect(classifyAddress('::ffff:127.0.0.1', allow)).toMatchObject({ allowed: true, address: '127.0.0.1', family: 4 });
      expect(classifyAddress('127.0.0.2', allow).allowed).toBe(false);
      expect(classifyAddress('::1', allow).allowed).toBe(false);
      expect(classifyAddress('64:ff9b::7f00:1', allow).allowed).toBe(false);
      expect(classifyAddress('2002:7f00:1::', allow).allowed).toBe(false);
    }
    expect(classifyAddress('fd00::1', ['fd00::/8']).allowed).toBe(true);
    expect(classifyAddress('fc00::1', ['fd00::/8']).allowed).toBe(false);
    // An allow-list never makes a non-address acceptable.
    expect(classifyAddress('fe80::1%eth0', ['fe80::/10']).allowed).toBe(false);
  });

  it.each(['127.0.0.1/33', '10.0.0.0', 'localhost/8', '', '::1/129', '10.0.0.0/8,127.0.0.1/32'])('rejects the allow-list entry %j', (cidr) => {
    expect(() => parseAllowList([cidr])).toThrow(`"${cidr}" is not a CIDR range`);
    expect(() => createEgressClient({ allowCidrs: ['127.0.0.1/32', cidr] })).toThrow(`"${cidr}" is not a CIDR range`);
  });
});

// ---------------------------------------------------------------------------------------------

describe('resolution and the pinned lookup', () => {
  const answers = (...list: string[]): Resolver => () => Promise.resolve(list.map((address) => ({ address, family: address.includes(':') ? (6 as const) : (4 as const) })));

  it('returns every answer in the form it was judged in: what the socket will dial', async () => {
    const allow = parseAllowList(['127.0.0.1/32']);
    await expect(resolveJudged('a.test', answers('::ffff:127.0.0.1', '127.0.0.1'), allow)).resolves.toEqual([{ address: '127.0.0.1', family: 4 }, { address: '127.0.0.1', family: 4 }]);
    await expect(resolveJudged('a.test', answers('2606:4700:4700:0:0:0:0:1111', '8.8.8.8'), [])).resolves.toEqual([{ address: '2606:4700:4700::1111', family: 6 }, { address: '8.8.8.8', family: 4 }]);
  });

  it('refuses the whole answer when one address is refused, and names without addresses', async () => {
    await expect(resolveJudged('m.test', answers('8.8.8.8', '10.0.0.1'), [])).rejects.toMatchObject({ code: 'egress_blocked', details: { reason: 'address', range: 'private', host: 'm.test' } });
    await expect(resolveJudged('bad.test', answers('not-an-address'), [])).rejects.toMatchObject({ details: { reason: 'address', range: 'invalid' } });
    await expect(resolveJudged('none.test', answers(), [])).rejects.toMatchObject({ details: { reason: 'resolution_failed' } });
    await expect(resolveJudged('err.test', () => Promise.reject(new Error('ENOTFOUND')), [])).rejects.toMatchObject({ details: { reason: 'resolution_failed' } });
  });

  it('hands the socket exactly the judged addresses, honouring the family it asks for', async () => {
    const judged: readonly ResolvedAddress[] = [{ address: '8.8.8.8', family: 4 }, { address: '2606:4700:4700::1111', family: 6 }];
    const lookup = pinnedLookup(() => Promise.resolve(judged));
    const call = (options: { all?: boolean; family?: number }) =>
      new Promise<unknown[]>((resolve) => {
        lookup('x.test', options, (...args: unknown[]) => {
          resolve(args);
        });
      });
    expect(await call({ all: true })).toEqual([null, judged]);
    expect(await call({ all: true, family: 6 })).toEqual([null, [judged[1]]]);
    expect(await call({})).toEqual([null, '8.8.8.8', 4]);
    expect(await call({ family: 6 })).toEqual([null, '2606:4700:4700::1111', 6]);
    const refusal = new EgressError('egress_blocked', 'no', { details: { reason: 'address' } });
    const refusing = pinnedLookup(() => Promise.reject(refusal));
    const [error] = await new Promise<unknown[]>((resolve) => {
      refusing('x.test', { all: true }, (...args: unknown[]) => {
        resolve(args);
      });
    });
    expect(error).toBe(refusal);
  });
});

// ---------------------------------------------------------------------------------------------

/** Names only this file uses, on top of the shared SSRF zone. */
const zone = {
  ...ssrfZone,
  // dns2 mis-encodes the dotted form (`::ffff:127.0.0.1` comes back as ::255.255.1.39); the hex
  // form round-trips, and Node's resolver hands it over as ::ffff:127.0.0.1.
  'mapped.test': ['::ffff:7f00:1'],
  'api.test': ['127.0.0.1'],
  'internal2.test': ['127.0.0.2'],
  'metadata.google.internal': ['169.254.169.254'],
  'v6mixed.test': ['2606:4700:4700::1111', 'fd00::1'],
  'teredo.test': ['2001::1'],
  '6to4.test': ['2002:7f00:1::'],
  // Node's resolver prints this answer as ::127.0.0.1, the form ipaddr.js misreads as mapped.
  'compat.test': ['::7f00:1'],
  'public.test': ['93.184.216.34'],
};

/** Hostile targets beyond the shared table (which the relay's SSRF test uses too). */
const moreTargets: readonly (readonly [string, BlockReason])[] = [
  ['http://127.0.0.1.:P/', 'address'], ['http://%31%32%37.0.0.1:P/', 'address'], ['http://①②⑦.⓪.⓪.①:P/', 'address'], ['http://0x7f.0x0.0x0.0x1:P/', 'address'],
  ['http://127.0.0.2:P/', 'address'], ['http://[::ffff:0:7f00:1]:P/', 'address'], ['http://[64:ff9b:1::7f00:1]:P/', 'address'], ['http://[::8.8.8.8]:P/', 'address'],
  ['http://[4000::1]/', 'address'], ['http://[2001:db8::1]/', 'address'], ['http://198.51.100.1/', 'address'], ['http://203.0.113.1/', 'address'],
  ['http://192.0.0.1/', 'address'], ['http://[100::1]/', 'address'], ['https://[::ffff:127.0.0.1]:P/', 'address'], ['HTTP://LOCALHOST:P/', 'address'],
  ['http://metadata.google.internal/computeMetadata/v1/', 'address'], ['http://v6mixed.test:P/', 'address'], ['http://teredo.test/', 'address'],
  ['http://6to4.test/', 'address'], ['http://compat.test:P/', 'address'], ['http://internal2.test:P/', 'address'], ['http://empty.test/', 'resolution_failed'],
  ['javascript:alert(1)', 'scheme'], ['blob:http://127.0.0.1:P/x', 'scheme'], ['wss://127.0.0.1:P/', 'scheme'], ['http://:P/', 'scheme'], ['//127.0.0.1:P/', 'scheme'],
  ['https://user@127.0.0.1:P/', 'scheme'],
];

describe('egress client', () => {
  let trap: Recorder;
  let dns: Awaited<ReturnType<typeof startDnsServer>>;

  beforeAll(async () => {
    trap = await recorder(['127.0.0.1', '127.0.0.2', '::1']);
    dns = await startDnsServer(zone);
  });
  afterAll(async () => {
    await dns.close();
    await trap.close();
  });

  const at = (template: string): string => template.replaceAll(':P', `:${String(trap.port)}`);

  describe('the SSRF table (production-like: nothing allow-listed)', () => {
    let strict: EgressClient;
    beforeAll(() => {
      strict = createEgressClient({ resolve: dns.resolve });
    });
    afterAll(async () => {
      await strict.close();
    });

    const table = [...ssrfTargets, ...moreTargets];

    it(`refuses all ${String(table.length)} hostile targets before connecting, and counts each refusal by reason`, async () => {
      expect(table.length).toBeGreaterThanOrEqual(80);
      const before = { ...strict.metrics.blocked };
      for (const [template, reason] of table) {
        await expectBlocked(strict.request(at(template)), reason, template);
        expect(trap.connections(), template).toBe(0);
      }
      for (const reason of ['address', 'scheme', 'resolution_failed'] as const) {
        expect(strict.metrics.blocked[reason] - before[reason], reason).toBe(table.filter(([, r]) => r === reason).length);
      }
      // The names really were asked of the DNS server (refused for their answers, not their looks).
      expect(dns.queries).toEqual(expect.arrayContaining(['rebind.test', 'mixed.test', 'mapped.test', 'compat.test', 'v6mixed.test', 'metadata.google.internal']));
      expect(trap.connections()).toBe(0);
    });

    it('refuses them through stream() and checkUrl() too', async () => {
      const before = sumBlocked(strict);
      for (const [template, reason] of table) {
        await expectBlocked(strict.stream(at(template), { method: 'POST', body: 'x' }), reason, template);
        await expectBlocked(strict.checkUrl(at(template)), reason, template);
      }
      expect(sumBlocked(strict) - before).toBe(table.length * 2);
      expect(trap.connections()).toBe(0);
    });

    it('accepts a name whose only answer is public (checkUrl: nothing is sent)', async () => {
      await expect(strict.checkUrl('http://public.test/')).resolves.toBeUndefined();
      await expect(strict.checkUrl('https://[2606:4700:4700::1111]/')).resolves.toBeUndefined();
    });

    it('does not tell the caller what a name resolved to', async () => {
      const error: unknown = await strict.request('http://internal.test/').catch((e: unknown) => e);
      expect(error).toMatchObject({ details: { reason: 'address', host: 'internal.test', range: 'private' } });
      expect(JSON.stringify((error as EgressError).details)).not.toContain('10.0.0.5');
      expect((error as EgressError).message).not.toContain('10.0.0.5');
    });

    it('control: with the ranges allow-listed, the same loopback targets do reach the recorder', async () => {
      // Shows the zero-connection assertions above mean something: the recorder is where they lead.
      const open = createEgressClient({ resolve: dns.resolve, allowCidrs: ['127.0.0.0/8', '::1/128'] });
      const landing = ['http://127.0.0.1:P/', 'http://127.1:P/', 'http://2130706433:P/', 'http://0x7f.1:P/', 'http://0177.0.0.1:P/', 'http://017700000001:P/',
        'http://①②⑦.⓪.⓪.①:P/', 'http://127.0.0.2:P/', 'http://[::ffff:127.0.0.1]:P/', 'http://[::ffff:7f00:1]:P/', 'http://[::1]:P/', 'http://rebind.test:P/',
        'http://mapped.test:P/', 'http://v6loop.test:P/', 'http://internal2.test:P/', 'http://localhost:P/'];
      try {
        for (const template of landing) {
          const before = trap.connections();
          // The recorder hangs up at once: the request fails, but only after connecting.
          await expect(open.request(at(template)), template).rejects.toMatchObject({ code: 'egress_failed' });
          expect(trap.connections(), template).toBeGreaterThan(before);
        }
        expect(new Set(trap.seen)).toEqual(new Set(['127.0.0.1', '127.0.0.2', '::1']));
      } finally {
        await open.close();
        trap.seen.length = 0;
      }
    });
  });

  it('refuses http in https-only mode, even to an allow-listed address', async () => {
    const httpsOnly = createEgressClient({ httpsOnly: true, allowCidrs: ['127.0.0.1/32'] });
    await expectBlocked(httpsOnly.request(at('http://127.0.0.1:P/')), 'scheme', 'http');
    await expectBlocked(httpsOnly.checkUrl(at('http://127.0.0.1:P/')), 'scheme', 'checkUrl http');
    expect(httpsOnly.metrics.blocked.scheme).toBe(2);
    expect(trap.connections()).toBe(0);
    await httpsOnly.close();
  });

  // -------------------------------------------------------------------------------------------

  describe('with 127.0.0.1 allow-listed (local development)', () => {
    let upstream: HttpServer;
    let base: string;
    let upstreamPort: number;
    let sockets = 0;
    /** A listener on 127.0.0.2 at the upstream's port: where a name that rebinds would land. */
    let rebound: Recorder;
    const seen: { url: string; method: string; headers: IncomingMessage['headers']; body: string; localAddress: string | undefined }[] = [];
    const resolutions: string[] = [];
    let client: EgressClient;

    function handle(req: IncomingMessage, res: ServerResponse, body: string): void {
      seen.push({ url: req.url ?? '', method: req.method ?? '', headers: req.headers, body, localAddress: req.socket.localAddress });
      const url = new URL(req.url ?? '/', 'http://x');
      const q = (name: string) => url.searchParams.get(name);
      const timers: NodeJS.Timeout[] = [];
      res.on('close', () => {
        timers.forEach(clearTimeout);
      });
      switch (url.pathname) {
        case '/echo':
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ method: req.method, body }));
          return;
        case '/r':
          res.writeHead(Number(q('status') ?? '302'), { location: q('to') ?? '/echo' }).end('moved');
          return;
        case '/loop': {
          const hop = Number(q('hop') ?? '0');
          const stop = Number(q('stop') ?? '99');
          if (hop >= stop) res.writeHead(200).end(`done after ${String(hop)}`);
          else res.writeHead(302, { location: `/loop?hop=${String(hop + 1)}&stop=${String(stop)}` }).end();
          return;
        }
        case '/bytes': {
          // n bytes, announced (Content-Length) or not (chunked), in 64 KiB writes
          const n = Number(q('n'));
          res.writeHead(200, q('chunked') === null ? { 'content-length': String(n) } : {});
          for (let sent = 0; sent < n; sent += 65536) res.write(Buffer.alloc(Math.min(65536, n - sent), 0x61));
          res.end();
          return;
        }
        case '/slow-headers':
          timers.push(setTimeout(() => res.writeHead(200).end('late'), 5000));
          return;
        case '/slow-body':
          res.writeHead(200);
          res.write('a');
          timers.push(setTimeout(() => res.end('b'), 5000));
          return;
        case '/trickle': {
          // a byte every 50 ms for 1.5 s: never silent long enough for a body timeout
          res.writeHead(200);
          let left = 30;
          const drip = () => {
            if (left-- === 0) {
              res.end();
              return;
            }
            res.write('.');
            timers.push(setTimeout(drip, 50));
          };
          drip();
          return;
        }
        default:
          res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
      }
    }

    /** Resolves through the DNS server, counting resolutions. */
    const counting: Resolver = async (hostname) => {
      resolutions.push(hostname);
      return dns.resolve(hostname);
    };

    beforeAll(async () => {
      // The upstream on 127.0.0.1, and a recorder on 127.0.0.2 at the same port.
      for (let attempt = 0; ; attempt++) {
        upstream = createHttpServer((req, res) => {
          const chunks: Buffer[] = [];
          req.on('data', (chunk: Buffer) => chunks.push(chunk));
          req.on('end', () => {
            handle(req, res, Buffer.concat(chunks).toString());
          });
        });
        upstream.on('connection', () => sockets++);
        await listenOn(upstream, 0, '127.0.0.1');
        upstreamPort = portOf(upstream);
        const found = await tryRecorder(['127.0.0.2'], upstreamPort);
        if (found) {
          rebound = found;
          break;
        }
        await closeServer(upstream);
        if (attempt > 20) throw new Error('no port free on both 127.0.0.1 and 127.0.0.2');
      }
      base = `http://127.0.0.1:${String(upstreamPort)}`;
      client = createEgressClient({ allowCidrs: ['127.0.0.1/32'], resolve: counting, headersTimeoutMs: 300, bodyTimeoutMs: 300 });
    });
    afterAll(async () => {
      await client.close();
      upstream.closeAllConnections();
      await closeServer(upstream);
      await rebound.close();
    });

    it('reaches the allow-listed server and returns status, headers and body', async () => {
      const response = await client.request(`${base}/echo`, { method: 'POST', body: 'hello', headers: { 'content-type': 'text/plain' } });
      expect(response.status).toBe(200);
      expect(response.headers['content-type']).toBe('application/json');
      expect(JSON.parse(response.body.toString())).toEqual({ method: 'POST', body: 'hello' });
      expect(response.url).toBe(`${base}/echo`);
    });

    it('abort() cuts requests waiting for headers and response streams mid-body, refuses new ones, and close() then returns at once', async () => {
      const cutting = createEgressClient({ allowCidrs: ['127.0.0.1/32'], headersTimeoutMs: 10_000, bodyTimeoutMs: 10_000 });
      const waiting = cutting.request(`${base}/slow-headers`);
      const streaming = await cutting.stream(`${base}/slow-body`);
      const reading = (async () => {
        let bytes = 0;
        for await (const chunk of streaming.body) bytes += (chunk as Buffer).length;
        return bytes;
      })();
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(cutting.aborted).toBe(false);
      const started = Date.now();
      cutting.abort();
      expect(cutting.aborted).toBe(true);
      for (const cut of [waiting, reading]) {
        await expect(cut).rejects.toMatchObject({ code: 'egress_failed', message: expect.stringContaining('shutting down') as unknown });
      }
      await expect(cutting.request(`${base}/echo`)).rejects.toMatchObject({ code: 'egress_failed' });
      await cutting.close();
      expect(Date.now() - started).toBeLessThan(1_000);
    });

    it('keeps connections alive: sequential requests share one socket', async () => {
      const fresh = createEgressClient({ allowCidrs: ['127.0.0.1/32'] });
      const before = sockets;
      for (const path of ['/a', '/b', '/c']) {
        expect((await fresh.request(`${base}${path}`)).body.toString()).toBe('ok');
        // Let the finished response hand its socket back to the pool before the next request.
        await tick();
      }
      expect(sockets - before).toBe(1);
      await fresh.close();
    });

    it('connects a name to the resolved address, once per connection, keeping the Host header', async () => {
      const named = createEgressClient({ allowCidrs: ['127.0.0.1/32'], resolve: counting });
      resolutions.length = 0;
      const url = `http://api.test:${String(upstreamPort)}/named`;
      await named.request(url);
      await tick();
      await named.request(url);
      expect(seen.at(-1)).toMatchObject({ url: '/named', headers: { host: `api.test:${String(upstreamPort)}` }, localAddress: '127.0.0.1' });
      // Two requests, one pooled connection, one resolution.
      expect(resolutions).toEqual(['api.test']);
      await named.close();
    });

    it('pins the connection to the judged answer: a name that rebinds between resolutions cannot move it', async () => {
      // The first answer is allow-listed, every later one points at 127.0.0.2. A client that checked
      // the name and then let the socket resolve again would land on the 127.0.0.2 listener.
      let calls = 0;
      const flipping: Resolver = () => {
        calls++;
        return Promise.resolve([{ address: calls === 1 ? '127.0.0.1' : '127.0.0.2', family: 4 as const }]);
      };
      const pinned = createEgressClient({ allowCidrs: ['127.0.0.1/32'], resolve: flipping });
      try {
        const url = `http://flip.test:${String(upstreamPort)}/pinned`;
        expect((await pinned.request(url)).status).toBe(200);
        expect(calls).toBe(1);
        expect(seen.at(-1)).toMatchObject({ url: '/pinned', headers: { host: `flip.test:${String(upstreamPort)}` }, localAddress: '127.0.0.1' });
        // The name now resolves elsewhere: checking it again (as when a destination is saved) refuses it.
        await expectBlocked(pinned.checkUrl(url), 'address', 'checkUrl after rebinding');
        // So does a new connection, before connecting.
        const fresh = createEgressClient({ allowCidrs: ['127.0.0.1/32'], resolve: flipping });
        await expectBlocked(fresh.request(url), 'address', 'new connection after rebinding');
        await fresh.close();
        expect(rebound.connections()).toBe(0);
      } finally {
        await pinned.close();
      }
    });

    it('refuses when any one answer is refused, even with an allowed one first', async () => {
      const mixed: Resolver = () => Promise.resolve([{ address: '127.0.0.1', family: 4 }, { address: '127.0.0.2', family: 4 }]);
      const picky = createEgressClient({ allowCidrs: ['127.0.0.1/32'], resolve: mixed });
      const before = sockets;
      await expectBlocked(picky.request(`http://two.test:${String(upstreamPort)}/`), 'address', 'one bad answer');
      expect(sockets).toBe(before);
      expect(rebound.connections()).toBe(0);
      await picky.close();
    });

    it('returns redirects as they are by default, and refuses them with redirect: error', async () => {
      const manual = await client.request(`${base}/r?to=${encodeURIComponent(at('http://127.0.0.2:P/'))}`);
      expect(manual.status).toBe(302);
      expect(manual.headers['location']).toBe(at('http://127.0.0.2:P/'));
      expect(manual.body.toString()).toBe('moved');
      const before = client.metrics.blocked.redirect;
      await expectBlocked(client.request(`${base}/r?to=/echo`, { redirect: 'error' }), 'redirect', 'redirect: error');
      expect(client.metrics.blocked.redirect - before).toBe(1);
    });

    it('re-validates every redirect hop and refuses ones into private space', async () => {
      const targets: [string, BlockReason][] = [
        [at('http://127.0.0.2:P/'), 'address'], [at('http://[::1]:P/'), 'address'], [at('http://[::ffff:127.0.0.2]:P/'), 'address'],
        [at('http://2130706434:P/'), 'address'], [at('//[::1]:P/relative'), 'address'], [at('http://internal2.test:P/'), 'address'],
        [at('http://v6loop.test:P/'), 'address'], ['http://169.254.169.254/latest/meta-data/', 'address'], [at('https://127.0.0.2:P/'), 'address'],
        ['file:///etc/passwd', 'scheme'], [at('gopher://127.0.0.1:P/_x'), 'scheme'], ['http://[::1', 'scheme'],
      ];
      for (const [location, reason] of targets) {
        for (const status of [301, 302, 303, 307, 308]) {
          const hops = seen.length;
          await expectBlocked(client.request(`${base}/r?status=${String(status)}&to=${encodeURIComponent(location)}`, { redirect: 'follow' }), reason, `${String(status)} → ${location}`);
          expect(seen.length - hops).toBe(1);
        }
        // Two hops in: a permitted redirect first, then the bad one.
        const inner = `/r?to=${encodeURIComponent(location)}`;
        await expectBlocked(client.request(`${base}/r?to=${encodeURIComponent(inner)}`, { redirect: 'follow' }), reason, `2 hops → ${location}`);
      }
      expect(trap.connections()).toBe(0);
      expect(rebound.connections()).toBe(0);
    });

    it('control: with 127.0.0.0/8 allowed, the same redirect does reach the recorder', async () => {
      const open = createEgressClient({ allowCidrs: ['127.0.0.0/8'], resolve: counting });
      try {
        await expect(open.request(`${base}/r?to=${encodeURIComponent(at('http://127.0.0.2:P/'))}`, { redirect: 'follow' })).rejects.toMatchObject({ code: 'egress_failed' });
        expect(trap.seen).toContain('127.0.0.2');
      } finally {
        await open.close();
        trap.seen.length = 0;
      }
    });

    it('follows at most 3 redirects (or fewer when asked), never more', async () => {
      const ok = await client.request(`${base}/loop?stop=3`, { redirect: 'follow' });
      expect(ok.status).toBe(200);
      expect(ok.body.toString()).toBe('done after 3');
      expect(ok.url).toBe(`${base}/loop?hop=3&stop=3`);

      const hops = seen.length;
      const before = client.metrics.blocked.redirect_limit;
      await expectBlocked(client.request(`${base}/loop`, { redirect: 'follow' }), 'redirect_limit', 'endless loop');
      expect(seen.length - hops).toBe(4); // the request and 3 followed hops
      expect(client.metrics.blocked.redirect_limit - before).toBe(1);

      await expectBlocked(client.request(`${base}/loop?stop=2`, { redirect: 'follow', maxRedirects: 1 }), 'redirect_limit', 'maxRedirects 1');
      await expect(client.request(`${base}/loop?stop=4`, { redirect: 'follow', maxRedirects: 4 })).rejects.toThrow(RangeError);
    });

    it('drops credentials when a followed redirect changes origin, and keeps them within one', async () => {
      const headers = { authorization: 'Bearer secret-token', cookie: 'session=1', 'x-api-key': 'k', 'x-trace': 't' };
      const otherOrigin = `http://api.test:${String(upstreamPort)}/echo`;
      await client.request(`${base}/r?status=307&to=${encodeURIComponent(otherOrigin)}`, { method: 'POST', body: 'x', headers, credentialHeaders: ['X-Api-Key'], redirect: 'follow' });
      const last = seen.at(-1);
      expect(last).toMatchObject({ url: '/echo', method: 'POST', body: 'x', headers: { host: `api.test:${String(upstreamPort)}`, 'x-trace': 't' } });
      expect(last?.headers).not.toHaveProperty('authorization');
      expect(last?.headers).not.toHaveProperty('cookie');
      expect(last?.headers).not.toHaveProperty('x-api-key');

      await client.request(`${base}/r?status=307&to=/echo`, { method: 'POST', body: 'y', headers, credentialHeaders: ['x-api-key'], redirect: 'follow' });
      expect(seen.at(-1)).toMatchObject({ url: '/echo', method: 'POST', body: 'y', headers: { authorization: 'Bearer secret-token', cookie: 'session=1', 'x-api-key': 'k' } });
    });

    it('turns POST into GET without a body on 301/302/303, and keeps it on 307/308', async () => {
      for (const [status, method, body] of [[301, 'GET', ''], [302, 'GET', ''], [303, 'GET', ''], [307, 'POST', 'payload'], [308, 'POST', 'payload']] as const) {
        const response = await client.request(`${base}/r?status=${String(status)}&to=/echo`, { method: 'POST', body: 'payload', headers: { 'content-type': 'text/plain' }, redirect: 'follow' });
        expect(JSON.parse(response.body.toString()), String(status)).toEqual({ method, body });
        if (method === 'GET') expect(seen.at(-1)?.headers, String(status)).not.toHaveProperty('content-type');
      }
      // 303 turns a PUT into a GET as well; 302 leaves a PUT alone.
      expect(JSON.parse((await client.request(`${base}/r?status=303&to=/echo`, { method: 'PUT', body: 'p', redirect: 'follow' })).body.toString())).toEqual({ method: 'GET', body: '' });
      expect(JSON.parse((await client.request(`${base}/r?status=302&to=/echo`, { method: 'PUT', body: 'p', redirect: 'follow' })).body.toString())).toEqual({ method: 'PUT', body: 'p' });
    });

    it('refuses to replay a streamed request body on a 307', async () => {
      await expectBlocked(client.request(`${base}/r?status=307&to=/echo`, { method: 'POST', body: Readable.from([Buffer.from('once')]), redirect: 'follow' }), 'redirect', 'streamed body');
    });

    it('caps the response size, announced or not, buffered or streamed', async () => {
      const MiB = 1024 * 1024;
      for (const chunked of [false, true]) {
        const url = `${base}/bytes?n=${String(2 * MiB)}${chunked ? '&chunked=1' : ''}`;
        await expect(client.request(url, { maxResponseBytes: MiB }), url).rejects.toMatchObject({ code: 'egress_response_too_large', details: { limit: MiB } });
        await expect(client.request(url, { maxResponseBytes: 2 * MiB }).then((r) => r.body.length), url).resolves.toBe(2 * MiB);
      }
      // The boundary: exactly the cap passes, one byte more does not.
      for (const suffix of ['', '&chunked=1']) {
        expect((await client.request(`${base}/bytes?n=1000${suffix}`, { maxResponseBytes: 1000 })).body.length).toBe(1000);
        await expect(client.request(`${base}/bytes?n=1001${suffix}`, { maxResponseBytes: 1000 })).rejects.toMatchObject({ code: 'egress_response_too_large' });
      }
      // Streaming: an announced oversize fails at once; an unannounced one fails while reading.
      await expect(client.stream(`${base}/bytes?n=${String(2 * MiB)}`, { maxResponseBytes: MiB })).rejects.toMatchObject({ code: 'egress_response_too_large' });
      const streamed = await client.stream(`${base}/bytes?n=${String(2 * MiB)}&chunked=1`, { maxResponseBytes: MiB });
      expect(streamed.status).toBe(200);
      const read = { bytes: 0 };
      await expect(drain(streamed.body, read)).rejects.toMatchObject({ code: 'egress_response_too_large' });
      expect(read.bytes).toBeLessThanOrEqual(MiB);
      expect(read.bytes).toBeGreaterThan(0);
      // The client-wide default applies when a request sets none.
      const small = createEgressClient({ allowCidrs: ['127.0.0.1/32'], maxResponseBytes: 100 });
      await expect(small.request(`${base}/bytes?n=101&chunked=1`)).rejects.toMatchObject({ code: 'egress_response_too_large', details: { limit: 100 } });
      await small.close();
    });

    // undici runs these two timeouts on a coarse timer (about a second of resolution), so the
    // slow server waits 5 s: the 300 ms timeout wins well inside each test's 2 s budget.
    it('times out waiting for response headers', async () => {
      await expect(client.request(`${base}/slow-headers`)).rejects.toMatchObject({ code: 'egress_timeout', message: 'the server did not send response headers in time' });
    }, 2000);

    it('times out on a body that goes silent', async () => {
      await expect(client.request(`${base}/slow-body`)).rejects.toMatchObject({ code: 'egress_timeout', message: 'the server stopped sending the response body' });
    }, 2000);

    it('times out on a streamed body that goes silent', async () => {
      const streamed = await client.stream(`${base}/slow-body`);
      await expect(drain(streamed.body)).rejects.toMatchObject({ code: 'egress_timeout', message: 'the server stopped sending the response body' });
    }, 2000);

    it('enforces the overall deadline on a response that never goes silent, and honours the caller\'s signal', async () => {
      const patient = createEgressClient({ allowCidrs: ['127.0.0.1/32'] });
      try {
        const started = Date.now();
        await expect(patient.request(`${base}/trickle`, { timeoutMs: 300 })).rejects.toMatchObject({ code: 'egress_timeout', message: 'the request took longer than 300 ms' });
        await expect(patient.request(`${base}/trickle`, { signal: AbortSignal.timeout(200) })).rejects.toMatchObject({ code: 'egress_timeout' });
        const controller = new AbortController();
        setTimeout(() => {
          controller.abort();
        }, 100);
        await expect(patient.request(`${base}/trickle`, { signal: controller.signal })).rejects.toMatchObject({ code: 'egress_failed', message: 'the request was aborted' });
        expect(Date.now() - started).toBeLessThan(1200);
        expect((await patient.request(`${base}/trickle`)).body.toString()).toBe('.'.repeat(30));
      } finally {
        await patient.close();
      }
    });

    it('releases the upstream connection at once when a streaming caller stops reading', async () => {
      const patient = createEgressClient({ allowCidrs: ['127.0.0.1/32'] });
      const closed = new Promise<number>((resolve) => {
        upstream.once('request', (_req: IncomingMessage, res: ServerResponse) => {
          res.once('close', () => {
            resolve(Date.now());
          });
        });
      });
      const response = await patient.stream(`${base}/trickle`);
      const iterator = response.body[Symbol.asyncIterator]();
      await iterator.next();
      const stopped = Date.now();
      response.body.destroy();
      expect((await closed) - stopped).toBeLessThan(500);
      await patient.close();
    });

    it('reports a refused connection as egress_failed', async () => {
      const gone = createTcpServer();
      await listenOn(gone, 0, '127.0.0.1');
      const closedPort = portOf(gone);
      await closeServer(gone);
      await expect(client.request(`http://127.0.0.1:${String(closedPort)}/`)).rejects.toMatchObject({ code: 'egress_failed' });
      expect(() => createEgressClient({ maxResponseBytes: 0 })).toThrow(RangeError);
    });
  });
});
