/**
 * Per-execution limits of the sandbox. Every limit is enforced inside the worker (QuickJS
 * runtime limits and the interrupt handler) and, for wall time, again on the main thread by the
 * watchdog, which terminates a worker that stopped answering.
 */
export interface SandboxLimits {
  /** Heap of one QuickJS runtime (bytes); exceeding it fails the execution with `memory`. */
  readonly memoryBytes: number;
  /** Guest stack (bytes); deeper recursion fails with `stack_overflow`. Capped at 1 MiB (see maxStackCap). */
  readonly stackBytes: number;
  /** Time spent running guest code (ms), measured around every entry into the interpreter. */
  readonly cpuTimeMs: number;
  /** Whole execution, including time awaiting host calls (ms). */
  readonly wallTimeMs: number;
  /** JSON bytes of the event passed in (config counts separately, same bound). */
  readonly inputBytes: number;
  /** JSON bytes of the returned value. */
  readonly outputBytes: number;
  /** Host (capability) calls allowed per execution. */
  readonly hostCalls: number;
  /** JSON bytes of one host call's argument, and of one host call's answer. */
  readonly hostCallBytes: number;
  /** One `log` line (bytes; longer lines are truncated). */
  readonly logLineBytes: number;
  /** All log lines of one execution (bytes; later lines are dropped and a marker is written). */
  readonly logTotalBytes: number;
}

export const defaultLimits: SandboxLimits = Object.freeze({
  memoryBytes: 16 * 1024 * 1024,
  stackBytes: 256 * 1024,
  cpuTimeMs: 1_000,
  wallTimeMs: 10_000,
  inputBytes: 1024 * 1024,
  outputBytes: 1024 * 1024,
  hostCalls: 50,
  hostCallBytes: 1024 * 1024,
  logLineBytes: 1024,
  logTotalBytes: 16 * 1024,
});

/**
 * QuickJS's C stack lives in WASM linear memory but every interpreter frame also uses the
 * worker's native stack; above roughly 512 KiB the native stack overflows first, which would
 * abort the WASM instance instead of raising a catchable `stack overflow` in the guest.
 */
export const maxStackCap = 1024 * 1024;

const bounds: Record<keyof SandboxLimits, readonly [number, number]> = {
  memoryBytes: [1024 * 1024, 1024 * 1024 * 1024],
  stackBytes: [16 * 1024, maxStackCap],
  cpuTimeMs: [1, 10 * 60_000],
  wallTimeMs: [1, 60 * 60_000],
  inputBytes: [2, 256 * 1024 * 1024],
  outputBytes: [4, 256 * 1024 * 1024],
  hostCalls: [0, 100_000],
  hostCallBytes: [4, 256 * 1024 * 1024],
  logLineBytes: [16, 1024 * 1024],
  logTotalBytes: [0, 64 * 1024 * 1024],
};

/** Merges overrides onto a base and rejects values outside sane bounds (a programming error). */
export function resolveLimits(base: SandboxLimits, overrides?: Partial<SandboxLimits>): SandboxLimits {
  const merged: Record<string, number> = { ...base };
  for (const [key, value] of Object.entries(overrides ?? {})) {
    if (!(key in bounds)) throw new TypeError(`unknown sandbox limit ${key}`);
    merged[key] = value;
  }
  for (const [key, [min, max]] of Object.entries(bounds)) {
    const value = merged[key] ?? Number.NaN;
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new RangeError(`sandbox limit ${key} must be an integer in [${min}, ${max}], got ${String(value)}`);
    }
  }
  return Object.freeze(merged as unknown as SandboxLimits);
}
