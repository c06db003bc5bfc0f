/**
 * A local webhook receiver for delivery tests. Each path answers as told (`/ok` 200, `/fail`
 * 500, `/gone` 410, `/slow` after a delay, `/reset` destroys the socket, `/redirect` 302 to
 * `/ok`, `/huge` 5 MB, `/dribble` 200 at once then one byte every 100 ms for 5 s, `/busy` 503 with
 * Retry-After: 120); every request is recorded with
 * its headers and raw body.
 */
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

export async function startReceiver(): Promise<{ url: string; received: Received[]; close(): Promise<void> }> {
  const received: Received[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      received.push({ path, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      const kind = path.split('/').at(-1);
      switch (kind) {
        case 'fail':
          res.writeHead(500).end('receiver exploded');
          return;
        case 'gone':
          res.writeHead(410).end('gone');
          return;
        case 'busy':
          res.writeHead(503, { 'retry-after': '120' }).end();
          return;
        case 'slow':
          setTimeout(() => res.writeHead(200).end('late'), 2000);
          return;
        case 'reset':
          req.socket.destroy();
          return;
        case 'redirect':
          res.writeHead(302, { location: '/ok' }).end();
          return;
        case 'dribble': {
          res.writeHead(200, { 'content-type': 'text/plain' });
          let sent = 0;
          const drip = setInterval(() => {
            if (res.destroyed || ++sent > 50) {
              clearInterval(drip);
              res.end();
            } else res.write('.');
          }, 100);
          return;
        }
        case 'huge':
          res.writeHead(200);
          res.end(Buffer.alloc(5 * 1024 * 1024, 120));
          return;
        default:
          res.writeHead(200, { 'content-type': 'text/plain' }).end('thanks');
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${String((server.address() as AddressInfo).port)}`,
    received,
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}
