/**
 * A PostgreSQL cluster of a test's own, for tests that stop and start the server (the shared one
 * on 5432 serves every other suite and must never be stopped). `initdb` into a temporary folder,
 * a free loopback port, `pg_ctl start|stop`. Run as root (CI), the server runs as the `postgres`
 * user through `runuser`; as any other user, as that user.
 *
 * Without PostgreSQL's binaries the suites using this are skipped with a reason, except where
 * PostgreSQL is required (CI, BULKHEAD_TEST_REQUIRE_POSTGRES=1): there they run and fail.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chown, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The newest `/usr/lib/postgresql/<version>/bin` holding initdb and pg_ctl (Debian's layout), or the folder of `BULKHEAD_TEST_PG_BIN`. */
function findBinaries(): string | undefined {
  const explicit = process.env['BULKHEAD_TEST_PG_BIN'];
  if (explicit !== undefined && explicit !== '') return existsSync(path.join(explicit, 'initdb')) ? explicit : undefined;
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).filter((v) => /^\d+(\.\d+)?$/.test(v)).sort((a, b) => Number(b) - Number(a)) : [];
  return versions.map((v) => path.join(root, v, 'bin')).find((bin) => existsSync(path.join(bin, 'initdb')) && existsSync(path.join(bin, 'pg_ctl')));
}

const required = process.env['CI'] === 'true' || process.env['BULKHEAD_TEST_REQUIRE_POSTGRES'] === '1';
const binaries = findBinaries();
const runningAsRoot = process.getuid?.() === 0;

/**
 * Why a cluster of our own cannot be made here, for `describe.skipIf`; null when it can — or when
 * PostgreSQL is required, so that the suite runs and `startOwnPostgres` fails with the reason.
 */
export const ownPostgresUnavailable: string | null =
  binaries === undefined && !required ? 'PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin; set BULKHEAD_TEST_PG_BIN' : null;

export type StopMode = 'smart' | 'fast' | 'immediate';

export interface OwnPostgres {
  readonly port: number;
  /** A URL for `database` on this cluster (user postgres, trust authentication, loopback). */
  url(database?: string): string;
  readonly running: boolean;
  start(): Promise<void>;
  /** `fast` ends sessions with an error message; `immediate` kills the server without one (crash recovery at the next start). */
  stop(mode: StopMode): Promise<void>;
  /** Stops the server if it runs and deletes its folder. */
  destroy(): Promise<void>;
  /** The server's log, for failure messages. */
  log(): Promise<string>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

export async function startOwnPostgres(): Promise<OwnPostgres> {
  if (binaries === undefined) throw new Error('PostgreSQL is required here, but its server binaries (initdb, pg_ctl) are not under /usr/lib/postgresql/*/bin (or BULKHEAD_TEST_PG_BIN)');
  const bin = binaries;
  // Short: the server's Unix socket lives in this folder too, and socket paths are limited to ~100 bytes.
  const dir = await mkdtemp(path.join(tmpdir(), 'bk-pg-'));
  if (runningAsRoot) {
    // initdb refuses to run as root; the server runs as `postgres` and must own its folder.
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    await chown(dir, Number(stdout.trim()), Number(gid.trim()));
  }
  const data = path.join(dir, 'data');
  const logFile = path.join(dir, 'server.log');
  const tool = (name: string, args: readonly string[]) =>
    runningAsRoot ? run('runuser', ['-u', 'postgres', '--', path.join(bin, name), ...args]) : run(path.join(bin, name), [...args]);

  let running = false;
  const port = await freePort();
  // --no-sync, fsync=off: this cluster's files need not survive a machine crash, only a server
  // one (`-m immediate`), and committed WAL written to the OS is enough for that. Commits stay
  // synchronous: an acknowledged commit is in the WAL before the client hears of it.
  await tool('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  const serverOptions = `-p ${String(port)} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100`;
  const cluster: OwnPostgres = {
    port,
    url: (database = 'postgres') => `postgres://postgres@127.0.0.1:${String(port)}/${database}`,
    get running() {
      return running;
    },
    async start() {
      await tool('pg_ctl', ['-D', data, '-o', serverOptions, '-l', logFile, '-w', '-t', '60', 'start']);
      running = true;
    },
    async stop(mode) {
      await tool('pg_ctl', ['-D', data, '-m', mode, '-w', '-t', '60', 'stop']);
      running = false;
    },
    async destroy() {
      if (running) await cluster.stop('immediate').catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
    log: () => readFile(logFile, 'utf8').catch(() => ''),
  };
  try {
    await cluster.start();
  } catch (error) {
    const log = await cluster.log();
    await rm(dir, { recursive: true, force: true });
    throw new Error(`own PostgreSQL did not start:\n${log.slice(-2000)}`, { cause: error });
  }
  return cluster;
}
