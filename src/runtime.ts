import type { Runtime } from './ids.js';
import { secureRandomBytes } from './random.js';

/** The real clock and random source; tests pass their own. */
export const systemRuntime: Runtime = Object.freeze({
  now: () => new Date(),
  randomBytes: secureRandomBytes,
});
