// A second baseline for the relay benchmark: the least a proxy can do in the same stack — a bare
// Fastify route forwarding to the upstream with undici (pooled) and streaming the answer back.
// No auth, no credential, no policy, no scrubbing, no log.
import Fastify from 'fastify';
import { Agent, request } from 'undici';

const upstream = process.env.BARE_PROXY_UPSTREAM;
const dispatcher = new Agent({ keepAliveTimeout: 30_000 });
const app = Fastify({ logger: false });
app.get('/*', async (req, reply) => {
  const response = await request(`${upstream}/${req.params['*']}`, { dispatcher, headers: { authorization: 'Bearer sk_bare' } });
  return reply.status(response.statusCode).header('content-type', response.headers['content-type']).send(response.body);
});
const address = await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`listening on ${address}\n`);
process.once('SIGTERM', () => void app.close());
