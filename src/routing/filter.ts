/**
 * The declarative payload filter of a rule: data, never code. A filter is an object whose keys
 * are dot paths into the payload (`customer.country`) or the logical operators `$and`, `$or`,
 * `$not`; a path's value is either a literal (equality) or an object of comparison operators:
 *
 *   $eq $ne          deep equality of JSON values
 *   $in $nin         membership in a list
 *   $gt $gte $lt $lte  numbers with numbers, strings with strings; otherwise false
 *   $exists          true: the path is present (and not undefined); false: it is absent
 *
 * `validateFilter` refuses anything else (unknown operators, too deep, too large) at rule
 * creation, so matching never meets a surprise.
 */
import { isDeepStrictEqual } from 'node:util';

export type Filter = Readonly<Record<string, unknown>>;

const COMPARISONS = new Set(['$eq', '$ne', '$in', '$nin', '$gt', '$gte', '$lt', '$lte', '$exists']);
const MAX_DEPTH = 6;
const MAX_BYTES = 8 * 1024;
const PATH = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Every problem with a filter, or an empty list. */
export function validateFilter(filter: unknown): string[] {
  const problems: string[] = [];
  if (JSON.stringify(filter).length > MAX_BYTES) return [`the filter is larger than ${MAX_BYTES} bytes`];
  const walk = (node: unknown, where: string, depth: number) => {
    if (depth > MAX_DEPTH) {
      problems.push(`${where}: nested deeper than ${MAX_DEPTH}`);
      return;
    }
    if (!isObject(node)) {
      problems.push(`${where}: must be an object`);
      return;
    }
    for (const [key, value] of Object.entries(node)) {
      const at = `${where}.${key}`;
      if (key === '$and' || key === '$or') {
        if (!Array.isArray(value) || value.length === 0) problems.push(`${at}: must be a non-empty list of filters`);
        else value.forEach((v, i) => { walk(v, `${at}[${String(i)}]`, depth + 1); });
      } else if (key === '$not') {
        walk(value, at, depth + 1);
      } else if (key.startsWith('$')) {
        problems.push(`${at}: unknown operator (known: $and, $or, $not, and per path ${[...COMPARISONS].join(', ')})`);
      } else if (!PATH.test(key)) {
        problems.push(`${at}: not a dot path of letters, digits, _ and -`);
      } else if (isObject(value) && Object.keys(value).some((k) => k.startsWith('$'))) {
        for (const [op, operand] of Object.entries(value)) {
          if (!COMPARISONS.has(op)) problems.push(`${at}.${op}: unknown comparison`);
          else if ((op === '$in' || op === '$nin') && !Array.isArray(operand)) problems.push(`${at}.${op}: needs a list`);
          else if (op === '$exists' && typeof operand !== 'boolean') problems.push(`${at}.${op}: needs true or false`);
          else if (['$gt', '$gte', '$lt', '$lte'].includes(op) && typeof operand !== 'number' && typeof operand !== 'string') problems.push(`${at}.${op}: needs a number or a string`);
        }
      }
    }
  };
  walk(filter, 'filter', 0);
  return problems;
}

function lookup(payload: unknown, path: string): { found: boolean; value: unknown } {
  let current: unknown = payload;
  for (const part of path.split('.')) {
    if (!isObject(current) && !Array.isArray(current)) return { found: false, value: undefined };
    // Own properties only: a filter on `__proto__` or `constructor` finds nothing.
    if (!Object.hasOwn(current, part)) return { found: false, value: undefined };
    current = (current as Record<string, unknown>)[part];
  }
  return { found: true, value: current };
}

function compare(op: string, actual: { found: boolean; value: unknown }, operand: unknown): boolean {
  const a = actual.value;
  switch (op) {
    case '$eq':
      return actual.found && isDeepStrictEqual(a, operand);
    case '$ne':
      return !actual.found || !isDeepStrictEqual(a, operand);
    case '$in':
      return actual.found && (operand as unknown[]).some((o) => isDeepStrictEqual(a, o));
    case '$nin':
      return !actual.found || !(operand as unknown[]).some((o) => isDeepStrictEqual(a, o));
    case '$exists':
      return actual.found === operand;
    default: {
      if (typeof a !== typeof operand || (typeof a !== 'number' && typeof a !== 'string')) return false;
      const x = a;
      const y = operand as number | string;
      return op === '$gt' ? x > y : op === '$gte' ? x >= y : op === '$lt' ? x < y : x <= y;
    }
  }
}

/** Whether a payload satisfies a (validated) filter. */
export function matchesFilter(filter: Filter, payload: unknown): boolean {
  return Object.entries(filter).every(([key, value]) => {
    if (key === '$and') return (value as Filter[]).every((f) => matchesFilter(f, payload));
    if (key === '$or') return (value as Filter[]).some((f) => matchesFilter(f, payload));
    if (key === '$not') return !matchesFilter(value as Filter, payload);
    const actual = lookup(payload, key);
    if (isObject(value) && Object.keys(value).some((k) => k.startsWith('$'))) {
      return Object.entries(value).every(([op, operand]) => compare(op, actual, operand));
    }
    return compare('$eq', actual, value);
  });
}
