/**
 * The `bulkhead` command as an operator runs it: separate processes against an embedded data
 * folder and against PostgreSQL. Run from source through tsx so the test never sees a stale build.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, createPrivateKey, createPublicKey, randomBytes, sign } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type BulkheadProcess, freePort, processGroup } from '../src/testing/processes.js';

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

/** tenant → workspace → key, printing each as JSON; returns the ids. `via`: [] through the running server, ['--offline'] on the stopped database. */
async function provision(env: Record<string, string>, via: string[]) {
  const tenant = await json<{ id: string }>(['tenant', 'create', '--name', 'Acme', '--slug', `acme-${randomBytes(3).toString('hex')}`, ...via], env);
  const workspace = await json<{ id: string; environment: string }>(['workspace', 'create', '--tenant', tenant.id, '--name', 'prod', '--environment', 'production', ...via], env);
  const key = await json<{ id: string; key: string }>(['api-key', 'create', '--workspace', workspace.id, '--name', 'backend', '--scopes', 'keys:manage,audit:read', ...via], env);
  return { tenant, workspace, key };
}

describe('the CLI on the stopped embedded database (--offline)', () => {
  let dir: string;
  let env: Record<string, string>;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'bk-cli-'));
    env = { BULKHEAD_DATA_DIR: dir };
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('migrates, provisions a tenant, workspace and key, verifies the audit chains, and serves', async () => {
    expect(await json<{ current: number }>(['migrate'], env)).toMatchObject({ current: migrationNames.length });
    const { workspace, key } = await provision(env, ['--offline']);
    expect(key.key).toMatch(/^bk_live_/);
    const verify = await run(['audit', 'verify', '--offline'], env);
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
      const exited = new Promise((resolve) => server.once('exit', resolve));
      server.kill('SIGTERM');
      await exited; // the next test opens the folder itself: the server must have let go of it
    }
  }, 120_000);

  it('rotates workspace and root keys, and ratchets, with the data staying readable', async () => {
    const { workspace } = await provision(env, ['--offline']);
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
    expect((await run(['audit', 'verify', '--offline'], env)).code).toBe(0);
    const bad = await run(['keys', 'ratchet', '--workspace', workspace.id, '--min', 'x'], env);
    expect(bad.code).toBe(2);
  }, 120_000);

  it('refuses bad configuration, listing every problem', async () => {
    const result = await run(['migrate'], { ...env, PORT: 'abc', BULKHEAD_ENV: 'production' });
    expect(result.code).toBe(2);
    for (const name of ['PORT', 'DATABASE_URL', 'BULKHEAD_ADMIN_TOKEN', 'BULKHEAD_API_KEY_PEPPER', 'BULKHEAD_ROOT_KEYS']) expect(result.stderr).toContain(name);
  });
});

describe('the CLI beside a running server on the embedded database', () => {
  let dir: string;
  let env: Record<string, string>;
  let base: string;
  const group = processGroup();
  const startServer = async () => {
    const server = group.spawn(['serve'], env);
    await server.waitForOutput(/listening on/, 60_000);
    await waitFor(`${base}/readyz`, 60_000);
    return server;
  };
  const stopServer = async (server: BulkheadProcess) => {
    server.kill('SIGTERM');
    expect(await server.exited).toBe(0);
  };
  const admin = async () => `Bearer ${(JSON.parse(await readFile(path.join(dir, 'secrets.json'), 'utf8')) as { adminToken: string }).adminToken}`;
  const tenantSlugs = async () => {
    const res = await fetch(`${base}/v1/tenants?limit=200`, { headers: { authorization: await admin() } });
    expect(res.status).toBe(200);
    return ((await res.json()) as { data: { slug: string }[] }).data.map((t) => t.slug).sort();
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'bk-cli-live-'));
    const port = await freePort();
    base = `http://127.0.0.1:${String(port)}`;
    // PORT alone: the CLI finds the local server by it, and its admin token in the data folder.
    env = { BULKHEAD_DATA_DIR: dir, PORT: String(port), LOG_LEVEL: 'warn' };
  });
  afterAll(async () => {
    await group.killAll();
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps every row: a tenant made by the CLI is seen by the server at once, and CLI- and API-made rows survive a restart with the audit chains valid', async () => {
    const server = await startServer();
    const cli = await json<{ id: string; slug: string }>(['tenant', 'create', '--name', 'Cli', '--slug', 'cli'], env);
    expect(await tenantSlugs()).toEqual(['cli']);
    const api = await fetch(`${base}/v1/tenants`, { method: 'POST', headers: { authorization: await admin(), 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Api', slug: 'api' }) });
    expect(api.status).toBe(201);
    const { workspace, key } = await provision(env, []);
    const keyRes = await fetch(`${base}/v1/api-keys`, { headers: { authorization: `Bearer ${key.key}` } });
    expect(keyRes.status).toBe(200);

    await stopServer(server);
    const restarted = await startServer();
    const slugs = await tenantSlugs();
    expect(slugs).toContain('cli');
    expect(slugs).toContain('api');
    expect(slugs).toHaveLength(3);
    const workspaces = await fetch(`${base}/v1/tenants/${cli.id}/workspaces`, { headers: { authorization: await admin() } });
    expect(workspaces.status).toBe(200);
    const verify = await run(['audit', 'verify'], env);
    expect(verify.code).toBe(0);
    const reports = JSON.parse(verify.stdout) as { chain: string; valid: boolean; checked: number }[];
    // platform: three tenants and one workspace created, all through the server; the workspace: its key.
    expect(reports.map((r) => [r.chain, r.valid])).toEqual([['platform', true], [workspace.id, true]]);
    expect(reports[0]?.checked).toBeGreaterThanOrEqual(4);
    expect(reports[1]?.checked).toBeGreaterThanOrEqual(1);
    // A signed checkpoint of the platform chain, checked through the server by `audit verify --checkpoint`.
    const signed = await fetch(`${base}/v1/platform/audit-log/checkpoint`, { headers: { authorization: await admin() } });
    expect(signed.status).toBe(200);
    const checkpointFile = path.join(dir, 'platform-checkpoint.json');
    await writeFile(checkpointFile, await signed.text());
    const anchored = await run(['audit', 'verify', '--checkpoint', checkpointFile], env);
    expect(anchored.code, anchored.stderr).toBe(0);
    expect(JSON.parse(anchored.stdout)).toMatchObject([{ chain: 'platform', valid: true, checkpoint: { matched: true } }]);
    await writeFile(checkpointFile, (await readFile(checkpointFile, 'utf8')).replace(/"seq":\d+/, '"seq":1'));
    const forged = await run(['audit', 'verify', '--checkpoint', checkpointFile], env);
    expect(forged.code).toBe(2);
    expect(forged.stderr).toContain('checkpoint_invalid');
    await stopServer(restarted);

    // And the stopped database agrees, verified by opening it directly.
    const offline = await run(['audit', 'verify', '--offline'], env);
    expect(offline.code).toBe(0);
    expect((JSON.parse(offline.stdout) as { chain: string; checked: number }[]).map((r) => [r.chain, r.checked])).toEqual(reports.map((r) => [r.chain, r.checked]));
  }, 240_000);

  it('refuses a second server, the offline commands and the worker while a server holds the folder, naming it; a killed server\'s lock is taken over', async () => {
    const server = await startServer();
    const holder = new RegExp(`data_folder_locked: the data folder .* is in use by pid ${String(server.pid)} on .*, since .*, command: .*serve`);
    for (const args of [['migrate'], ['keys', 'rotate-root'], ['keys', 'status', '--workspace', 'ws_x'], ['audit', 'verify', '--offline'], ['tenant', 'create', '--name', 'X', '--slug', 'x', '--offline']]) {
      const refused = await run(args, env);
      expect(refused.code, args.join(' ')).toBe(2);
      expect(refused.stderr, args.join(' ')).toMatch(holder);
      expect(refused.stderr, args.join(' ')).toContain('runs only while no server does');
    }
    const secrets = JSON.parse(await readFile(path.join(dir, 'secrets.json'), 'utf8')) as { rootKeys: string };
    expect(secrets.rootKeys.split(',')).toHaveLength(1); // rotate-root generated no root key while refused

    const second = group.spawn(['serve', '--role', 'worker'], { ...env, PORT: String(await freePort()) });
    expect(await second.exited).toBe(2);
    expect(second.output()).toMatch(holder);
    expect(server.alive).toBe(true);

    server.kill('SIGKILL');
    await server.exited;
    const lock = JSON.parse(await readFile(path.join(dir, 'bulkhead.lock'), 'utf8')) as { pid: number };
    expect(lock.pid).toBe(server.pid); // left behind by the kill
    const next = group.spawn(['serve'], { ...env, LOG_LEVEL: 'info' });
    await next.waitForOutput(new RegExp(`took over the data folder lock of pid ${String(server.pid)}.*is not running`), 60_000);
    await waitFor(`${base}/readyz`, 60_000);
    expect(await tenantSlugs()).toContain('cli');
    await stopServer(next);
    await expect(readFile(path.join(dir, 'bulkhead.lock'))).rejects.toMatchObject({ code: 'ENOENT' });
  }, 240_000);

  it('prints the server\'s problems as code: detail and exits non-zero; says so when no server runs', async () => {
    const server = await startServer();
    const taken = await run(['tenant', 'create', '--name', 'Again', '--slug', 'cli'], env);
    expect([taken.code, taken.stderr.trim()]).toEqual([2, 'slug_taken: a tenant with slug "cli" already exists']);
    const badToken = await run(['tenant', 'create', '--name', 'T', '--slug', 'tok', '--token', `bk_admin_${'x'.repeat(40)}`], env);
    expect(badToken.code).toBe(2);
    expect(badToken.stderr).toMatch(/^admin_token_invalid: /);
    const viaEnvUrl = await run(['audit', 'verify', '--workspace', 'ws_missing'], { ...env, PORT: '1', BULKHEAD_URL: base });
    expect(viaEnvUrl.code).toBe(2);
    expect(viaEnvUrl.stderr).toMatch(/^not_found: /);
    await stopServer(server);

    const down = await run(['tenant', 'create', '--name', 'Down', '--slug', 'down'], env);
    expect(down.code).toBe(2);
    expect(down.stderr).toContain(`server_unreachable: no Bulkhead server at ${base}`);
    expect(down.stderr).toContain('start it with npm start, or use --offline where offered');
    const noToken = await run(['tenant', 'create', '--name', 'T', '--slug', 't'], { ...env, BULKHEAD_DATA_DIR: path.join(dir, 'elsewhere') });
    expect(noToken.stderr).toMatch(/^admin_token_missing: /);
    expect(noToken.code).toBe(2);
  }, 240_000);
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
    const { workspace } = await provision(env, ['--offline']);
    expect((await run(['audit', 'verify', '--workspace', workspace.id, '--offline'], env)).code).toBe(0);

    const client = new pg.Client({ connectionString: env['DATABASE_URL'] });
    await client.connect();
    await client.query("UPDATE audit_log SET actor_id = 'someone-else' WHERE workspace_id = $1 AND seq = 1", [workspace.id]);
    const { rows } = await client.query<{ id: string }>('SELECT id FROM audit_log WHERE workspace_id = $1 AND seq = 1', [workspace.id]);
    await client.end();

    const tampered = await run(['audit', 'verify', '--offline'], env);
    expect(tampered.code).toBe(1);
    const reports = JSON.parse(tampered.stdout) as { chain: string; valid: boolean; firstInvalid: { seq: number; id: string; reason: string } | null }[];
    expect(reports.find((r) => r.chain === workspace.id)?.firstInvalid).toEqual({ seq: 1, id: rows[0]?.id, reason: 'altered' });
    expect(reports.find((r) => r.chain === 'platform')?.valid).toBe(true);
  }, 120_000);

  it('audit verify --checkpoint FILE finds a rolled-back tail the plain verify misses; a forged checkpoint exits 2', async () => {
    await json(['migrate'], env);
    const { workspace } = await provision(env, ['--offline']);
    for (const name of ['second', 'third']) await json(['api-key', 'create', '--workspace', workspace.id, '--name', name, '--scopes', 'events:read', '--offline'], env);
    interface Report { valid: boolean; firstInvalid: { seq: number; reason: string } | null; head: { seq: number; hash: string }; checkpoint?: { matched: boolean } }
    const verify = async (args: string[]) => {
      const result = await run(['audit', 'verify', ...args, '--offline'], env);
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
