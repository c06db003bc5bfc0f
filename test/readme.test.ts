/**
 * The README's first session, run as a new user runs it: the server started the way its
 * `readme-test: server` block says (on a fresh data folder and a free port), then every
 * `readme-test` block, in order, in one bash session with only PORT and BULKHEAD_DATA_DIR
 * exported (what the README tells a user with other values to do). A README step that stops
 * working fails here, and so does a README that no longer does what it says (the receiver it
 * starts must see the relay call, the delivery and the transform's output).
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BulkheadProcess, freePort, processGroup } from '../src/testing/processes.js';

const root = path.resolve(import.meta.dirname, '..');
/** The receiver's port, fixed in the README so its commands stay copyable. */
const RECEIVER_PORT = 9123;

interface Session {
  /** Environment assignments of the server block (`A=1 B=2 npm start`). */
  readonly serverEnv: Record<string, string>;
  readonly blocks: readonly string[];
}

/** The marked blocks: `<!-- readme-test -->` (or `<!-- readme-test: server -->`) right before a ```sh fence. */
export function readmeSession(markdown: string): Session {
  const marked = /<!-- readme-test(: server)? -->\n```sh\n([\s\S]*?)\n```/g;
  const blocks: string[] = [];
  let serverEnv: Record<string, string> | undefined;
  for (const match of markdown.matchAll(marked)) {
    const body = match[2] ?? '';
    if (match[1] === undefined) {
      blocks.push(body);
      continue;
    }
    const server = /^((?:[A-Z_][A-Z0-9_]*=\S+ )*)npm start$/.exec(body.trim());
    if (!server) throw new Error(`the server block must be "[VAR=value …] npm start", got: ${body}`);
    if (serverEnv !== undefined) throw new Error('more than one server block');
    serverEnv = Object.fromEntries(
      (server[1] ?? '').trim().split(/\s+/).filter(Boolean).map((pair) => {
        const at = pair.indexOf('=');
        return [pair.slice(0, at), pair.slice(at + 1)];
      }),
    );
  }
  if (serverEnv === undefined) throw new Error('the README has no <!-- readme-test: server --> block');
  return { serverEnv, blocks };
}

const portIsFree = (port: number) =>
  new Promise<boolean>((resolve) => {
    const probe = createServer()
      .once('error', () => {
        resolve(false);
      })
      .listen(port, '127.0.0.1', () => {
        probe.close(() => {
          resolve(true);
        });
      });
  });

async function waitReady(url: string, deadlineMs: number): Promise<void> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    const ok = await fetch(url).then((r) => r.ok, () => false);
    if (ok) return;
    if (Date.now() > until) throw new Error(`${url} did not answer within ${String(deadlineMs)} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The parent's environment without Bulkhead or database settings, so a developer's shell cannot leak in. */
function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (value !== undefined && !/^(BULKHEAD_|DATABASE_|REDIS_URL$|PORT$|HOST$|LOG_LEVEL$)/.test(name)) env[name] = value;
  }
  // The README's `node -e` receiver runs on the Node.js running this suite (CI runs it on two).
  env['PATH'] = `${path.dirname(process.execPath)}${path.delimiter}${env['PATH'] ?? ''}`;
  return env;
}

/**
 * The blocks as one bash script: strict mode (so a failing command stops it and says which line),
 * a marker before each block, and whatever the session left in the background killed on exit.
 */
function sessionScript(blocks: readonly string[]): string {
  const lines = [
    'set -euo pipefail',
    'trap \'echo "README step failed (exit $?) in block $BLOCK: $BASH_COMMAND" >&2\' ERR',
    'trap \'kill $(jobs -p) 2>/dev/null || true\' EXIT',
  ];
  blocks.forEach((block, i) => {
    lines.push(`BLOCK=${String(i + 1)}; echo "::block ${String(i + 1)}::"`, block);
  });
  lines.push('echo "::session complete::"');
  return `${lines.join('\n')}\n`;
}

function runBash(scriptFile: string, cwd: string, env: Record<string, string>, timeoutMs: number) {
  return new Promise<{ code: number | string; stdout: string; stderr: string }>((resolve) => {
    const child = spawn('bash', [scriptFile], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    // A hung step (or a background job holding the pipes) ends the whole process group.
    const timer = setTimeout(() => {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: signal ?? code ?? -1, stdout, stderr });
    });
  });
}

describe('the README first session', () => {
  const group = processGroup();
  let dir: string;
  let cwd: string;
  let port: number;
  let server: BulkheadProcess;
  let session: Session;

  beforeAll(async () => {
    session = readmeSession(await readFile(path.join(root, 'README.md'), 'utf8'));
    dir = await mkdtemp(path.join(tmpdir(), 'bk-readme-data-'));
    cwd = await mkdtemp(path.join(tmpdir(), 'bk-readme-cwd-'));
    // The SDK as the clone has it (an npm workspace: node_modules/@bulkhead/sdk → sdk/), so the
    // README's `import … from '@bulkhead/sdk'` resolves here as it does in the clone.
    await mkdir(path.join(cwd, 'node_modules', '@bulkhead'), { recursive: true });
    await symlink(path.join(root, 'sdk'), path.join(cwd, 'node_modules', '@bulkhead', 'sdk'), 'dir');
    port = await freePort();
    server = group.spawn(['serve'], { ...session.serverEnv, PORT: String(port), BULKHEAD_DATA_DIR: dir });
    await server.waitForOutput(/listening on/, 60_000);
    await waitReady(`http://127.0.0.1:${String(port)}/readyz`, 90_000);
  });

  afterAll(async () => {
    await group.killAll();
    await rm(dir, { recursive: true, force: true });
    await rm(cwd, { recursive: true, force: true });
  });

  it('starts with npm install && npm start, and marks the session blocks', async () => {
    const readme = await readFile(path.join(root, 'README.md'), 'utf8');
    expect(/^# Bulkhead\n\n```sh\n(.*)\n```/.exec(readme)?.[1]).toBe('npm install && npm start');
    expect(session.serverEnv).toEqual({ BULKHEAD_EGRESS_ALLOW_CIDRS: '127.0.0.1/32' });
    expect(session.blocks.length).toBeGreaterThanOrEqual(8);
  });

  it('prints the admin token on the first start as one plain line before any JSON log line, naming the file that keeps it', async () => {
    const first = server.output().split('\n')[0] ?? '';
    const stored = JSON.parse(await readFile(path.join(dir, 'secrets.json'), 'utf8')) as { adminToken: string };
    expect(first).toBe(`Admin token (first start; kept in ${path.join(dir, 'secrets.json')} as "adminToken"): ${stored.adminToken}`);
    // That line is the only place it appears: no log line carries it.
    expect(server.output().split(stored.adminToken)).toHaveLength(2);
  });

  it('runs every block verbatim in bash, and the receiver it starts sees what the README says', async () => {
    expect(await portIsFree(RECEIVER_PORT), `the README's receiver needs 127.0.0.1:${String(RECEIVER_PORT)} free`).toBe(true);
    const script = path.join(cwd, 'first-session.sh');
    await writeFile(script, sessionScript(session.blocks));
    const env = { ...cleanEnv(), PORT: String(port), BULKHEAD_DATA_DIR: dir };
    const result = await runBash(script, cwd, env, 100_000);
    const report = `exit ${String(result.code)}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}\n--- server\n${server.output().slice(-4000)}`;
    expect(result.code, report).toBe(0);
    expect(result.stdout, report).toContain('::session complete::');
    // The relay put the connection's secret on the way out (and only there).
    expect(result.stdout, report).toContain('receiver: GET /v1/customers?limit=3 authorization=Bearer sk_test_local');
    // The event reached the destination, and so did the transform's shape of the second one.
    expect(result.stdout, report).toMatch(/receiver: POST \/hooks authorization=- \{"type":"invoice\.paid".*"amount":4200/);
    expect(result.stdout, report).toMatch(/receiver: POST \/hooks authorization=- \{"type":"invoice\.paid".*"data":\{"text":"invoice\.paid: 990"\}\}/);
    // The SDK's post landed once (the second was replayed), both of its deliveries arrived, and
    // a missing delivery came back as a typed not_found.
    expect(result.stdout, report).toMatch(/^event evt_\S+: 1 delivery, 1 transform; again: replayed=true$/m);
    expect(result.stdout.match(/^dlv_\S+ delivered after 1 attempt\(s\)$/gm), report).toHaveLength(2);
    expect(result.stdout, report).toMatch(/^404 not_found: /m);
    expect(result.stdout.match(/receiver: POST \/hooks authorization=- \{"type":"invoice\.paid".*"amount":7700/g), report).toHaveLength(1);
    // The checkpoint it wrote names the workspace chain, and the receiver was stopped.
    expect((JSON.parse(await readFile(path.join(cwd, 'checkpoint.json'), 'utf8')) as { chain: string }).chain).toMatch(/^ws_/);
    expect(await portIsFree(RECEIVER_PORT)).toBe(true);
  }, 120_000);
});
