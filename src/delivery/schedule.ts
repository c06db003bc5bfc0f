/**
 * The retry schedule (SPEC §4): the first attempt at once, then retries after 5 s, 5 min, 30 min,
 * 2 h, 5 h, 10 h and 10 h — 8 attempts in all — each delay with ±10% jitter so a burst of failures
 * does not come back as a burst. `Retry-After` from the receiver is honoured when it asks for
 * longer than the schedule, up to a day.
 */
export const DEFAULT_RETRY_SCHEDULE_SECONDS: readonly number[] = [5, 300, 1800, 7200, 18000, 36000, 36000];
const MAX_RETRY_AFTER_MS = 86_400_000;

export function parseRetrySchedule(raw: string): readonly number[] {
  const delays = raw.split(',').map((part) => Number(part.trim()));
  if (delays.length === 0 || delays.some((d) => !Number.isFinite(d) || d < 0 || d > 604_800)) {
    throw new Error('must be comma-separated delays in seconds (0 to 604800), e.g. 5,300,1800');
  }
  return Object.freeze(delays);
}

/**
 * When to try again after failed attempt number `attempt` (1-based), or undefined when the
 * schedule is exhausted. `random` is in [0, 1).
 */
export function nextAttemptDelayMs(schedule: readonly number[], attempt: number, random: number, retryAfterMs?: number): number | undefined {
  const base = schedule[attempt - 1];
  if (base === undefined) return undefined;
  const jittered = base * 1000 * (0.9 + 0.2 * random);
  return retryAfterMs !== undefined && retryAfterMs > jittered ? Math.min(retryAfterMs, MAX_RETRY_AFTER_MS) : jittered;
}

/** `Retry-After` as seconds or an HTTP date, in milliseconds from `now`; undefined if absent or unusable. */
export function retryAfterMs(header: string | string[] | undefined, now: Date): number | undefined {
  const raw = Array.isArray(header) ? header[0] : header;
  if (raw === undefined) return undefined;
  const seconds = Number(raw);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const at = Date.parse(raw);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now.getTime());
}
