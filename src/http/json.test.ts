import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BulkheadError } from '../errors.js';
import { assertText, isText, MAX_JSON_DEPTH, parseJson } from './json.js';

const REFUSALS = new Set(['json_too_deep', 'text_invalid', 'number_out_of_range', 'malformed_json']);

/** What parseJson throws, as { code, pointer }; fails the test on anything that is not a typed refusal. */
function refusal(text: string): { code: string; pointer: unknown } | undefined {
  try {
    parseJson(text);
    return undefined;
  } catch (error) {
    if (!(error instanceof BulkheadError) || !REFUSALS.has(error.code)) throw new Error(`untyped failure: ${String(error)}`, { cause: error });
    return { code: error.code, pointer: error.details?.['pointer'] };
  }
}

// The reference rules, written independently of the scanner.
const wellFormed = (s: string) => (s as unknown as { isWellFormed(): boolean }).isWellFormed();
const textOk = (s: string) => !s.includes('\u0000') && wellFormed(s);
const numberOk = (n: number) => {
  // NaN and ±Infinity are written as null.
  if (!Number.isFinite(n)) return true;
  const literal = JSON.stringify(n);
  return /[.eE]/.test(literal) || Math.abs(n) <= Number.MAX_SAFE_INTEGER;
};
function depthOf(value: unknown): number {
  if (value === null || typeof value !== 'object') return 0;
  const children = Array.isArray(value) ? (value as unknown[]) : Object.values(value);
  return 1 + Math.max(0, ...children.map(depthOf));
}
function everyLeaf(value: unknown, ok: { text: (s: string) => boolean; number: (n: number) => boolean }): boolean {
  if (typeof value === 'string') return ok.text(value);
  if (typeof value === 'number') return ok.number(value);
  if (Array.isArray(value)) return value.every((v) => everyLeaf(v, ok));
  if (value !== null && typeof value === 'object') return Object.entries(value).every(([k, v]) => ok.text(k) && everyLeaf(v, ok));
  return true;
}

// Strings that sometimes hold NUL and unpaired halves of surrogate pairs.
const hostileUnit = fc.oneof(
  { weight: 1, arbitrary: fc.constantFrom('\u0000', '\ud800', '\udbff', '\udc00', '\udfff') },
  { weight: 8, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
);
const poisonKeys = (text: string) => /"(__proto__|constructor)"\s*:/.test(text);

describe('the guarded JSON parser', () => {
  it('returns exactly what JSON.parse returns for JSON within the limits', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 8, stringUnit: 'binary' }), (value) => {
        const text = JSON.stringify(value);
        fc.pre(!poisonKeys(text) && everyLeaf(value, { text: textOk, number: numberOk }));
        expect(parseJson(text)).toStrictEqual(JSON.parse(text));
      }),
      { numRuns: 500 },
    );
  });

  it('refuses exactly the values that break the text or number rule, and never throws anything untyped', () => {
    const value = fc.jsonValue({ maxDepth: 6, stringUnit: hostileUnit });
    const number = fc.oneof(fc.double(), fc.integer(), fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map(Number));
    fc.assert(
      fc.property(value, fc.array(number, { maxLength: 3 }), (v, numbers) => {
        const whole = numbers.length === 0 ? v : [v, ...numbers];
        const text = JSON.stringify(whole);
        fc.pre(!poisonKeys(text));
        const broken = new Set<string>();
        if (!everyLeaf(whole, { text: textOk, number: () => true })) broken.add('text_invalid');
        if (!everyLeaf(whole, { text: () => true, number: numberOk })) broken.add('number_out_of_range');
        const got = refusal(text);
        if (broken.size === 0) {
          expect(got).toBeUndefined();
          expect(parseJson(text)).toStrictEqual(JSON.parse(text));
        } else {
          // Both rules can be broken in one value; the first offence in the text is reported.
          expect(broken).toContain(got?.code);
          expect(typeof got?.pointer).toBe('string');
        }
      }),
      { numRuns: 500 },
    );
  });

  it('refuses nesting deeper than the limit and accepts it up to the limit', () => {
    const nest = (depth: number, kinds: boolean[]) => {
      let text = '1';
      for (let i = 0; i < depth; i++) text = kinds[i % kinds.length] ? `[${text}]` : `{"k":${text}}`;
      return text;
    };
    fc.assert(
      fc.property(fc.integer({ min: 1, max: MAX_JSON_DEPTH }), fc.array(fc.boolean(), { minLength: 1, maxLength: 5 }), (depth, kinds) => {
        const text = nest(depth, kinds);
        expect(depthOf(JSON.parse(text))).toBe(depth);
        expect(parseJson(text)).toStrictEqual(JSON.parse(text));
      }),
      { numRuns: 200 },
    );
    fc.assert(
      fc.property(fc.integer({ min: MAX_JSON_DEPTH + 1, max: 20_000 }), fc.array(fc.boolean(), { minLength: 1, maxLength: 5 }), (depth, kinds) => {
        expect(refusal(nest(depth, kinds))?.code).toBe('json_too_deep');
      }),
      { numRuns: 100 },
    );
  });

  it('never throws anything but its typed refusals, whatever the text', () => {
    const jsonish = fc.string({ unit: fc.constantFrom('{', '}', '[', ']', '"', '\\', 'u', '0', '1', 'e', '-', '.', ',', ':', ' ', 'd', '8', 'a', '\u0000', '\ud800') });
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary' }), jsonish), (text) => {
        const got = refusal(text);
        let parses = true;
        try {
          JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
        } catch {
          parses = false;
        }
        if (!parses) expect(got).toBeDefined();
      }),
      { numRuns: 2000 },
    );
  });

  it('names the offending value with a JSON pointer', () => {
    const cases: [string, string, string][] = [
      ['{"a":[1,{"b":"x\\u0000"}]}', 'text_invalid', '/a/1/b'],
      ['{"name":"\\ud800"}', 'text_invalid', '/name'],
      ['{"ok":"\\ud83d\\ude00","bad":"\\uDC00"}', 'text_invalid', '/bad'],
      ['{"a/b~c":"\\u0000"}', 'text_invalid', '/a~1b~0c'],
      ['{"key\\u0000":1}', 'text_invalid', '/key\u0000'],
      ['{"payload":{"n":1e309}}', 'number_out_of_range', '/payload/n'],
      ['[1,2,-1e400]', 'number_out_of_range', '/2'],
      ['{"id":18446744073709551616}', 'number_out_of_range', '/id'],
      ['{"id":9007199254740992}', 'number_out_of_range', '/id'],
      ['{"x":1e-400}', 'number_out_of_range', '/x'],
      [`{"a":${'['.repeat(MAX_JSON_DEPTH)}${']'.repeat(MAX_JSON_DEPTH)}}`, 'json_too_deep', `/a${'/0'.repeat(MAX_JSON_DEPTH - 1)}`],
    ];
    for (const [text, code, pointer] of cases) expect(refusal(text), text).toEqual({ code, pointer });
  });

  it('accepts the numbers a double carries and what JSON.parse would, BOM included', () => {
    for (const text of ['9007199254740991', '-9007199254740991', '1e21', '1.5e300', '-0', '0e-400', '0.000', '123456789012345.678', '1E+2', '\ufeff{"a":1}', '"\\ud83d\\ude00"']) {
      expect(parseJson(text), text).toStrictEqual(JSON.parse(text.replace(/^\ufeff/, '')));
    }
  });

  it('keeps Fastify\'s prototype-poisoning refusals', () => {
    expect(refusal('{"__proto__":{"admin":true}}')?.code).toBe('malformed_json');
    expect(refusal('{"\\u005f_proto__":{"admin":true}}')?.code).toBe('malformed_json');
    expect(refusal('{"constructor":{"prototype":{"admin":true}}}')?.code).toBe('malformed_json');
    expect(parseJson('{"constructor":"fine"}')).toEqual({ constructor: 'fine' });
  });
});

describe('the text rule for query strings, parameters and form fields', () => {
  it('agrees with the well-formed-and-no-NUL reference', () => {
    fc.assert(
      fc.property(fc.string({ unit: hostileUnit }), (s) => {
        expect(isText(s)).toBe(textOk(s));
      }),
      { numRuns: 2000 },
    );
  });

  it('names the first offending string or key', () => {
    const thrown = (value: unknown) => {
      try {
        assertText(value, 'query');
        return undefined;
      } catch (error) {
        return error instanceof BulkheadError ? { code: error.code, ...error.details } : error;
      }
    };
    expect(thrown({ eventId: 'evt\u0000' })).toEqual({ code: 'text_invalid', location: 'query', pointer: '/eventId' });
    expect(thrown({ tags: ['ok', '\udc00'] })).toEqual({ code: 'text_invalid', location: 'query', pointer: '/tags/1' });
    expect(thrown({ 'k\u0000': 'v' })).toEqual({ code: 'text_invalid', location: 'query', pointer: '/k\u0000' });
    expect(thrown({ fine: 'ünïcödé 😀', n: 3 })).toBeUndefined();
  });
});
