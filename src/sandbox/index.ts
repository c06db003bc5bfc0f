export { createSandbox, HostCallError, type HostFunction, type RunRequest, type Sandbox, type SandboxOptions, type SandboxStats } from './sandbox.js';
export { defaultLimits, type SandboxLimits } from './limits.js';
export type { CompileError, CompileResult, Language } from './compile.js';
export type { RunResult, SandboxErrorCode, SandboxFailure } from './types.js';
