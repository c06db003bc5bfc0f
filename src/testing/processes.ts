/**
 * Real `bulkhead` processes for tests, run from source through tsx (as an operator runs the CLI),
 * with their output kept for failure messages and a group that never leaves one behind: `killAll`
 * in `afterAll`, and a synchronous SIGKILL when the test process itself exits.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdir, readFile, readlink } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '../..');
const OUTPUT_KEPT = 64 * 1024;

export interface BulkheadProcess {
  readonly pid: number;
  /** Resolves with the exit code, or the signal's name when killed by one. */
  readonly exited: Promise<number | string>;
  readonly alive: boolean;
  /** The last 64 KiB of stdout and stderr, interleaved. */
  output(): string;
  /** Resolves once the output matches; rejects after `timeoutMs` or if the process exits first. */
  waitForOutput(pattern: RegExp, timeoutMs: number): Promise<void>;
  kill(signal: NodeJS.Signals): void;
  /** Collects every whole output line matching `pattern` from now on (the first 100 kept, all counted), however much output follows. */
  watch(pattern: RegExp): { readonly count: number; readonly lines: readonly string[] };
}

export interface ProcessGroup {
  spawn(args: readonly string[], env: Readonly<Record<string, string>>): BulkheadProcess;
  readonly processes: readonly BulkheadProcess[];
  /** SIGKILLs every process still running and waits until each has exited; no spawning after it. */
  killAll(): Promise<void>;
}

/** The parent's environment without Bulkhead or database settings, so a developer's shell cannot leak into a test. */
function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (value !== undefined && !/^(BULKHEAD_|DATABASE_|REDIS_URL$|PORT$|HOST$|LOG_LEVEL$)/.test(name)) env[name] = value;
  }
  return env;
}

function start(args: readonly string[], env: Readonly<Record<string, string>>): BulkheadProcess {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', ...args], { cwd: root, env: { ...baseEnv(), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  if (child.pid === undefined) throw new Error(`could not start bulkhead ${args.join(' ')}`);
  let output = '';
  let running = true;
  const listeners = new Set<() => void>();
  const watchers: { pattern: RegExp; count: number; lines: string[] }[] = [];
  const partial = { out: '', err: '' };
  const append = (stream: 'out' | 'err') => (chunk: Buffer) => {
    const text = chunk.toString('utf8');
    output = (output + text).slice(-OUTPUT_KEPT);
    if (watchers.length > 0) {
      const lines = (partial[stream] + text).split('\n');
      partial[stream] = lines.pop() ?? '';
      for (const line of lines) {
        for (const w of watchers) {
          if (!w.pattern.test(line)) continue;
          w.count++;
          if (w.lines.length < 100) w.lines.push(line);
        }
      }
    }
    for (const listener of listeners) listener();
  };
  child.stdout?.on('data', append('out'));
  child.stderr?.on('data', append('err'));
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      running = false;
      for (const listener of listeners) listener();
      resolve(signal ?? code ?? -1);
    });
  });
  const pid = child.pid;
  return {
    pid,
    exited,
    get alive() {
      return running;
    },
    output: () => output,
    waitForOutput(pattern, timeoutMs) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          finish(new Error(`bulkhead (pid ${pid}) did not print ${String(pattern)} within ${timeoutMs} ms:\n${output.slice(-4000)}`));
        }, timeoutMs);
        const check = () => {
          if (pattern.test(output)) finish();
          else if (!running) finish(new Error(`bulkhead (pid ${pid}) exited before printing ${String(pattern)}:\n${output.slice(-4000)}`));
        };
        function finish(error?: Error) {
          clearTimeout(timer);
          listeners.delete(check);
          if (error) reject(error);
          else resolve();
        }
        listeners.add(check);
        check();
      });
    },
    kill(signal) {
      if (running) child.kill(signal);
    },
    watch(pattern) {
      const watcher = { pattern, count: 0, lines: [] as string[] };
      watchers.push(watcher);
      return watcher;
    },
  };
}

export function processGroup(): ProcessGroup {
  const processes: BulkheadProcess[] = [];
  let closed = false;
  // A failed or timed-out test file must not leave workers polling a dropped database.
  const onExit = () => {
    for (const p of processes) p.kill('SIGKILL');
  };
  process.once('exit', onExit);
  return {
    processes,
    spawn(args, env) {
      if (closed) throw new Error('this process group has been killed');
      const p = start(args, env);
      processes.push(p);
      return p;
    },
    async killAll() {
      closed = true;
      for (const p of processes) p.kill('SIGKILL');
      await Promise.all(processes.map((p) => p.exited));
      process.off('exit', onExit);
    },
  };
}

/** `0100007F:1F90` → 8080 (the port half of a /proc/net/tcp address). */
const portOf = (address: string | undefined) => Number.parseInt(address?.split(':')[1] ?? '', 16);

/**
 * Which of `pids` owns the client end of a loopback TCP connection (Linux only: /proc/net/tcp*
 * gives the socket's inode, /proc/<pid>/fd links to it). Undefined when it cannot tell.
 */
export async function pidOfClientSocket(clientPort: number, serverPort: number, pids: readonly number[]): Promise<number | undefined> {
  let inode: string | undefined;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await readFile(table, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (portOf(fields[1]) === clientPort && portOf(fields[2]) === serverPort) inode = fields[9];
    }
    if (inode !== undefined) break;
  }
  if (inode === undefined || inode === '0') return undefined;
  const target = `socket:[${inode}]`;
  for (const pid of pids) {
    const dir = `/proc/${String(pid)}/fd`;
    const fds = await readdir(dir).catch(() => [] as string[]);
    for (const fd of fds) {
      if ((await readlink(path.join(dir, fd)).catch(() => '')) === target) return pid;
    }
  }
  return undefined;
}

/** A loopback port free right now (for a child process that must be told its port up front). */
export const freePort = (): Promise<number> =>
  new Promise<number>((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        resolve(typeof address === 'object' && address ? address.port : 0);
      });
    });
  });
