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

/** The most deliveries to this destination in flight at once, across workers. */
export function inFlightCap(state: Pick<FlowState, 'maxInFlight' | 'consecutiveFailures'>, policy: FlowPolicy): number {
  // A circuit past its cool-down is half-open: one probe in flight at a time until one succeeds.
  return state.consecutiveFailures >= policy.circuitFailures ? 1 : state.maxInFlight;
}

/** What the rate limit and `want` allow, before the in-flight cap (the claim subtracts what is in flight in SQL). */
export function allowanceByRate(state: Pick<FlowState, 'ratePerSecond' | 'tokens' | 'refilledAt'>, now: Date, want: number): number {
  return Math.max(0, Math.min(want, Math.floor(tokensAt(state, now))));
}

/** How many deliveries to this destination a claim may take now, at most `want`. */
export function allowance(state: FlowState, policy: FlowPolicy, now: Date, want: number): number {
  return Math.max(0, Math.min(allowanceByRate(state, now, want), inFlightCap(state, policy) - state.inFlight));
}

/** How long the circuit stays open after failure number `failures` (at or past the threshold). */
export function cooldownMs(failures: number, policy: FlowPolicy & { readonly circuitCooldownMs: number }): number {
  const doublings = Math.min(5, Math.max(0, failures - policy.circuitFailures));
  return policy.circuitCooldownMs * 2 ** doublings;
}
