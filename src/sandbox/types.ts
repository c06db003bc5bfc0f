import type { SandboxLimits } from './limits.js';

/** Why an execution failed. A stable contract: callers switch on it, never on the message. */
export type SandboxErrorCode =
  | 'timeout'
  | 'memory'
  | 'stack_overflow'
  | 'output_too_large'
  | 'input_too_large'
  | 'runtime_error'
  | 'crashed'
  | 'too_many_calls'
  | 'capability_denied'
  | 'queue_full';

export interface SandboxFailure {
  readonly code: SandboxErrorCode;
  /** Safe to show to the tenant: built from guest errors and sandbox limits, never from host internals. */
  readonly message: string;
}

export type RunResult =
  | { readonly ok: true; readonly value: unknown; readonly logs: readonly string[]; readonly durationMs: number; readonly calls: number }
  | { readonly ok: false; readonly error: SandboxFailure; readonly logs: readonly string[]; readonly durationMs: number; readonly calls: number };

/** What the worker reports for one execution; the pool adds the host-side duration. */
export type ExecutionOutcome =
  | { readonly ok: true; readonly outputJson: string; readonly logs: readonly string[]; readonly calls: number }
  | { readonly ok: false; readonly error: SandboxFailure; readonly logs: readonly string[]; readonly calls: number };

export interface ExecutionRequest {
  readonly code: string;
  readonly entry: string;
  readonly inputJson: string;
  readonly configJson: string;
  readonly capabilities: readonly string[];
  readonly limits: SandboxLimits;
}

/** The answer to one host call, as it crosses back into the worker. */
export type HostCallAnswer = { readonly ok: true; readonly json: string } | { readonly ok: false; readonly message: string };

/** Messages main → worker. */
export type ToWorker =
  | { readonly type: 'run'; readonly id: number; readonly request: ExecutionRequest }
  | { readonly type: 'answer'; readonly id: number; readonly callId: number; readonly answer: HostCallAnswer };

/** Messages worker → main. */
export type FromWorker =
  | { readonly type: 'ready' }
  | { readonly type: 'call'; readonly id: number; readonly callId: number; readonly name: string; readonly argsJson: string }
  | { readonly type: 'done'; readonly id: number; readonly outcome: ExecutionOutcome; readonly poisoned: boolean };
