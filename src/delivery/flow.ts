/**
 * Flow control for one destination, as pure arithmetic: how many deliveries a claim may take
 * now (in-flight cap, token-bucket rate limit, circuit breaker), and how long an open circuit
 * stays open. The claim applies these while it holds the destination's row lock, so the figures
 * hold across every worker, not per process.
 */

export interface FlowState {
  /** Deliveries per second, or null for no limit. */
  readonly ratePerSecond: number | null;
  /** Tokens left at `refilledAt`; null before the first claim (a full bucket). */
  readonly tokens: number | null;
  readonly refilledAt: Date | null;
  readonly maxInFlight: number;
  readonly inFlight: number;
  readonly consecutiveFailures: number;
}

export interface FlowPolicy {
  readonly circuitFailures: number;
}

/** The bucket holds at most one second of the rate: a pause never turns into a burst larger than that. */
export function tokensAt(state: Pick<FlowState, 'ratePerSecond' | 'tokens' | 'refilledAt'>, now: Date): number {
  const rate = state.ratePerSecond;
  if (rate === null) return Number.POSITIVE_INFINITY;
  if (state.tokens === null || state.refilledAt === null) return rate;
  const elapsed = Math.max(0, now.getTime() - state.refilledAt.getTime()) / 1000;
  return Math.min(rate, state.tokens + elapsed * rate);
}

/** How many deliveries to this destination a claim may take now, at most `want`. */
export function allowance(state: FlowState, policy: FlowPolicy, now: Date, want: number): number {
  // A circuit past its cool-down is half-open: one probe in flight at a time until one succeeds.
  const cap = state.consecutiveFailures >= policy.circuitFailures ? 1 : state.maxInFlight;
  const byCap = cap - state.inFlight;
  const byRate = Math.floor(tokensAt(state, now));
  return Math.max(0, Math.min(want, byCap, byRate));
}

/** How long the circuit stays open after failure number `failures` (at or past the threshold). */
export function cooldownMs(failures: number, policy: FlowPolicy & { readonly circuitCooldownMs: number }): number {
  const doublings = Math.min(5, Math.max(0, failures - policy.circuitFailures));
  return policy.circuitCooldownMs * 2 ** doublings;
}
