// The baselines: a bare Fastify server on the same machine answering the same shape of JSON as
// the Bulkhead routes under test, with no auth, no tenant transaction, no RLS and no audit.
//   GET  /bare/:id     constant JSON, no database (the baseline)
//   POST /bare         echoes the body, no database
//   GET  /bare-db/:id  one primary-key SELECT on the same engine and driver Bulkhead uses
//                      (BARE_DATABASE_URL → pg pool of 10; otherwise PGlite in BARE_DATA_DIR)
import Fastify from 'fastify';

const key = {
  id: 'key_01jbenchbenchbenchbenchbench',
  workspaceId: 'ws_01jbenchbenchbenchbenchbench',
  name: 'bench',
  prefix: 'bk_live_abcd',
  scopes: ['keys:manage'],
  allowedCidrs: [],
  expiresAt: null,
  lastUsedAt: null,
  createdAt: new Date().toISOString(),
};

async function openDatabase() {
  if (process.env.BARE_DATABASE_URL) {
    const { default: pg } = await import('pg');
    const pool = new pg.Pool({ connectionString: process.env.BARE_DATABASE_URL, max: 10 });
    return { query: (text, params) => pool.query(text, params), close: () => pool.end() };
  }
  const { PGlite } = await import('@electric-sql/pglite');
  const lite = await PGlite.create({ dataDir: process.env.BARE_DATA_DIR });
  return { query: (text, params) => lite.query(text, params), close: () => lite.close() };
}

// Listen first, like Bulkhead does, so the first-response time is comparable.
let db;
const ready = openDatabase().then(async (opened) => {
  db = opened;
  await db.query(`CREATE TABLE IF NOT EXISTS bench_keys (
  id text PRIMARY KEY, workspace_id text NOT NULL, name text NOT NULL, prefix text NOT NULL, scopes text[] NOT NULL,
  allowed_cidrs text[] NOT NULL, expires_at timestamptz, last_used_at timestamptz, created_at timestamptz NOT NULL DEFAULT now())`);
});

const app = Fastify({ logger: false });
app.get('/healthz', async () => ({ status: 'ok' }));
app.get('/bare/:id', async (request) => ({ ...key, id: request.params.id }));
app.post('/bare', async (request, reply) => reply.code(201).send({ ...key, ...request.body }));
app.get('/bare-db/:id', async (request, reply) => {
  // `db` is set once `ready` settled; the bench seeds (PUT) only after that.
  const { rows } = await db.query(
    'SELECT id, workspace_id, name, prefix, scopes, allowed_cidrs, expires_at, last_used_at, created_at FROM bench_keys WHERE id = $1',
    [request.params.id],
  );
  if (rows.length === 0) return reply.code(404).send({ code: 'not_found' });
  const row = rows[0];
  return { id: row.id, workspaceId: row.workspace_id, name: row.name, prefix: row.prefix, scopes: row.scopes, allowedCidrs: row.allowed_cidrs, expiresAt: row.expires_at, lastUsedAt: row.last_used_at, createdAt: row.created_at };
});
app.put('/bare-db/:id', async (request) => {
  await ready;
  await db.query(
    "INSERT INTO bench_keys (id, workspace_id, name, prefix, scopes, allowed_cidrs) VALUES ($1, $2, 'bench', 'bk_live_abcd', '{keys:manage}', '{}') ON CONFLICT (id) DO NOTHING",
    [request.params.id, key.workspaceId],
  );
  return { ok: true };
});

const address = await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`listening on ${address}\n`);
process.once('SIGTERM', () => {
  void app.close().then(() => ready).then(() => db.close());
});
