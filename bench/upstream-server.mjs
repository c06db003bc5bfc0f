// The "third-party API" for the relay benchmark: a bare node:http server in its own process,
// answering every request with a small JSON body.
import { createServer } from 'node:http';

const body = JSON.stringify({ id: 'cus_123', object: 'customer', email: 'someone@example.com', created: 1700000000 });
const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
});
server.keepAliveTimeout = 30_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`listening on http://127.0.0.1:${server.address().port}\n`);
});
process.once('SIGTERM', () => server.close());
