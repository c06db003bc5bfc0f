/**
 * The embedded database's data folder belongs to one process at a time. PGlite is PostgreSQL in
 * single-user mode with no postmaster.pid of its own: two processes that open one folder each
 * write their own WAL and pages over the other's, and whatever the last one to close wrote wins
 * (issue 12: a CLI beside a running server lost every row of both).
 *
 * So every opener of a persisted PGlite takes `<data folder>/bulkhead.lock` first, created with
 * O_EXCL (`wx`) so exactly one of two racing openers gets it. The file names its holder (pid, the
 * kernel's start time of that pid, host, command, since when). A lock whose holder is gone — the
 * pid is not alive, or it is alive but started at another time (a reused pid) — is stale and is
 * taken over; a live holder, or one on another host (which cannot be checked from here), makes
 * the opener fail with `data_folder_locked`, naming the holder. The lock is released on close and,
 * synchronously, when the process exits; after SIGKILL or a crash it stays behind and the next
 * opener takes it over.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, unlinkSync } from 'node:fs';
import { mkdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { BulkheadError } from '../errors.js';

export const LOCK_FILE = 'bulkhead.lock';
/** Held only while a stale lock is replaced, so two openers cannot both take one over. */
const TAKEOVER_FILE = 'bulkhead.lock.takeover';
/** A takeover guard (or a lock file still being written) older than this was left by a crash. */
const ABANDONED_AFTER_MS = 10_000;
const ATTEMPTS = 20;

export interface LockHolder {
  readonly pid: number;
  /** Field 22 of /proc/<pid>/stat (clock ticks after boot); null where /proc is not available. */
  readonly startTime: string | null;
  readonly hostname: string;
  readonly command: string;
  /** When the lock was taken (ISO 8601). */
  readonly since: string;
  /** Random; tells this holder's file from a successor's, so release never removes another's lock. */
  readonly token: string;
}

export interface DataFolderLock {
  readonly file: string;
  readonly holder: LockHolder;
  /** The stale holder this lock replaced, if any (the caller logs it). */
  readonly tookOverFrom: LockHolder | undefined;
  /** Removes the lock file if it is still this holder's. Idempotent. */
  release(): Promise<void>;
}

export interface LockOptions {
  /** Told once when a stale lock is taken over (`stale` is undefined when its file was unreadable). */
  readonly onTakeover?: (stale: LockHolder | undefined, reason: string) => void;
}

/** The kernel's start time of `pid` (so a reused pid is told from the process that took the lock). */
export function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${String(pid)}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may contain spaces or ')': split after the last one.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null; // field 22 overall; fields[0] is field 3 (state)
  } catch {
    return null;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function parseHolder(text: string): LockHolder | undefined {
  try {
    const value = JSON.parse(text) as Partial<LockHolder>;
    if (typeof value.pid !== 'number' || typeof value.hostname !== 'string' || typeof value.token !== 'string') return undefined;
    return { pid: value.pid, startTime: typeof value.startTime === 'string' ? value.startTime : null, hostname: value.hostname, command: typeof value.command === 'string' ? value.command : '', since: typeof value.since === 'string' ? value.since : '', token: value.token };
  } catch {
    return undefined;
  }
}

/** Why `holder` no longer holds the folder, or null while it may. */
function staleReason(holder: LockHolder): string | null {
  if (holder.hostname !== hostname()) return null;
  if (!isAlive(holder.pid)) return `process ${String(holder.pid)} is not running`;
  if (holder.startTime !== null) {
    const now = processStartTime(holder.pid);
    if (now !== null && now !== holder.startTime) return `pid ${String(holder.pid)} now belongs to another process`;
  }
  return null;
}

export function describeHolder(holder: LockHolder): string {
  return `pid ${String(holder.pid)} on ${holder.hostname}, since ${holder.since || 'an unknown time'}${holder.command ? `, command: ${holder.command}` : ''}`;
}

function lockedError(dir: string, holder: LockHolder): BulkheadError {
  const remote = holder.hostname !== hostname();
  const hint = remote
    ? ` It is held from another host; if ${holder.hostname} no longer uses this folder, remove ${path.join(dir, LOCK_FILE)}.`
    : ' One process at a time may open it: stop that one first.';
  return new BulkheadError('data_folder_locked', `the data folder ${dir} is in use by ${describeHolder(holder)}.${hint}`, {
    details: { dataDir: dir, holder: { pid: holder.pid, hostname: holder.hostname, since: holder.since, command: holder.command } },
  });
}

const exists = (error: unknown) => (error as NodeJS.ErrnoException).code === 'EEXIST';
const missing = (error: unknown) => (error as NodeJS.ErrnoException).code === 'ENOENT';

async function ageMs(file: string): Promise<number | undefined> {
  try {
    return Date.now() - (await stat(file)).mtimeMs;
  } catch (error) {
    if (missing(error)) return undefined;
    throw error;
  }
}

/** Takes the data folder, or throws `data_folder_locked` naming the live holder. */
export async function lockDataFolder(dir: string, options: LockOptions = {}): Promise<DataFolderLock> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, LOCK_FILE);
  const guard = path.join(dir, TAKEOVER_FILE);
  const holder: LockHolder = {
    pid: process.pid,
    startTime: processStartTime(process.pid),
    hostname: hostname(),
    command: commandLine(process.argv.slice(1)),
    since: new Date().toISOString(),
    token: randomBytes(12).toString('hex'),
  };
  const content = `${JSON.stringify(holder)}\n`;
  let tookOverFrom: LockHolder | undefined;

  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    try {
      await writeFile(file, content, { flag: 'wx', mode: 0o600 });
      return makeLock(file, holder, tookOverFrom);
    } catch (error) {
      if (!exists(error)) throw error;
    }
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      if (missing(error)) continue; // released meanwhile: try again
      throw error;
    }
    const current = parseHolder(text);
    if (current === undefined) {
      // Either being written this very moment (wx creates, then writes) or left half-written by a crash.
      const age = await ageMs(file);
      if (age !== undefined && age < ABANDONED_AFTER_MS) {
        await pause(25);
        continue;
      }
    } else {
      const reason = staleReason(current);
      if (reason === null) throw lockedError(dir, current);
    }

    // Stale: replace it under the takeover guard, re-checking that it is still the same stale file.
    try {
      await writeFile(guard, content, { flag: 'wx', mode: 0o600 });
    } catch (error) {
      if (!exists(error)) throw error;
      const age = await ageMs(guard);
      if (age !== undefined && age > ABANDONED_AFTER_MS) await unlink(guard).catch(() => undefined);
      else await pause(25);
      continue;
    }
    try {
      const again = await readFile(file, 'utf8').catch((error: unknown) => {
        if (missing(error)) return undefined;
        throw error;
      });
      if (again === text) {
        await unlink(file);
        tookOverFrom = current;
        options.onTakeover?.(current, current === undefined ? 'the lock file was unreadable' : (staleReason(current) ?? 'stale'));
      }
    } finally {
      await unlink(guard).catch(() => undefined);
    }
  }
  throw new BulkheadError('data_folder_locked', `could not take the data folder ${dir}: its lock kept changing hands`, { details: { dataDir: dir } });
}

/** The holder's command line for the refusal message, with a `--token` value left out. */
function commandLine(args: readonly string[]): string {
  const shown = args.map((arg, i) => (args[i - 1] === '--token' ? '[redacted]' : arg.replace(/^--token=.*/, '--token=[redacted]')));
  return shown.join(' ').slice(0, 500);
}

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function makeLock(file: string, holder: LockHolder, tookOverFrom: LockHolder | undefined): DataFolderLock {
  let held = true;
  const ours = (text: string) => parseHolder(text)?.token === holder.token;
  // Normal exit (also process.exit) without a close: leave no lock behind for the next opener to puzzle over.
  const onExit = () => {
    if (!held) return;
    held = false;
    try {
      if (ours(readFileSync(file, 'utf8'))) unlinkSync(file);
    } catch {
      // already gone
    }
  };
  process.once('exit', onExit);
  return {
    file,
    holder,
    tookOverFrom,
    async release() {
      if (!held) return;
      held = false;
      process.off('exit', onExit);
      try {
        if (ours(await readFile(file, 'utf8'))) await unlink(file);
      } catch (error) {
        if (!missing(error)) throw error;
      }
    },
  };
}
