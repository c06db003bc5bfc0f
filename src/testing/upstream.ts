/**
 * A local stand-in for a third-party API (the one kind of fake the suite allows: a provider we
 * cannot run). It records every request it receives and answers by route:
 *   /echo-chunked   the same, streamed in 7-byte chunks without a length
 *   /echo           200 with the request's method, path, query and headers (a provider that
 *                   reflects the request, which is what scrubbing must defend against)
 *   /flaky/{n}      503 with Retry-After: 0 for the first n calls per path, then 200
 *   /stream/{bytes} 200 with that many bytes
 *   /slow/{ms}      200 {"ok":true} after that many milliseconds
 *   /silent         never answers (a provider that hangs)
 *   /endless        200, then a chunk every 50 ms for as long as the client reads
 *   anything else   200 {"ok":true}
 * It also counts the connections it accepted and every request-body byte it received, completed
 * request or not (what a refused upload must never have sent).
 */
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

export interface Upstream {
  readonly url: string;
  readonly requests: RecordedRequest[];
  readonly counts: { connections: number; bodyBytes: number };
  close(): Promise<void>;
}

export async function startUpstream(): Promise<Upstream> {
  const requests: RecordedRequest[] = [];
  const flaky = new Map<string, number>();
  const counts = { connections: 0, bodyBytes: 0 };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      counts.bodyBytes += c.length;
      chunks.push(c);
    });
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const url = req.url ?? '/';
      requests.push({ method: req.method ?? 'GET', url, headers: req.headers, body });
      const path = url.split('?')[0] ?? '/';
      if (path.endsWith('/echo-chunked')) {
        // No content-length: the relay streams this one, so scrubbing must work across chunks.
        const text = JSON.stringify({ headers: req.headers });
        res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
        for (let i = 0; i < text.length; i += 7) res.write(text.slice(i, i + 7));
        res.end();
        return;
      }
      if (path.endsWith('/echo')) {
        const auth = req.headers.authorization ?? '';
        res.writeHead(200, { 'content-type': 'application/json', 'x-echo-authorization': auth, 'set-cookie': 'session=abc', connection: 'keep-alive' });
        res.end(JSON.stringify({ method: req.method, url, headers: req.headers, body }));
        return;
      }
      const slowMatch = /\/slow\/(\d+)$/.exec(path);
      if (slowMatch) {
        setTimeout(() => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ ok: true, method: req.method, path }));
        }, Number(slowMatch[1]));
        return;
      }
      if (path.endsWith('/silent')) return;
      if (path.endsWith('/endless')) {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        const timer = setInterval(() => res.write(Buffer.alloc(1024, 98)), 50);
        res.once('close', () => { clearInterval(timer); });
        return;
      }
      const flakyMatch = /\/flaky\/(\d+)$/.exec(path);
      if (flakyMatch) {
        const seen = (flaky.get(path) ?? 0) + 1;
        flaky.set(path, seen);
        if (seen <= Number(flakyMatch[1])) {
          res.writeHead(503, { 'retry-after': '0' });
          res.end('busy');
          return;
        }
      }
      const streamMatch = /\/stream\/(\d+)$/.exec(path);
      if (streamMatch) {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        res.end(Buffer.alloc(Number(streamMatch[1]), 97));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: true, method: req.method, path }));
    });
  });
  server.on('connection', () => {
    counts.connections++;
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    counts,
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}
