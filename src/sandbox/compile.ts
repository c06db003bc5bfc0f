/**
 * Save-time checking of tenant code: TypeScript is reduced to JavaScript by removing its types
 * (sucrase, which keeps line numbers), then the JavaScript is parsed by the same QuickJS that
 * will run it, without running it. Syntax errors come back with a 1-based line and column.
 *
 * Tenant code is a script, not a module (there is no module loader), but `export function f`,
 * `export async function f` and `export default function f` at top level are accepted: the export
 * keywords are blanked out (same length, so positions stay right) and `f` becomes a global
 * function like any other declaration.
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
      const parse = (text: string): { name: string; message: string; line: number; column: number } | undefined => {
        const result = context.evalCode(text, 'transform.js', { compileOnly: true });
        if (!result.error) {
          result.value.dispose();
          return undefined;
        }
        const read = (key: string): string => {
          const prop = context.getProp(result.error, key);
          const value = context.typeof(prop) === 'string' ? context.getString(prop) : '';
          prop.dispose();
          return value;
        };
        const error = { name: read('name'), message: read('message'), stack: read('stack') };
        result.error.dispose();
        const at = /transform\.js:(\d+):(\d+)/u.exec(error.stack);
        return { name: error.name, message: error.message, line: Number(at?.[1] ?? 1), column: Number(at?.[2] ?? 1) };
      };
      for (let exports = 0; ; exports++) {
        const error = parse(code);
        if (error === undefined) return { ok: true, code };
        const { name, message, line, column } = error;
        if (name === 'InternalError' && message === 'stack overflow') return fail('the code is nested too deeply', 1, 1);
        if (name === 'InternalError' && message === 'out of memory') return fail('the code is too large to parse', 1, 1);
        if (message === 'unsupported keyword: export' && exports < MAX_EXPORTS) {
          const stripped = stripExport(code, line, column, (prefix) => parse(prefix) === undefined);
          if (typeof stripped === 'string') {
            code = stripped;
            continue;
          }
          if (stripped !== undefined) return fail(stripped.message, line, column);
        }
        return fail(`${name === '' ? 'SyntaxError' : name}: ${message}`, line, column);
      }
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

const MAX_EXPORTS = 100;
/** `export` [`default`] before a function declaration: what is blanked out. */
const EXPORT_FUNCTION = /^export\s+(?:default\s+)?(?=(?:async[ \t]+)?function\b)/u;

/**
 * Blanks out the `export` (and `default`) keywords of the export the parser stopped at, when it
 * exports a named function declaration at top level. Returns the new code, a failure to report,
 * or undefined to report the parser's own error. `topLevel(prefix)` tells whether the code
 * before the keyword is a complete script, i.e. the keyword is not inside a function or block.
 */
function stripExport(code: string, line: number, column: number, topLevel: (prefix: string) => boolean): string | { message: string } | undefined {
  let offset = 0;
  for (let l = 1; l < line; l++) {
    offset = code.indexOf('\n', offset) + 1;
    if (offset === 0) return undefined;
  }
  offset += column - 1;
  const keywords = EXPORT_FUNCTION.exec(code.slice(offset, offset + 200))?.[0];
  if (keywords === undefined) {
    return code.startsWith('export', offset) ? { message: 'only function declarations can be exported (export function transform…); other exports are not supported' } : undefined;
  }
  if (/^(?:async[ \t]+)?function\s*\*?\s*\(/u.test(code.slice(offset + keywords.length, offset + keywords.length + 200))) {
    return { message: 'an exported function needs a name: export default function transform(event, ctx) { … }' };
  }
  if (!topLevel(code.slice(0, offset))) return undefined;
  return code.slice(0, offset) + keywords.replace(/[^\n]/gu, ' ') + code.slice(offset + keywords.length);
}

function fail(message: string, line: number, column: number): CompileResult {
  return { ok: false, error: { message, line, column } };
}
