import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createCompiler } from './compile.js';
import { loadQuickJS } from './engine.js';

const compile = createCompiler(loadQuickJS, { maxSourceBytes: 64 * 1024 });

describe('compile', () => {
  it('accepts JavaScript and returns it unchanged', async () => {
    const source = 'function transform(event) { return event; }';
    expect(await compile(source, 'javascript')).toEqual({ ok: true, code: source });
  });

  it('reports a JavaScript syntax error with its line and column', async () => {
    expect(await compile('let a = 1;\n  let x = ;', 'javascript')).toEqual({ ok: false, error: { message: "SyntaxError: unexpected token in expression: ';'", line: 2, column: 11 } });
  });

  it('strips TypeScript types, keeping line numbers', async () => {
    const source = 'interface Event { n: number }\ntype Out = { doubled: number };\nfunction transform(event: Event, ctx: unknown): Out {\n  return { doubled: (event as Event).n * 2 } satisfies Out;\n}';
    const result = await compile(source, 'typescript');
    expect(result.ok).toBe(true);
    if (result.ok) {
      expect(result.code).not.toMatch(/interface|: number|satisfies/u);
      expect(result.code.split('\n')[2]).toBe('function transform(event, ctx) {');
    }
  });

  it('reports a TypeScript syntax error with its line and column', async () => {
    expect(await compile('let a: number = 1;\nfunction f(x: string {\n}', 'typescript')).toEqual({ ok: false, error: { message: 'Unexpected token, expected ","', line: 2, column: 22 } });
  });

  it('rejects module syntax: tenant code is a script that defines transform', async () => {
    const result = await compile("import fs from 'node:fs';\nfunction transform() {}", 'javascript');
    expect(result).toMatchObject({ ok: false, error: { line: 1 } });
  });

  it('accepts exported top-level function declarations by blanking the export keywords, keeping positions', async () => {
    const source = 'const k = 1;\nexport default async function transform(e) {\n  return helper(e) + k;\n}\nexport function helper(e) { return e.n; }';
    const result = await compile(source, 'javascript');
    expect(result).toEqual({ ok: true, code: 'const k = 1;\n               async function transform(e) {\n  return helper(e) + k;\n}\n       function helper(e) { return e.n; }' });
    const typed = await compile('export function transform(e: { n: number }): number {\n  return e.n;\n}', 'typescript');
    expect(typed).toMatchObject({ ok: true, code: expect.stringMatching(/^ {7}function transform\(e\)/u) as unknown });
  });

  it('still refuses other exports, anonymous default exports and exports that are not at top level', async () => {
    expect(await compile('function transform() {}\nexport const x = 1;', 'javascript')).toMatchObject({ ok: false, error: { line: 2, column: 1, message: expect.stringMatching(/only function declarations/u) as unknown } });
    expect(await compile('export default function (e) { return e; }', 'javascript')).toMatchObject({ ok: false, error: { line: 1, message: expect.stringMatching(/needs a name/u) as unknown } });
    expect(await compile('function transform() {\n  export function inner() {}\n}', 'javascript')).toMatchObject({ ok: false, error: { line: 2, column: 3 } });
    expect(await compile('const s = "export function f() {}";\nexport { s };', 'javascript')).toMatchObject({ ok: false, error: { line: 2 } });
  });

  it('refuses oversized and absurdly nested code without crashing', async () => {
    expect(await compile(`// ${'x'.repeat(70 * 1024)}`, 'javascript')).toMatchObject({ ok: false, error: { message: 'the code exceeds 65536 bytes' } });
    const nested = `${'['.repeat(20_000)}${']'.repeat(20_000)}`;
    expect(await compile(nested, 'javascript')).toMatchObject({ ok: false, error: { message: 'the code is nested too deeply' } });
    expect(await compile(nested, 'typescript')).toMatchObject({ ok: false });
    // The compiler still works afterwards.
    expect(await compile('function transform() {}', 'javascript')).toMatchObject({ ok: true });
  });

  it('never throws on arbitrary input and reports positions that exist', async () => {
    await fc.assert(fc.asyncProperty(fc.string({ maxLength: 200 }), fc.constantFrom('javascript' as const, 'typescript' as const), async (source, language) => {
      const result = await compile(source, language);
      if (!result.ok) {
        expect(result.error.line).toBeGreaterThanOrEqual(1);
        expect(result.error.line).toBeLessThanOrEqual(source.split('\n').length + 1);
        expect(result.error.column).toBeGreaterThanOrEqual(1);
      }
    }), { numRuns: 300 });
  });
});
