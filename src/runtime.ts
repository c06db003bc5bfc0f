import { randomBytes } from 'node:crypto';
import type { Runtime } from './ids.js';

/** The real clock and random source; tests pass their own. */
export const systemRuntime: Runtime = Object.freeze({
  now: () => new Date(),
  randomBytes: (size: number) => randomBytes(size),
});
