/**
 * A local stand-in for a third-party API (the one kind of fake the suite allows: a provider we
 * cannot run). It records every request it receives and answers by route:
 *   /echo-chunked   the same, streamed in 7-byte chunks without a length
 *   /echo           200 with the request's method, path, query and headers (a provider that
 *                   reflects the request, which is what scrubbing must defend against)
 *   /flaky/{n}      503 with Retry-After: 0 for the first n calls per path, then 200
 *   /stream/{bytes} 200 with that many bytes
 *   anything else   200 {"ok":true}
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
  close(): Promise<void>;
}

export async function startUpstream(): Promise<Upstream> {
  const requests: RecordedRequest[] = [];
  const flaky = new Map<string, number>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
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
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}
