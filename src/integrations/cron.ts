/**
 * Cron schedules of integration triggers: standard 5-field expressions (minute resolution)
 * evaluated in an IANA time zone, UTC by default.
 *
 * croner does the calendar arithmetic (ranges, steps, names, `L`/`W`/`#`, DST), but only as a
 * calculator: every Cron object here is created paused and without a function, so croner never
 * arms a timer. Scheduling is the runner's job, driven by `nextFireAfter` and
 * `latestDueAtOrBefore` against stored timestamps, which survives restarts and runs on any
 * number of workers.
 *
 * DST follows croner (and Vixie cron): a fixed-time job (`30 2 * * *`) whose time falls in the
 * spring-forward gap runs once at the first valid time after it and runs once at the first
 * occurrence of a repeated hour; an interval job (`*\/30 * * * *`) skips the missing times and
 * runs on both occurrences of a repeated time.
 */
import { Cron } from 'croner';

export const DEFAULT_TIMEZONE = 'UTC';
export const MAX_SCHEDULE_LENGTH = 100;

// croner also understands @annually and @midnight; they are the same schedules under other names.
const NICKNAMES: ReadonlySet<string> = new Set(['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly']);
// Anything else (in particular `:`) is refused before croner sees it: croner reads a string with a
// colon as an ISO date and schedules a one-off run instead of failing.
const FIELD = /^[0-9A-Za-z*,/\-#?+]+$/;
// Zone names only (`Europe/Berlin`, `UTC`, `Etc/GMT+5`), not offsets such as `+01:00`, which some
// ICU versions accept and others do not.
const ZONE_NAME = /^[A-Za-z][A-Za-z0-9_+-]*(?:\/[A-Za-z0-9_+-]+)*$/;
const MAX_ZONE_LENGTH = 64;
// croner searches forward up to year 9999 and the calendar repeats every 400 years, so a schedule
// with no run after this reference has no run at all (`0 0 30 2 *`).
const NEVER_FIRES_REFERENCE = new Date('2000-01-01T00:00:00Z');

export type ScheduleCheck = { ok: true } | { ok: false; message: string; field: 'schedule' | 'timezone' };

type Compiled = { ok: true; cron: Cron } | { ok: false; message: string; field: 'schedule' | 'timezone' };

export function isTimeZone(name: string): boolean {
  if (name.length > MAX_ZONE_LENGTH || !ZONE_NAME.test(name)) return false;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

function compile(expr: string, timezone: string | undefined): Compiled {
  if (expr.length > MAX_SCHEDULE_LENGTH) return { ok: false, field: 'schedule', message: `a schedule is at most ${MAX_SCHEDULE_LENGTH} characters` };
  const pattern = expr.trim();
  if (pattern.startsWith('@')) {
    if (!NICKNAMES.has(pattern)) return { ok: false, field: 'schedule', message: `unsupported nickname (use 5 fields, or one of ${[...NICKNAMES].join(', ')})` };
  } else {
    const fields = pattern.split(/\s+/);
    if (fields.length !== 5 || pattern === '') {
      return { ok: false, field: 'schedule', message: 'a schedule has exactly 5 fields: minute hour day-of-month month day-of-week (no seconds or years)' };
    }
    if (!fields.every((f) => FIELD.test(f))) return { ok: false, field: 'schedule', message: 'a schedule field contains a character cron does not use' };
  }
  const zone = timezone ?? DEFAULT_TIMEZONE;
  if (!isTimeZone(zone)) return { ok: false, field: 'timezone', message: 'not an IANA time zone name (e.g. Europe/Berlin or UTC)' };
  let cron: Cron;
  try {
    // The zone is always passed: without one croner would use the server's local time.
    cron = new Cron(pattern, { paused: true, mode: '5-part', timezone: zone });
  } catch (error) {
    const message = error instanceof Error ? error.message.replace(/^CronPattern:\s*/, '') : 'invalid schedule';
    return { ok: false, field: 'schedule', message: `invalid schedule: ${message}` };
  }
  return { ok: true, cron };
}

function compileOrThrow(expr: string, timezone: string | undefined): Cron {
  const compiled = compile(expr, timezone);
  // Schedules reach the runner only after template validation, so this is a bug, not input.
  if (!compiled.ok) throw new TypeError(`invalid cron ${compiled.field}: ${compiled.message}`);
  return compiled.cron;
}

/**
 * Checks a schedule as a template author wrote it. `field` says which of the trigger's
 * properties is wrong, so the problem can point at it. Seconds are not expressible (5 fields
 * only; croner's 5-part mode pins the second to 0), so nothing fires more than once a minute.
 */
export function parseSchedule(expr: string, timezone?: string): ScheduleCheck {
  const compiled = compile(expr, timezone);
  if (!compiled.ok) return compiled;
  if (compiled.cron.nextRun(NEVER_FIRES_REFERENCE) === null) return { ok: false, field: 'schedule', message: 'the schedule never fires (no such date)' };
  return { ok: true };
}

/**
 * The first scheduled time strictly after `after`, or null when there is none (past year 9999).
 * Throws a TypeError for an invalid schedule or zone.
 */
export function nextFireAfter(expr: string, timezone: string | undefined, after: Date): Date | null {
  const cron = compileOrThrow(expr, timezone);
  return cron.nextRun(after);
}

/**
 * The most recent scheduled time t with max(lastFired, createdAt) < t <= now, or null.
 *
 * A scheduler that was down fires an instance once, for the latest slot it missed, rather than
 * once per missed slot. The search walks back from `now` to the previous slot (croner steps by
 * calendar field, not by minute), so its cost does not grow with the length of the outage: a year
 * of every-minute slots is one step.
 */
export function latestDueAtOrBefore(expr: string, timezone: string | undefined, lastFired: Date | null, now: Date, createdAt: Date): Date | null {
  const cron = compileOrThrow(expr, timezone);
  const floor = Math.max(lastFired?.getTime() ?? Number.NEGATIVE_INFINITY, createdAt.getTime());
  if (!(now.getTime() > floor)) return null;
  // previousRuns answers runs strictly before its reference, except that a run earlier in the same
  // second counts; one millisecond later makes a slot exactly at `now` count whatever `now`'s
  // milliseconds are.
  const [latest] = cron.previousRuns(1, new Date(now.getTime() + 1));
  if (latest === undefined || latest.getTime() > now.getTime() || latest.getTime() <= floor) return null;
  return latest;
}
