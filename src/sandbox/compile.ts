/**
 * Save-time checking of tenant code: TypeScript is reduced to JavaScript by removing its types
 * (sucrase, which keeps line numbers), then the JavaScript is parsed by the same QuickJS that
 * will run it, without running it. Syntax errors come back with a 1-based line and column.
 */
import { transform as sucraseTransform } from 'sucrase';
import type { QuickJSWASMModule } from 'quickjs-emscripten-core';

export type Language = 'javascript' | 'typescript';

export interface CompileError {
  readonly message: string;
  readonly line: number;
  readonly column: number;
}

export type CompileResult = { readonly ok: true; readonly code: string } | { readonly ok: false; readonly error: CompileError };

export interface CompileOptions {
  readonly maxSourceBytes: number;
}

const PARSE_MEMORY_BYTES = 64 * 1024 * 1024;
const PARSE_STACK_BYTES = 128 * 1024;
const PARSE_DEADLINE_MS = 2_000;

/**
 * Returns a compiler over a lazily loaded QuickJS module. A host-level failure in the parser
 * (say, native stack exhausted by absurd nesting) discards that module; the next call loads a
 * fresh one.
 */
export function createCompiler(load: () => Promise<QuickJSWASMModule>, options: CompileOptions) {
  let module: Promise<QuickJSWASMModule> | undefined;

  return async function compile(source: string, language: Language): Promise<CompileResult> {
    if ((language as string) !== 'javascript' && (language as string) !== 'typescript') throw new TypeError(`unsupported language ${language as string}`);
    if (Buffer.byteLength(source) > options.maxSourceBytes) return fail(`the code exceeds ${options.maxSourceBytes} bytes`, 1, 1);
    let code = source;
    if (language === 'typescript') {
      try {
        code = sucraseTransform(source, { transforms: ['typescript'], disableESTransforms: true }).code;
      } catch (error) {
        const loc = (error as { loc?: { line?: unknown; column?: unknown } }).loc;
        const message = error instanceof Error ? error.message.replace(/\s*\(\d+:\d+\)$/u, '') : 'syntax error';
        if (error instanceof RangeError) return fail('the code is nested too deeply', 1, 1);
        return fail(message, typeof loc?.line === 'number' ? loc.line : 1, typeof loc?.column === 'number' ? loc.column : 1);
      }
    }
    module ??= load();
    const quickjs = await module;
    const rt = quickjs.newRuntime();
    let ctx: ReturnType<typeof rt.newContext> | undefined;
    let poisoned = false;
    try {
      rt.setMemoryLimit(PARSE_MEMORY_BYTES);
      rt.setMaxStackSize(PARSE_STACK_BYTES);
      const deadline = performance.now() + PARSE_DEADLINE_MS;
      rt.setInterruptHandler(() => performance.now() > deadline);
      const context = rt.newContext();
      ctx = context;
      const result = context.evalCode(code, 'transform.js', { compileOnly: true });
      if (!result.error) {
        result.value.dispose();
        return { ok: true, code };
      }
      const read = (key: string): string => {
        const prop = context.getProp(result.error, key);
        const text = context.typeof(prop) === 'string' ? context.getString(prop) : '';
        prop.dispose();
        return text;
      };
      const message = read('message');
      const name = read('name');
      const at = /transform\.js:(\d+):(\d+)/u.exec(read('stack'));
      result.error.dispose();
      if (name === 'InternalError' && message === 'stack overflow') return fail('the code is nested too deeply', 1, 1);
      if (name === 'InternalError' && message === 'out of memory') return fail('the code is too large to parse', 1, 1);
      return fail(`${name === '' ? 'SyntaxError' : name}: ${message}`, Number(at?.[1] ?? 1), Number(at?.[2] ?? 1));
    } catch (error) {
      poisoned = true;
      module = undefined;
      if (error instanceof RangeError) return fail('the code is nested too deeply', 1, 1);
      throw error;
    } finally {
      if (!poisoned) {
        ctx?.dispose();
        rt.dispose();
      }
    }
  };
}

function fail(message: string, line: number, column: number): CompileResult {
  return { ok: false, error: { message, line, column } };
}
