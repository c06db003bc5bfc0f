/**
 * The one parser for untrusted JSON (request bodies, signed inbound bodies), and the text rule
 * for everything else a request carries (query strings, path parameters, form fields).
 *
 * JSON.parse accepts things Bulkhead cannot carry faithfully or safely, so one pass over the raw
 * text refuses them before it runs:
 *  - nesting deeper than `MAX_JSON_DEPTH` (`json_too_deep`): deep values overflow the stack of
 *    every recursive walk after parsing (canonical JSON, filters, serialisers);
 *  - `\u0000` and unpaired surrogates, escaped or raw, in any string or key (`text_invalid`):
 *    PostgreSQL text and jsonb refuse NUL, jsonb refuses lone surrogates, and neither is text;
 *  - number literals a double cannot hold (`number_out_of_range`): an integer literal beyond
 *    ±(2^53−1) (it would come back as another integer), a literal that overflows to ±Infinity
 *    (stored as null), a non-zero literal that underflows to 0.
 * Every refusal names the offending value with a JSON pointer. Prototype poisoning (`__proto__`,
 * `constructor.prototype`) is refused as Fastify's own parser does, with secure-json-parse.
 */
import secureJson from 'secure-json-parse';
import { BulkheadError } from '../errors.js';

/** Containers (objects and arrays) may nest this deep; a scalar at the top is depth 0. */
export const MAX_JSON_DEPTH = 64;

export type JsonRefusal = 'json_too_deep' | 'text_invalid' | 'number_out_of_range' | 'malformed_json';
export type TextLocation = 'body' | 'query' | 'params';

const MESSAGES: Record<Exclude<JsonRefusal, 'malformed_json'>, string> = {
  json_too_deep: `JSON nests deeper than ${String(MAX_JSON_DEPTH)} levels`,
  text_invalid: 'text may not contain NUL (U+0000) or unpaired surrogates',
  number_out_of_range: 'a number cannot be carried exactly: integers must be within ±(2^53−1) (send larger ones as strings), and no number may overflow or underflow a double',
};

const refuse = (code: Exclude<JsonRefusal, 'malformed_json'>, location: TextLocation, pointer: string): BulkheadError =>
  new BulkheadError(code, `${location} ${pointer || '/'}: ${MESSAGES[code]}`, { details: { location, pointer } });

interface Problem {
  readonly code: Exclude<JsonRefusal, 'malformed_json'>;
  /** Where in the text the offending token starts. */
  readonly at: number;
}

function hex4(text: string, at: number): number {
  let unit = 0;
  for (let k = at; k < at + 4; k++) {
    const c = text.charCodeAt(k);
    const digit = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x41 && c <= 0x46 ? c - 0x37 : c >= 0x61 && c <= 0x66 ? c - 0x57 : -1;
    if (digit === -1) return -1;
    unit = unit * 16 + digit;
  }
  return unit;
}

const isHigh = (unit: number) => unit >= 0xd800 && unit <= 0xdbff;
const isLow = (unit: number) => unit >= 0xdc00 && unit <= 0xdfff;

/** Scans one string from its opening quote; returns the index after it, or a problem. */
function scanString(text: string, open: number): number | Problem {
  const n = text.length;
  let j = open + 1;
  while (j < n) {
    const c = text.charCodeAt(j);
    if (c === 0x22) return j + 1;
    if (c === 0x5c) {
      if (text.charCodeAt(j + 1) !== 0x75) {
        j += 2;
        continue;
      }
      const unit = hex4(text, j + 2);
      if (unit === 0) return { code: 'text_invalid', at: j };
      if (isHigh(unit)) {
        if (text.charCodeAt(j + 6) === 0x5c && text.charCodeAt(j + 7) === 0x75 && isLow(hex4(text, j + 8))) {
          j += 12;
          continue;
        }
        return { code: 'text_invalid', at: j };
      }
      if (isLow(unit)) return { code: 'text_invalid', at: j };
      j += 6;
      continue;
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      // A raw surrogate: UTF-8 decoding never yields an unpaired one, but a string handed in might.
      if (isHigh(c) && isLow(text.charCodeAt(j + 1))) {
        j += 2;
        continue;
      }
      return { code: 'text_invalid', at: j };
    }
    j++;
  }
  return n; // unterminated: JSON.parse refuses it
}

const isNumberChar = (c: number) => (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2b || c === 0x2e || c === 0x65 || c === 0x45;

/** Scans one number literal; returns the index after it, or a problem. */
function scanNumber(text: string, start: number): number | Problem {
  let end = start;
  let plain = true;
  for (let c = text.charCodeAt(end); isNumberChar(c); c = text.charCodeAt(++end)) {
    if (c === 0x65 || c === 0x45) plain = false;
  }
  // Up to 15 characters without an exponent always fit; only other literals need a closer look.
  if (plain && end - start <= 15) return end;
  const literal = text.slice(start, end);
  const value = Number(literal);
  if (Number.isNaN(value)) return end; // not a JSON number: JSON.parse refuses it
  const exponent = literal.search(/[eE]/);
  if (exponent === -1 && !literal.includes('.')) return Math.abs(value) > Number.MAX_SAFE_INTEGER ? { code: 'number_out_of_range', at: start } : end;
  if (value === Infinity || value === -Infinity) return { code: 'number_out_of_range', at: start };
  const mantissa = exponent === -1 ? literal : literal.slice(0, exponent);
  if (value === 0 && /[1-9]/.test(mantissa)) return { code: 'number_out_of_range', at: start };
  return end;
}

const ESCAPE_OR_SURROGATE = /[\\\ud800-\udfff]/;

/** The first problem in a JSON text, or undefined. Linear, no allocation per value. */
export function scanJson(text: string, maxDepth = MAX_JSON_DEPTH): Problem | undefined {
  let depth = 0;
  let i = 0;
  const n = text.length;
  // Most bodies have no escape and no surrogate at all: their strings end at the next quote.
  const plainStrings = !ESCAPE_OR_SURROGATE.test(text);
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      const next = plainStrings ? text.indexOf('"', i + 1) + 1 || n : scanString(text, i);
      if (typeof next !== 'number') return next;
      i = next;
      continue;
    }
    if (c === 0x7b || c === 0x5b) {
      if (++depth > maxDepth) return { code: 'json_too_deep', at: i };
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      const next = scanNumber(text, i);
      if (typeof next !== 'number') return next;
      i = next;
      continue;
    }
    i++;
  }
  return undefined;
}

/** The index after the closing quote of the string opening at `open` (problems or not). */
function stringEnd(text: string, open: number): number {
  const quoteOrEscape = /["\\]/g;
  quoteOrEscape.lastIndex = open + 1;
  for (let stop = quoteOrEscape.exec(text); stop !== null; stop = quoteOrEscape.exec(text)) {
    if (stop[0] === '"') return stop.index + 1;
    quoteOrEscape.lastIndex = stop.index + 2;
  }
  return text.length;
}

const escapePointer = (part: string | number) => `/${String(part).replaceAll('~', '~0').replaceAll('/', '~1')}`;

function decodeKey(raw: string): string {
  try {
    const key = JSON.parse(raw) as unknown;
    return typeof key === 'string' ? key : raw;
  } catch {
    return raw.slice(1, -1);
  }
}

/**
 * The JSON pointer of the value (or member) whose text contains position `at`. Only run once a
 * problem is found, so it may be slower than the scan; it tolerates text that is not JSON.
 */
export function pointerAt(text: string, at: number): string {
  const path: (string | number)[] = [];
  const kinds: ('object' | 'array')[] = [];
  let expectingKey = false;
  let i = 0;
  while (i < at && i < text.length) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      const close = stringEnd(text, i);
      const isKey = kinds.at(-1) === 'object' && expectingKey;
      if (isKey) {
        path[path.length - 1] = decodeKey(text.slice(i, close));
        expectingKey = false;
      }
      if (close > at) break;
      i = close;
      continue;
    }
    if (c === 0x7b) {
      kinds.push('object');
      path.push('');
      expectingKey = true;
    } else if (c === 0x5b) {
      kinds.push('array');
      path.push(0);
    } else if (c === 0x7d || c === 0x5d) {
      kinds.pop();
      path.pop();
      expectingKey = false;
    } else if (c === 0x2c) {
      const last = path.length - 1;
      if (kinds.at(-1) === 'array') path[last] = (path[last] as number) + 1;
      else expectingKey = true;
    }
    i++;
  }
  return path.map(escapePointer).join('');
}

/**
 * Parses untrusted JSON text, or throws a `BulkheadError` with one of the `JsonRefusal` codes,
 * never anything else.
 */
export function parseJson(text: string, options: { location?: TextLocation; maxDepth?: number } = {}): unknown {
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const location = options.location ?? 'body';
  const problem = scanJson(body, options.maxDepth ?? MAX_JSON_DEPTH);
  if (problem !== undefined) throw refuse(problem.code, location, pointerAt(body, problem.at));
  try {
    return secureJson.parse(body, undefined, { protoAction: 'error', constructorAction: 'error' }) as unknown;
  } catch (error) {
    const poisoned = error instanceof SyntaxError && error.message.includes('forbidden prototype property');
    throw new BulkheadError('malformed_json', poisoned ? 'the request body may not set __proto__ or constructor.prototype' : 'the request body is not valid JSON', { cause: error });
  }
}

/** Whether a string is text Bulkhead can store: no NUL, no unpaired surrogate. */
export function isText(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0) return false;
    if (c >= 0xd800 && c <= 0xdfff) {
      if (!isHigh(c) || !isLow(value.charCodeAt(i + 1))) return false;
      i++;
    }
  }
  return true;
}

/**
 * Throws `text_invalid` with the pointer of the first string (or key) in `value` that is not text.
 * For values that did not come through `parseJson`: query strings, path parameters, form fields.
 * Iterative, so a deep value cannot overflow it.
 */
export function assertText(value: unknown, location: TextLocation): void {
  const stack: { value: unknown; pointer: string }[] = [{ value, pointer: '' }];
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    if (typeof item.value === 'string') {
      if (!isText(item.value)) throw refuse('text_invalid', location, item.pointer);
    } else if (Array.isArray(item.value)) {
      for (const [index, element] of (item.value as unknown[]).entries()) stack.push({ value: element, pointer: item.pointer + escapePointer(index) });
    } else if (item.value !== null && typeof item.value === 'object') {
      for (const [key, element] of Object.entries(item.value)) {
        const pointer = item.pointer + escapePointer(key);
        if (!isText(key)) throw refuse('text_invalid', location, pointer);
        stack.push({ value: element, pointer });
      }
    }
  }
}
