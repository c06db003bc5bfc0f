import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../config.js';
import { BulkheadError } from '../errors.js';
import { LOCK_FILE, type LockHolder, lockDataFolder, processStartTime } from './data-folder-lock.js';
import { openDatabase } from './open.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'bk-lock-'));
});
afterEach(async () => rm(dir, { recursive: true, force: true }));

const lockFile = () => path.join(dir, LOCK_FILE);
const readHolder = async () => JSON.parse(await readFile(lockFile(), 'utf8')) as LockHolder;
const writeHolder = (holder: Partial<LockHolder>) =>
  writeFile(lockFile(), JSON.stringify({ pid: 1, startTime: null, hostname: hostname(), command: 'bulkhead serve', since: '2026-01-01T00:00:00.000Z', token: 'old', ...holder }));

async function refusal(promise: Promise<unknown>): Promise<BulkheadError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof BulkheadError) return error;
    throw error;
  }
  throw new Error('the opener was not refused');
}

/** A pid that was alive a moment ago and is not any more. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => child.once('exit', resolve));
  if (child.pid === undefined) throw new Error('no pid');
  return child.pid;
}

describe('the data folder lock', () => {
  it('lets one in-process opener of the embedded database in and refuses the second, naming the holder; after close the folder opens again', async () => {
    const config = parseConfig({ BULKHEAD_DATA_DIR: dir });
    const first = await openDatabase(config);
    try {
      expect(await readHolder()).toMatchObject({ pid: process.pid, hostname: hostname(), startTime: processStartTime(process.pid) });
      const error = await refusal(openDatabase(config));
      expect(error.code).toBe('data_folder_locked');
      expect(error.message).toContain(`pid ${String(process.pid)}`);
      expect(error.details).toMatchObject({ dataDir: dir, holder: { pid: process.pid, hostname: hostname() } });
      await first.owner.query('CREATE TABLE kept (v int)');
      await first.owner.query('INSERT INTO kept VALUES (42)');
    } finally {
      await first.close();
    }
    await expect(readFile(lockFile())).rejects.toMatchObject({ code: 'ENOENT' });
    const second = await openDatabase(config);
    try {
      expect((await second.owner.query<{ v: number }>('SELECT v FROM kept')).rows).toEqual([{ v: 42 }]);
    } finally {
      await second.close();
    }
  }, 60_000);

  it('refuses while another live process holds it, naming its pid, since when and command', async () => {
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
    try {
      const pid = child.pid ?? 0;
      await writeHolder({ pid, startTime: processStartTime(pid), command: 'bulkhead serve --role all' });
      const error = await refusal(lockDataFolder(dir));
      expect(error.code).toBe('data_folder_locked');
      expect(error.message).toContain(`pid ${String(pid)} on ${hostname()}, since 2026-01-01T00:00:00.000Z, command: bulkhead serve --role all`);
      expect((await readHolder()).token).toBe('old');
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('takes over the lock of a process that is gone, and says so', async () => {
    const pid = await deadPid();
    await writeHolder({ pid });
    const told: string[] = [];
    const lock = await lockDataFolder(dir, { onTakeover: (stale, reason) => told.push(`${String(stale?.pid)}: ${reason}`) });
    expect(told).toEqual([`${String(pid)}: process ${String(pid)} is not running`]);
    expect(lock.tookOverFrom?.pid).toBe(pid);
    expect(await readHolder()).toMatchObject({ pid: process.pid, token: lock.holder.token });
    await lock.release();
  });

  it('takes over a lock whose pid now belongs to another process (its start time differs)', async () => {
    const startTime = processStartTime(process.pid);
    expect(startTime).not.toBeNull(); // Linux: /proc is there
    await writeHolder({ pid: process.pid, startTime: `${startTime ?? ''}0` });
    const lock = await lockDataFolder(dir);
    expect(lock.tookOverFrom?.pid).toBe(process.pid);
    await lock.release();
  });

  it('does not take over a lock held from another host (it cannot tell whether that holder lives)', async () => {
    await writeHolder({ pid: await deadPid(), hostname: 'elsewhere.example' });
    const error = await refusal(lockDataFolder(dir));
    expect(error.code).toBe('data_folder_locked');
    expect(error.message).toContain('another host');
    expect(error.message).toContain(lockFile());
  });

  it('gives one stale lock to exactly one of many racing openers', async () => {
    await writeHolder({ pid: await deadPid() });
    const results = await Promise.allSettled(Array.from({ length: 12 }, () => lockDataFolder(dir)));
    const won = results.filter((r) => r.status === 'fulfilled');
    expect(won).toHaveLength(1);
    for (const r of results) if (r.status === 'rejected') expect((r.reason as BulkheadError).code).toBe('data_folder_locked');
    const winner = won[0]?.status === 'fulfilled' ? won[0].value : undefined;
    expect((await readHolder()).token).toBe(winner?.holder.token);
    await winner?.release();
  });

  it('never removes a successor\'s lock on release', async () => {
    const lock = await lockDataFolder(dir);
    await writeHolder({ pid: process.pid, token: 'successor' });
    await lock.release();
    expect((await readHolder()).token).toBe('successor');
  });

  it('is released when the holding process exits normally without closing', async () => {
    const script = `import { lockDataFolder } from ${JSON.stringify(new URL('./data-folder-lock.ts', import.meta.url).href)}; await lockDataFolder(${JSON.stringify(dir)}); console.log('locked');`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise((resolve) => child.once('exit', resolve));
    expect([code, out.trim()]).toEqual([0, 'locked']);
    await expect(readFile(lockFile())).rejects.toMatchObject({ code: 'ENOENT' });
  }, 30_000);
});
