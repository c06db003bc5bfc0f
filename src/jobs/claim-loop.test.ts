import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { databaseUnavailable } from '../db/errors.js';
import { CLAIM_BACKOFF_MAX_MS, claimBackoffMs, createQueueWorker } from './claim-loop.js';

describe('the claim loop during a database outage', () => {
  it('backs off after failed claims instead of polling at full speed, and claims at the poll rate again once a claim succeeds', async () => {
    let down = true;
    const claims: number[] = [];
    const errors: unknown[] = [];
    const worker = createQueueWorker<{ id: string }>({
      claim: () => {
        claims.push(Date.now());
        return down ? Promise.reject(databaseUnavailable(new Error('Connection terminated unexpectedly'))) : Promise.resolve([]);
      },
      run: () => Promise.resolve(),
      capacity: 4,
      pollMs: 10,
      onError: (error) => errors.push(error),
      release: () => Promise.resolve(),
    });
    worker.start();
    await sleep(1_000);
    // At a 10 ms poll, a second is ~100 claims; doubling from 10 ms (10, 20, 40, ... 640) allows about 7.
    const duringOutage = claims.length;
    expect(duringOutage).toBeGreaterThanOrEqual(3);
    expect(duringOutage).toBeLessThanOrEqual(10);
    expect(errors).toHaveLength(duringOutage);
    // Wake-ups (finished items, new work in this process) do not cut the pause short.
    for (let i = 0; i < 20; i++) worker.wake();
    await sleep(20);
    expect(claims.length).toBeLessThanOrEqual(duringOutage + 1);

    down = false;
    // The pause is bounded, so the first claim after recovery comes within CLAIM_BACKOFF_MAX_MS.
    const recovered = Date.now();
    while (claims.length < duringOutage + 2 || (claims.at(-1) ?? 0) < recovered) await sleep(10);
    const resumed = claims.length;
    await sleep(300);
    expect(claims.length - resumed).toBeGreaterThan(10);
    await worker.stop(100);
  });

  it('the pause doubles from the poll interval and stops growing at its bound', () => {
    expect(claimBackoffMs(200, 1)).toBe(400);
    expect(claimBackoffMs(200, 2)).toBe(800);
    expect(claimBackoffMs(200, 50)).toBe(CLAIM_BACKOFF_MAX_MS);
    // A poll interval above the bound is never shortened by it.
    expect(claimBackoffMs(10_000, 3)).toBe(10_000);
  });
});

describe('the claim loop under load', () => {
  /** A worker whose every claim returns `perClaim` items that run until the test ends. */
  async function claimsWithin(perClaim: number, ms: number): Promise<number> {
    let claims = 0;
    let n = 0;
    let finish = (): void => undefined;
    const running = new Promise<undefined>((resolve) => {
      finish = () => {
        resolve(undefined);
      };
    });
    const worker = createQueueWorker<{ id: string }>({
      claim: (room) => {
        claims++;
        return Promise.resolve(Array.from({ length: Math.min(perClaim, room) }, () => ({ id: `item-${String(n++)}` })));
      },
      run: () => running,
      capacity: 64,
      claimFloor: 16,
      pollMs: 10_000,
      onError: () => undefined,
      release: () => Promise.resolve(),
    });
    worker.start();
    await sleep(ms);
    const counted = claims;
    finish();
    await worker.stop(100);
    return counted;
  }

  it('claims again at once after a claim of at least the floor, until the room is used', async () => {
    // 16 per claim into 64 slots: four claims back to back, then the floor stops the fifth.
    expect(await claimsWithin(16, 200)).toBe(4);
  });

  it('does not claim again at once after a claim below the floor (a capped destination taking one more)', async () => {
    // Only the first claim: the next would come from a finished item's wake-up or the 10 s poll.
    expect(await claimsWithin(1, 200)).toBe(1);
  });
});
