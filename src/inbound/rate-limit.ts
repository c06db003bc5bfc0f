/**
 * Requests per minute per inbound source, checked before the body is read (a flood against one
 * source URL cannot make us read, verify or count every request). In memory, or in Redis when the
 * app has one, with the same in-memory insurance as the API budgets (src/limits/rate-limit.ts).
 * A separate budget from the API's: a provider's burst never spends the platform's API budget.
 */
import type { Redis } from 'ioredis';
import { type RateLimiterAbstract, RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';

export interface SourceRateLimiter {
  /** 0 when allowed, else the seconds until the source may be called again. */
  consume(sourceId: string, perMinute: number): Promise<number>;
}

export function createSourceRateLimiter(redis?: Redis): SourceRateLimiter {
  const limiters = new Map<number, RateLimiterAbstract>();
  const limiterFor = (points: number): RateLimiterAbstract => {
    let limiter = limiters.get(points);
    if (!limiter) {
      const options = { points, duration: 60, keyPrefix: `bk:rl:inbound:${String(points)}` };
      limiter = redis
        ? new RateLimiterRedis({ ...options, storeClient: redis, rejectIfRedisNotReady: true, insuranceLimiter: new RateLimiterMemory(options) })
        : new RateLimiterMemory(options);
      limiters.set(points, limiter);
    }
    return limiter;
  };
  return {
    async consume(sourceId, perMinute) {
      try {
        await limiterFor(perMinute).consume(sourceId);
        return 0;
      } catch (rejection) {
        if (!(rejection instanceof RateLimiterRes)) throw rejection;
        return Math.max(1, Math.ceil(rejection.msBeforeNext / 1000));
      }
    },
  };
}
