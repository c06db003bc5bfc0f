/**
 * The `bulkhead` command as an operator runs it: separate processes against an embedded data
 * folder and against PostgreSQL. Run from source through tsx so the test never sees a stale build.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, createPrivateKey, createPublicKey, randomBytes, sign } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

/** Every migration this build ships, in order (what a fresh database must end up with). */
const migrationNames = readdirSync(new URL('../src/migrations/', import.meta.url)).filter((f) => f.endsWith('.sql')).sort().map((f) => f.replace(/\.sql$/, ''));

const root = path.resolve(import.meta.dirname, '..');

function run(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', ...args], { cwd: root, env: { ...process.env, LOG_LEVEL: 'warn', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => {
      resolve({ code, stdout, stderr });
    });
  });
}

async function json<T>(args: string[], env: Record<string, string>): Promise<T> {
  const result = await run(args, env);
  if (result.code !== 0) throw new Error(`bulkhead ${args.join(' ')} exited ${String(result.code)}: ${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}

const freePort = () =>
  new Promise<number>((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        resolve(typeof address === 'object' && address ? address.port : 0);
      });
    });
  });

async function waitFor(url: string, deadlineMs: number): Promise<Response> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    try {
      const res = await fetch(url);
      if (res.ok) return res;
    } catch {
      // not listening yet
    }
    if (Date.now() > until) throw new Error(`${url} did not answer within ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** tenant → workspace → key, printing each as JSON; returns the ids. */
async function provision(env: Record<string, string>) {
  const tenant = await json<{ id: string }>(['tenant', 'create', '--name', 'Acme', '--slug', `acme-${randomBytes(3).toString('hex')}`], env);
  const workspace = await json<{ id: string; environment: string }>(['workspace', 'create', '--tenant', tenant.id, '--name', 'prod', '--environment', 'production'], env);
  const key = await json<{ id: string; key: string }>(['api-key', 'create', '--workspace', workspace.id, '--name', 'backend', '--scopes', 'keys:manage,audit:read'], env);
  return { tenant, workspace, key };
}

describe('the CLI on the embedded database', () => {
  let dir: string;
  let env: Record<string, string>;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'bk-cli-'));
    env = { BULKHEAD_DATA_DIR: dir };
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('migrates, provisions a tenant, workspace and key, verifies the audit chains, and serves', async () => {
    expect(await json<{ current: number }>(['migrate'], env)).toMatchObject({ current: migrationNames.length });
    const { workspace, key } = await provision(env);
    expect(key.key).toMatch(/^bk_live_/);
    const verify = await run(['audit', 'verify'], env);
    expect(verify.code).toBe(0);
    const reports = JSON.parse(verify.stdout) as { chain: string; valid: boolean; checked: number }[];
    expect(reports.map((r) => [r.chain, r.valid])).toEqual([['platform', true], [workspace.id, true]]);

    const port = await freePort();
    const started = Date.now();
    const server: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', 'serve'], { cwd: root, env: { ...process.env, ...env, PORT: String(port), LOG_LEVEL: 'warn' }, stdio: 'pipe' });
    try {
      await waitFor(`http://127.0.0.1:${port}/healthz`, 15_000);
      await waitFor(`http://127.0.0.1:${port}/readyz`, 30_000);
      const res = await fetch(`http://127.0.0.1:${port}/v1/api-keys`, { headers: { authorization: `Bearer ${key.key}` } });
      expect(res.status).toBe(200);
      expect(Date.now() - started).toBeLessThan(60_000);
    } finally {
      server.kill('SIGTERM');
    }
  }, 120_000);

  it('rotates workspace and root keys, and ratchets, with the data staying readable', async () => {
    const { workspace } = await provision(env);
    const rotated = await json<{ current: number; min: number; resealed: number }>(['keys', 'rotate-workspace', '--workspace', workspace.id], env);
    expect(rotated).toMatchObject({ current: 2, min: 1 });
    expect(await json(['keys', 'status', '--workspace', workspace.id], env)).toMatchObject({ current: 2, sealedBelowCurrent: { 'connections.credentials': 0 } });
    expect(await json(['keys', 'ratchet', '--workspace', workspace.id, '--min', '2'], env)).toEqual({ current: 2, min: 2 });
    const root = await json<{ rootVersion: number; rewrapped: number; generatedVersion: number }>(['keys', 'rotate-root'], env);
    expect(root.generatedVersion).toBe(2);
    expect(root.rootVersion).toBe(2);
    expect(root.rewrapped).toBeGreaterThanOrEqual(3);
    const secrets = JSON.parse(await readFile(path.join(dir, 'secrets.json'), 'utf8')) as { rootKeys: string };
    expect(secrets.rootKeys.split(',').map((k) => k.split(':')[0])).toEqual(['1', '2']);
    expect((await run(['audit', 'verify'], env)).code).toBe(0);
    const bad = await run(['keys', 'ratchet', '--workspace', workspace.id, '--min', 'x'], env);
    expect(bad.code).toBe(2);
  }, 120_000);

  it('refuses bad configuration, listing every problem', async () => {
    const result = await run(['migrate'], { ...env, PORT: 'abc', BULKHEAD_ENV: 'production' });
    expect(result.code).toBe(2);
    for (const name of ['PORT', 'DATABASE_URL', 'BULKHEAD_ADMIN_TOKEN', 'BULKHEAD_API_KEY_PEPPER', 'BULKHEAD_ROOT_KEYS']) expect(result.stderr).toContain(name);
  });
});

const postgres = inject('postgres');

describe.skipIf(postgres === null)('the CLI on PostgreSQL', () => {
  const suffix = randomBytes(4).toString('hex');
  const database = `bk_cli_${suffix}`;
  const appRole = `bk_cli_app_${suffix}`;
  let env: Record<string, string>;
  const admin = async (sql: string) => {
    const client = new pg.Client({ connectionString: postgres?.adminUrl });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };

  beforeAll(async () => {
    await admin(`CREATE DATABASE ${database}`);
    const url = new URL(postgres?.adminUrl ?? '');
    url.pathname = `/${database}`;
    env = { DATABASE_URL: url.toString(), BULKHEAD_DB_APP_ROLE: appRole, BULKHEAD_DATA_DIR: await mkdtemp(path.join(tmpdir(), 'bk-cli-pg-')) };
  });
  afterAll(async () => {
    await admin(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await admin(`DROP ROLE IF EXISTS ${appRole}`);
    await rm(env['BULKHEAD_DATA_DIR'] ?? '', { recursive: true, force: true });
  });

  it('audit verify exits 1 and names the entry after a row is tampered with', async () => {
    expect(await json<{ applied: string[] }>(['migrate'], env)).toMatchObject({ applied: migrationNames });
    const { workspace } = await provision(env);
    expect((await run(['audit', 'verify', '--workspace', workspace.id], env)).code).toBe(0);

    const client = new pg.Client({ connectionString: env['DATABASE_URL'] });
    await client.connect();
    await client.query("UPDATE audit_log SET actor_id = 'someone-else' WHERE workspace_id = $1 AND seq = 1", [workspace.id]);
    const { rows } = await client.query<{ id: string }>('SELECT id FROM audit_log WHERE workspace_id = $1 AND seq = 1', [workspace.id]);
    await client.end();

    const tampered = await run(['audit', 'verify'], env);
    expect(tampered.code).toBe(1);
    const reports = JSON.parse(tampered.stdout) as { chain: string; valid: boolean; firstInvalid: { seq: number; id: string; reason: string } | null }[];
    expect(reports.find((r) => r.chain === workspace.id)?.firstInvalid).toEqual({ seq: 1, id: rows[0]?.id, reason: 'altered' });
    expect(reports.find((r) => r.chain === 'platform')?.valid).toBe(true);
  }, 120_000);

  it('audit verify --checkpoint FILE finds a rolled-back tail the plain verify misses; a forged checkpoint exits 2', async () => {
    await json(['migrate'], env);
    const { workspace } = await provision(env);
    for (const name of ['second', 'third']) await json(['api-key', 'create', '--workspace', workspace.id, '--name', name, '--scopes', 'events:read'], env);
    interface Report { valid: boolean; firstInvalid: { seq: number; reason: string } | null; head: { seq: number; hash: string }; checkpoint?: { matched: boolean } }
    const verify = async (args: string[]) => {
      const result = await run(['audit', 'verify', ...args], env);
      return { code: result.code, stderr: result.stderr, report: result.code === 2 ? undefined : (JSON.parse(result.stdout) as Report[])[0] };
    };
    const { head } = (await verify(['--workspace', workspace.id])).report ?? { head: { seq: 0, hash: '' } };
    expect(head.seq).toBeGreaterThanOrEqual(3);

    // Signed as docs/AUDIT.md describes, with the key the CLI generated into the data folder: not through Bulkhead's code.
    const stored = JSON.parse(await readFile(path.join(env['BULKHEAD_DATA_DIR'] ?? '', 'secrets.json'), 'utf8')) as { auditSigningKeys: string };
    const seed = Buffer.from(stored.auditSigningKeys.split(':')[1] ?? '', 'base64');
    const privateKey = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]), format: 'der', type: 'pkcs8' });
    const rawPublic = Buffer.from(createPublicKey(privateKey).export({ format: 'jwk' }).x ?? '', 'base64url');
    const unsigned = { chain: workspace.id, seq: head.seq, hash: head.hash, at: new Date().toISOString(), keyId: createHash('sha256').update(rawPublic).digest('hex').slice(0, 16) };
    const message = `bulkhead.audit.checkpoint.v1\n${unsigned.chain}\n${String(unsigned.seq)}\n${unsigned.hash}\n${unsigned.at}\n${unsigned.keyId}\n`;
    const checkpoint = { ...unsigned, signature: sign(null, Buffer.from(message), privateKey).toString('base64') };
    const file = path.join(env['BULKHEAD_DATA_DIR'] ?? '', 'checkpoint.json');
    await writeFile(file, `${JSON.stringify(checkpoint, null, 2)}\n`);
    expect(await verify(['--checkpoint', file])).toMatchObject({ code: 0, report: { valid: true, checkpoint: { matched: true } } });

    // Roll the tail back, head and all, as a restored backup would.
    const client = new pg.Client({ connectionString: env['DATABASE_URL'] });
    await client.connect();
    await client.query('DELETE FROM audit_log WHERE workspace_id = $1 AND seq > 1', [workspace.id]);
    await client.query('UPDATE audit_chain_heads SET seq = 1, hash = (SELECT hash FROM audit_log WHERE workspace_id = $1 AND seq = 1) WHERE workspace_id = $1', [workspace.id]);
    await client.end();
    expect(await verify(['--workspace', workspace.id])).toMatchObject({ code: 0, report: { valid: true } });
    expect(await verify(['--checkpoint', file])).toMatchObject({ code: 1, report: { valid: false, firstInvalid: { seq: 2, reason: 'checkpoint_mismatch' } } });

    await writeFile(file, JSON.stringify({ ...checkpoint, seq: 1 }));
    const forged = await verify(['--checkpoint', file]);
    expect(forged.code).toBe(2);
    expect(forged.stderr).toContain('checkpoint_invalid');
  }, 120_000);
});
