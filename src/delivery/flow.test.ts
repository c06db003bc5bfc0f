import { describe, expect, it } from 'vitest';
import { allowance, cooldownMs, tokensAt } from './flow.js';

const at = (ms: number) => new Date(Date.UTC(2026, 0, 1) + ms);
const base = { ratePerSecond: null, tokens: null, refilledAt: null, maxInFlight: 16, inFlight: 0, consecutiveFailures: 0 } as const;
const policy = { circuitFailures: 5, circuitCooldownMs: 1000 };

describe('destination flow control', () => {
  it('refills the token bucket at the rate, never above one second of it', () => {
    expect(tokensAt({ ratePerSecond: 10, tokens: null, refilledAt: null }, at(0))).toBe(10);
    expect(tokensAt({ ratePerSecond: 10, tokens: 0, refilledAt: at(0) }, at(250))).toBeCloseTo(2.5);
    expect(tokensAt({ ratePerSecond: 10, tokens: 3, refilledAt: at(0) }, at(60_000))).toBe(10);
    expect(tokensAt({ ratePerSecond: null, tokens: null, refilledAt: null }, at(0))).toBe(Number.POSITIVE_INFINITY);
  });

  it('takes the smallest of what is wanted, the in-flight room and the whole tokens', () => {
    expect(allowance(base, policy, at(0), 4)).toBe(4);
    expect(allowance({ ...base, inFlight: 14 }, policy, at(0), 4)).toBe(2);
    expect(allowance({ ...base, inFlight: 20 }, policy, at(0), 4)).toBe(0);
    expect(allowance({ ...base, ratePerSecond: 5, tokens: 1.9, refilledAt: at(0) }, policy, at(0), 4)).toBe(1);
    expect(allowance({ ...base, ratePerSecond: 5, tokens: 0, refilledAt: at(0) }, policy, at(100), 4)).toBe(0);
  });

  it('lets a half-open circuit send one probe at a time', () => {
    expect(allowance({ ...base, consecutiveFailures: 5 }, policy, at(0), 4)).toBe(1);
    expect(allowance({ ...base, consecutiveFailures: 5, inFlight: 1 }, policy, at(0), 4)).toBe(0);
    expect(allowance({ ...base, consecutiveFailures: 4 }, policy, at(0), 4)).toBe(4);
  });

  it('doubles the cool-down with each failed probe, up to 32 times', () => {
    expect([5, 6, 7, 10, 11, 50].map((f) => cooldownMs(f, policy))).toEqual([1000, 2000, 4000, 32_000, 32_000, 32_000]);
  });
});
