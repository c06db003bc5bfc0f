import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isTimeZone, latestDueAtOrBefore, nextFireAfter, parseSchedule } from './cron.js';

const at = (iso: string): Date => new Date(iso);
const iso = (d: Date | null): string | null => d?.toISOString() ?? null;

describe('parseSchedule', () => {
  it.each([
    '* * * * *', '*/5 * * * *', '0 9 * * 1-5', '0 9 * * MON-FRI', '30 2 1,15 * *', '0 0 1 JAN *', '0-30/10 8-18 * * *', '0 12 L * *', '0 12 * * FRI#2',
    '  0  9 * *   * ', '@hourly', '@daily', '@midnight', '@weekly', '@monthly', '@yearly', '@annually',
  ])('accepts %j', (expr) => {
    expect(parseSchedule(expr)).toEqual({ ok: true });
  });

  it.each([
    ['seconds (6 fields)', '*/5 * * * * *'],
    ['seconds and years (7 fields)', '0 0 0 * * * 2030'],
    ['4 fields', '* * * *'],
    ['nothing', ''],
    ['blanks', '   '],
    ['@reboot', '@reboot'],
    ['an unknown nickname', '@every_5m'],
    ['a nickname with fields', '@daily 5'],
    ['a one-off ISO date, which croner would schedule once', '2030-01-23T00:00:00'],
    ['a colon in a field', '0:30 * * * *'],
    ['a minute out of range', '61 * * * *'],
    ['an hour out of range', '0 24 * * *'],
    ['a zero step', '*/0 * * * *'],
    ['a numeric step prefix', '5/15 * * * *'],
    ['a reversed range', '30-10 * * * *'],
    ['words', 'every five minutes ok'],
    ['a date that does not exist', '0 0 30 2 *'],
    ['an over-long expression', `${'1,'.repeat(60)}1 * * * *`],
  ])('refuses %s', (_label, expr) => {
    const result = parseSchedule(expr);
    expect(result).toMatchObject({ ok: false, field: 'schedule' });
    expect(result.ok ? '' : result.message).not.toBe('');
  });

  it.each(['UTC', 'Europe/Berlin', 'America/Argentina/Buenos_Aires', 'Etc/GMT+5', 'Asia/Kolkata'])('accepts the time zone %s', (zone) => {
    expect(parseSchedule('0 9 * * *', zone)).toEqual({ ok: true });
  });

  it.each(['Mars/Olympus_Mons', '+01:00', 'UTC+1', 'Europe/Berlin; rm -rf', '', 'Europe/../etc', 'x'.repeat(65)])('refuses the time zone %j, pointing at it', (zone) => {
    expect(parseSchedule('0 9 * * *', zone)).toMatchObject({ ok: false, field: 'timezone' });
  });

  it('isTimeZone agrees', () => {
    expect(isTimeZone('Europe/Berlin')).toBe(true);
    expect(isTimeZone('Europe/Nowhere')).toBe(false);
  });
});

describe('nextFireAfter', () => {
  it('is strictly after the given instant, whatever its milliseconds', () => {
    expect(iso(nextFireAfter('*/5 * * * *', undefined, at('2025-01-01T00:05:00.000Z')))).toBe('2025-01-01T00:10:00.000Z');
    expect(iso(nextFireAfter('*/5 * * * *', undefined, at('2025-01-01T00:05:00.500Z')))).toBe('2025-01-01T00:10:00.000Z');
    expect(iso(nextFireAfter('*/5 * * * *', undefined, at('2025-01-01T00:04:59.999Z')))).toBe('2025-01-01T00:05:00.000Z');
  });

  it('reads the schedule in the given time zone, following its offset through the year', () => {
    expect(iso(nextFireAfter('0 9 * * *', 'Europe/Berlin', at('2025-01-15T00:00:00Z')))).toBe('2025-01-15T08:00:00.000Z');
    expect(iso(nextFireAfter('0 9 * * *', 'Europe/Berlin', at('2025-07-15T00:00:00Z')))).toBe('2025-07-15T07:00:00.000Z');
    expect(iso(nextFireAfter('0 9 * * MON', 'America/New_York', at('2025-07-15T00:00:00Z')))).toBe('2025-07-21T13:00:00.000Z');
  });

  it('uses UTC without a time zone, not the server\'s local time', () => {
    const saved = process.env['TZ'];
    process.env['TZ'] = 'Asia/Tokyo';
    try {
      expect(new Date(2025, 0, 1).getTimezoneOffset()).toBe(-540);
      expect(iso(nextFireAfter('0 0 * * *', undefined, at('2025-01-01T12:00:00Z')))).toBe('2025-01-02T00:00:00.000Z');
    } finally {
      if (saved === undefined) delete process.env['TZ'];
      else process.env['TZ'] = saved;
    }
  });

  it('runs a fixed-time job in the spring-forward gap once, right after the gap', () => {
    // 2025-03-30 in Berlin: 02:00 CET jumps to 03:00 CEST (01:00Z); 02:30 does not exist.
    const runs: string[] = [];
    let cursor = at('2025-03-29T00:00:00Z');
    for (let i = 0; i < 3; i++) {
      const next = nextFireAfter('30 2 * * *', 'Europe/Berlin', cursor);
      if (next === null) throw new Error('no run');
      runs.push(next.toISOString());
      cursor = next;
    }
    expect(runs).toEqual(['2025-03-29T01:30:00.000Z', '2025-03-30T01:00:00.000Z', '2025-03-31T00:30:00.000Z']);
  });

  it('runs a fixed-time job in the repeated autumn hour once, at its first occurrence', () => {
    // 2025-10-26 in Berlin: 03:00 CEST falls back to 02:00 CET; 02:30 happens at 00:30Z and 01:30Z.
    expect(iso(nextFireAfter('30 2 * * *', 'Europe/Berlin', at('2025-10-26T00:00:00Z')))).toBe('2025-10-26T00:30:00.000Z');
    expect(iso(nextFireAfter('30 2 * * *', 'Europe/Berlin', at('2025-10-26T00:30:00Z')))).toBe('2025-10-27T01:30:00.000Z');
  });

  it('an interval job skips the missing hour and runs through both copies of the repeated one', () => {
    const walk = (from: string, n: number) => {
      const out: string[] = [];
      let cursor = at(from);
      for (let i = 0; i < n; i++) {
        const next = nextFireAfter('0,30 * * * *', 'Europe/Berlin', cursor);
        if (next === null) throw new Error('no run');
        out.push(next.toISOString());
        cursor = next;
      }
      return out;
    };
    // Spring: 01:30 CET (00:30Z), then 03:00 CEST (01:00Z): every 30 real minutes, no burst, no hole.
    expect(walk('2025-03-30T00:00:00Z', 3)).toEqual(['2025-03-30T00:30:00.000Z', '2025-03-30T01:00:00.000Z', '2025-03-30T01:30:00.000Z']);
    // Autumn: 02:00 and 02:30 CEST, then 02:00 and 02:30 CET again.
    expect(walk('2025-10-25T23:45:00Z', 5)).toEqual(['2025-10-26T00:00:00.000Z', '2025-10-26T00:30:00.000Z', '2025-10-26T01:00:00.000Z', '2025-10-26T01:30:00.000Z', '2025-10-26T02:00:00.000Z']);
  });

  it('finds rare schedules', () => {
    expect(iso(nextFireAfter('0 0 29 2 *', undefined, at('2025-01-01T00:00:00Z')))).toBe('2028-02-29T00:00:00.000Z');
  });

  it('throws for a schedule that never passed validation', () => {
    expect(() => nextFireAfter('* * * * * *', undefined, new Date())).toThrow(TypeError);
    expect(() => nextFireAfter('* * * * *', 'Nowhere/Land', new Date())).toThrow(/timezone/);
  });
});

describe('latestDueAtOrBefore', () => {
  const created = at('2025-01-01T00:00:00Z');

  it('answers the latest slot in (max(lastFired, createdAt), now]', () => {
    expect(iso(latestDueAtOrBefore('*/15 * * * *', undefined, null, at('2025-01-01T01:07:00Z'), created))).toBe('2025-01-01T01:00:00.000Z');
    expect(iso(latestDueAtOrBefore('*/15 * * * *', undefined, at('2025-01-01T00:45:00Z'), at('2025-01-01T01:07:00Z'), created))).toBe('2025-01-01T01:00:00.000Z');
  });

  it('answers null when the last firing already covered the latest slot', () => {
    expect(latestDueAtOrBefore('*/15 * * * *', undefined, at('2025-01-01T01:00:00Z'), at('2025-01-01T01:14:59Z'), created)).toBeNull();
  });

  it('includes a slot exactly at now and excludes one exactly at the floor', () => {
    expect(iso(latestDueAtOrBefore('0 * * * *', undefined, null, at('2025-01-01T05:00:00.000Z'), created))).toBe('2025-01-01T05:00:00.000Z');
    // Created exactly at a slot: that slot belongs to before the instance existed.
    expect(latestDueAtOrBefore('0 * * * *', undefined, null, at('2025-01-01T00:59:59Z'), created)).toBeNull();
    expect(latestDueAtOrBefore('0 * * * *', undefined, at('2025-01-01T05:00:00Z'), at('2025-01-01T05:00:00.999Z'), created)).toBeNull();
  });

  it('does not fire for slots before the instance was created, even without a last firing', () => {
    expect(latestDueAtOrBefore('0 0 * * *', undefined, null, at('2025-06-01T12:00:00Z'), at('2025-06-01T06:00:00Z'))).toBeNull();
    expect(latestDueAtOrBefore('0 0 * * *', undefined, at('2024-01-01T00:00:00Z'), at('2025-06-01T12:00:00Z'), at('2025-06-01T06:00:00Z'))).toBeNull();
  });

  it('answers null when now is not after the floor (a clock that went backwards)', () => {
    expect(latestDueAtOrBefore('* * * * *', undefined, at('2025-01-02T00:00:00Z'), at('2025-01-01T23:00:00Z'), created)).toBeNull();
    expect(latestDueAtOrBefore('* * * * *', undefined, null, created, created)).toBeNull();
  });

  it('after a year down, fires once for the latest missed minute, in one step', () => {
    const started = performance.now();
    const latest = latestDueAtOrBefore('* * * * *', undefined, at('2024-01-01T00:00:00Z'), at('2025-01-01T00:00:30.250Z'), at('2023-06-01T00:00:00Z'));
    expect(iso(latest)).toBe('2025-01-01T00:00:00.000Z');
    // 527,040 missed slots; stepping through them would take seconds.
    expect(performance.now() - started).toBeLessThan(200);
  });

  it('finds the latest slot of a sparse schedule across a long gap', () => {
    expect(iso(latestDueAtOrBefore('0 0 29 2 *', 'Europe/Berlin', null, at('2030-01-01T00:00:00Z'), created))).toBe('2028-02-28T23:00:00.000Z');
  });

  it('follows DST: the shifted spring slot and the first autumn occurrence', () => {
    expect(iso(latestDueAtOrBefore('30 2 * * *', 'Europe/Berlin', null, at('2025-03-30T01:30:00Z'), created))).toBe('2025-03-30T01:00:00.000Z');
    expect(iso(latestDueAtOrBefore('30 2 * * *', 'Europe/Berlin', null, at('2025-10-26T01:45:00Z'), created))).toBe('2025-10-26T00:30:00.000Z');
    // An interval job in the repeated hour: the second 02:30 is its own slot.
    expect(iso(latestDueAtOrBefore('0,30 * * * *', 'Europe/Berlin', at('2025-10-26T01:00:00Z'), at('2025-10-26T01:45:00Z'), created))).toBe('2025-10-26T01:30:00.000Z');
  });

  it('agrees with nextFireAfter: the answer is a slot, after the floor, at or before now, and the next slot is after now', () => {
    const schedules = ['*/7 * * * *', '0 */3 * * *', '15 2 * * *', '0 9 * * MON', '0,30 * * * *', '0 0 1 * *'];
    const zones = [undefined, 'Europe/Berlin', 'America/New_York', 'Australia/Lord_Howe'];
    const start = at('2025-01-01T00:00:00Z').getTime();
    const year = 365 * 24 * 3600 * 1000;
    fc.assert(fc.property(
      fc.constantFrom(...schedules), fc.constantFrom(...zones), fc.integer({ min: 0, max: year }), fc.integer({ min: 0, max: 60 * 24 * 3600 * 1000 }),
      (expr, zone, offset, gap) => {
        const floor = new Date(start + offset);
        const now = new Date(floor.getTime() + gap);
        const latest = latestDueAtOrBefore(expr, zone, floor, now, at('2024-01-01T00:00:00Z'));
        const first = nextFireAfter(expr, zone, floor);
        if (latest === null) {
          expect(first === null || first.getTime() > now.getTime()).toBe(true);
          return;
        }
        expect(latest.getTime()).toBeGreaterThan(floor.getTime());
        expect(latest.getTime()).toBeLessThanOrEqual(now.getTime());
        const after = nextFireAfter(expr, zone, latest);
        expect(after === null || after.getTime() > now.getTime()).toBe(true);
      },
    ), { numRuns: 300 });
  });
});
