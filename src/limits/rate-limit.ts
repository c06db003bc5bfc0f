/**
 * Request budgets per API key, per workspace and per tenant (rate-limiter-flexible). In memory by
 * default; in Redis when REDIS_URL is set, so every API process draws from one budget. If Redis
 * becomes unreachable the limiter falls back to a per-process in-memory budget (the library's
 * insurance limiter) rather than failing open or refusing all traffic.
 */
import type { Redis } from 'ioredis';
import { type RateLimiterAbstract, RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';

export type BudgetScope = 'api_key' | 'workspace' | 'tenant';

export interface RateLimitState {
  readonly limit: number;
  readonly remaining: number;
  readonly resetSeconds: number;
}

export type RateLimitOutcome =
  | { readonly allowed: true; readonly state: RateLimitState }
  | { readonly allowed: false; readonly state: RateLimitState; readonly scope: BudgetScope; readonly retryAfterSeconds: number };

export interface RateLimiter {
  consume(subject: { keyId: string; workspaceId: string; tenantId: string; tenantRequestsPerMinute?: number | undefined }): Promise<RateLimitOutcome>;
}

export interface RateLimitSettings {
  readonly perKeyPerMinute: number;
  readonly perWorkspacePerMinute: number;
  readonly perTenantPerMinute: number;
}

export function createRateLimiter(settings: RateLimitSettings, redis?: Redis): RateLimiter {
  const limiters = new Map<string, RateLimiterAbstract>();
  // One limiter per (scope, budget size): a tenant with its own `requestsPerMinute` gets its own.
  const limiterFor = (scope: BudgetScope, points: number): RateLimiterAbstract => {
    const id = `${scope}:${points}`;
    let limiter = limiters.get(id);
    if (!limiter) {
      const options = { points, duration: 60, keyPrefix: `bk:rl:${id}` };
      limiter = redis
        ? new RateLimiterRedis({ ...options, storeClient: redis, rejectIfRedisNotReady: true, insuranceLimiter: new RateLimiterMemory(options) })
        : new RateLimiterMemory(options);
      limiters.set(id, limiter);
    }
    return limiter;
  };

  const toState = (points: number, res: RateLimiterRes): RateLimitState => ({
    limit: points,
    remaining: Math.max(0, res.remainingPoints),
    resetSeconds: Math.ceil(res.msBeforeNext / 1000),
  });

  return {
    async consume(subject) {
      const budgets: [BudgetScope, number, string][] = [
        ['api_key', settings.perKeyPerMinute, subject.keyId],
        ['workspace', settings.perWorkspacePerMinute, subject.workspaceId],
        ['tenant', subject.tenantRequestsPerMinute ?? settings.perTenantPerMinute, subject.tenantId],
      ];
      let tightest: RateLimitState = { limit: 0, remaining: Number.POSITIVE_INFINITY, resetSeconds: 0 };
      for (const [scope, points, key] of budgets) {
        try {
          const state = toState(points, await limiterFor(scope, points).consume(key));
          if (state.remaining < tightest.remaining) tightest = state;
        } catch (rejection) {
          if (!(rejection instanceof RateLimiterRes)) throw rejection;
          const state = toState(points, rejection);
          return { allowed: false, state, scope, retryAfterSeconds: Math.max(1, state.resetSeconds) };
        }
      }
      return { allowed: true, state: tightest };
    },
  };
}

/**
 * Failed authentications per client address. Keys carry 256 random bits, so guessing is hopeless,
 * but every new guess with a valid checksum costs a database lookup (a repeated one does not:
 * src/identity/unknown-keys.ts), and the admin token deserves the same protection.
 *
 * Failures are throttled, not successes: past the allowance an address's failures are answered
 * 429 instead of 401 for the rest of the window (it learns nothing more from them), while a valid
 * credential from the same address still gets in. Otherwise 60 bad requests a minute from behind
 * one NAT or an untrusted proxy would shut out everyone there.
 */
export interface AuthFailureLimiter {
  /** Counts one failure: 0 while the address is within its allowance, else the seconds it stays refused. */
  recordFailure(ip: string): Promise<number>;
}

export function createAuthFailureLimiter(perMinute: number, redis?: Redis): AuthFailureLimiter {
  const options = { points: perMinute, duration: 60, keyPrefix: `bk:authfail:${perMinute}` };
  const limiter: RateLimiterAbstract = redis
    ? new RateLimiterRedis({ ...options, storeClient: redis, rejectIfRedisNotReady: true, insuranceLimiter: new RateLimiterMemory(options) })
    : new RateLimiterMemory(options);
  return {
    async recordFailure(ip) {
      try {
        await limiter.consume(ip);
        return 0;
      } catch (rejection) {
        // The window is fixed: failures while refused are counted but do not extend it.
        if (!(rejection instanceof RateLimiterRes)) throw rejection;
        return Math.max(1, Math.ceil(rejection.msBeforeNext / 1000));
      }
    },
  };
}
