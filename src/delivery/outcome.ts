/**
 * How one attempt ended, as a sum type: the receiver took it (2xx), told us to stop (410 Gone),
 * or it failed (any other answer, or no answer). What follows from an outcome — the delivery's
 * next state and its retry time — is pure arithmetic here, so the recorder can compute a whole
 * batch before one statement writes it.
 */
import { nextAttemptDelayMs, retryAfterMs } from './schedule.js';

interface Timing {
  readonly startedAt: Date;
  readonly durationMs: number;
}

export type AttemptOutcome =
  | (Timing & { readonly kind: 'success'; readonly status: number; readonly body: Buffer })
  | (Timing & { readonly kind: 'gone'; readonly status: 410; readonly body: Buffer })
  | (Timing & { readonly kind: 'failure'; readonly status: number; readonly body: Buffer; readonly retryAfter: string | string[] | undefined })
  | (Timing & { readonly kind: 'failure'; readonly error: string });

/** The receiver's answer as an outcome. */
export function answered(status: number, body: Buffer, retryAfter: string | string[] | undefined, timing: Timing): AttemptOutcome {
  if (status >= 200 && status < 300) return { kind: 'success', status, body, ...timing };
  if (status === 410) return { kind: 'gone', status, body, ...timing };
  return { kind: 'failure', status, body, retryAfter, ...timing };
}

/** How an attempt ended, as `/metrics` counts it: the receiver's status class, or no answer. */
export type AttemptOutcomeClass = '2xx' | '3xx' | '4xx' | '5xx' | 'timeout' | 'error';

export function outcomeClass(outcome: AttemptOutcome): AttemptOutcomeClass {
  if ('status' in outcome) {
    const hundreds = Math.floor(outcome.status / 100);
    // Below 200 cannot reach here as a final answer; above 5xx is counted with the server errors.
    return hundreds <= 2 ? '2xx' : hundreds === 3 ? '3xx' : hundreds === 4 ? '4xx' : '5xx';
  }
  return outcome.error === 'egress_timeout' ? 'timeout' : 'error';
}

export const statusOf = (outcome: AttemptOutcome): number | null => ('status' in outcome ? outcome.status : null);
export const errorOf = (outcome: AttemptOutcome): string | null => ('error' in outcome ? outcome.error : null);
export const bodyOf = (outcome: AttemptOutcome): Buffer | undefined => ('body' in outcome ? outcome.body : undefined);

export interface Transition {
  readonly status: 'delivered' | 'retrying' | 'failed';
  /** `attempt_count` after this attempt: attempts in this round (a manual retry starts a new one). */
  readonly attempt: number;
  readonly nextAttemptAt: Date;
}

/** The delivery's next state after attempt number `attemptCount + 1` ended with `outcome`. */
export function transition(attemptCount: number, outcome: AttemptOutcome, schedule: readonly number[], now: Date, random: number): Transition {
  const attempt = attemptCount + 1;
  if (outcome.kind === 'success') return { status: 'delivered', attempt, nextAttemptAt: now };
  if (outcome.kind === 'gone') return { status: 'failed', attempt, nextAttemptAt: now };
  const asked = 'retryAfter' in outcome ? retryAfterMs(outcome.retryAfter, now) : undefined;
  const delay = nextAttemptDelayMs(schedule, attempt, random, asked);
  return delay === undefined ? { status: 'failed', attempt, nextAttemptAt: now } : { status: 'retrying', attempt, nextAttemptAt: new Date(now.getTime() + delay) };
}
