/**
 * The exit rules of `bulkhead serve` around `App.close` (the real process under each socket state
 * is shutdown.test.ts): a clean stop exits 0, a stop that hangs is cut one second after the grace
 * period with status 1, a failed stop exits 1, and a second signal exits at once.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../logging.js';
import { EXIT_SLACK_MS, exitOnSignals } from './shutdown.js';

const logger = createLogger({ level: 'silent' });

describe('exitOnSignals', () => {
  let off: (() => void) | undefined;
  afterEach(() => {
    off?.();
    off = undefined;
  });

  function install(stop: (graceMs: number) => Promise<void>, graceMs = 100) {
    const exits: { code: number; at: number }[] = [];
    const started = Date.now();
    off = exitOnSignals({ graceMs, logger, stop, exit: (code) => exits.push({ code, at: Date.now() - started }) });
    return exits;
  }

  it('exits 0 once the stop has finished, and passes it the grace period', async () => {
    let given = -1;
    const exits = install(async (graceMs) => {
      given = graceMs;
      await sleep(20);
    });
    process.emit('SIGTERM', 'SIGTERM');
    await sleep(200);
    expect(given).toBe(100);
    expect(exits.map((e) => e.code)).toEqual([0]);
  });

  it('exits 1 one second after the grace period when the stop hangs', async () => {
    const exits = install(() => new Promise(() => undefined));
    process.emit('SIGTERM', 'SIGTERM');
    await sleep(100 + EXIT_SLACK_MS + 300);
    expect(exits.map((e) => e.code)).toEqual([1]);
    expect(exits[0]?.at).toBeGreaterThanOrEqual(100 + EXIT_SLACK_MS - 20);
  });

  it('exits 1 when the stop fails', async () => {
    const exits = install(() => Promise.reject(new Error('the database would not close')));
    process.emit('SIGINT', 'SIGINT');
    await sleep(50);
    expect(exits.map((e) => e.code)).toEqual([1]);
  });

  it('a second signal exits at once', async () => {
    const exits = install(() => new Promise(() => undefined), 10_000);
    process.emit('SIGTERM', 'SIGTERM');
    await sleep(20);
    expect(exits).toEqual([]);
    process.emit('SIGINT', 'SIGINT');
    expect(exits.map((e) => e.code)).toEqual([1]);
  });
});
