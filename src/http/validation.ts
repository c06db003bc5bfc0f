/**
 * Schema validation errors, said in words: one entry per mistake, each with the JSON pointer of
 * the value it is about and what is wrong with it (`/scopes/2: unknown scope "evnts:write";
 * allowed: …`).
 *
 * Ajv reports what its keywords saw, not what the client did: a value that is none of 19 string
 * literals (a TypeBox union of literals is an `anyOf` of `const`s) is 19 "must be equal to
 * constant" errors and an "anyOf" one. So errors are first put back into the shape of the schema
 * (each `anyOf`/`oneOf`/`if`/`propertyNames` error owns the errors of its branches, which Ajv
 * reports just before it), then each top-level one is described once:
 *  - branches that all want a constant: `unknown <title> "x"; allowed: a, b, c` (the union's
 *    `title` names the thing, else "value");
 *  - branches that want a type or a constant: `must be a string or null (got a number)`;
 *  - a branch the value got into (its errors are deeper than the union): that branch's errors,
 *    described in turn; otherwise `matches none of the allowed forms: …`.
 * Object-level rules point at the object and name the property (`unknown property "bar"`,
 * `missing required property "name"`).
 *
 * The server validates with `allErrors: false` (see server.ts), so there is normally one mistake;
 * the list is still capped at `MAX_VALIDATION_ERRORS`, since a union's branches can say many
 * things. Values are quoted back shortened: they are the client's own, but may be large.
 */
import type { ErrorObject } from 'ajv';
import { BulkheadError } from '../errors.js';

export const MAX_VALIDATION_ERRORS = 20;

export type ValidationLocation = 'body' | 'query' | 'params' | 'headers';

export interface ValidationEntry {
  readonly location: ValidationLocation;
  /** JSON pointer of the value ('' is the whole body, query or params). */
  readonly pointer: string;
  readonly message: string;
}

const LOCATIONS: Record<string, ValidationLocation> = { body: 'body', querystring: 'query', params: 'params', headers: 'headers' };
export const locationOf = (context: string | undefined): ValidationLocation => LOCATIONS[context ?? 'body'] ?? 'body';

/** Errors that own the errors of their sub-schemas. */
const CONTAINERS = new Set(['anyOf', 'oneOf', 'if', 'propertyNames']);

interface Node {
  readonly error: ErrorObject;
  readonly children: Node[];
}

const isWithin = (pointer: string, parent: string) => pointer === parent || pointer.startsWith(`${parent}/`);

/** Rebuilds the schema's nesting: a container error claims the errors reported before it under its schema path. */
function tree(errors: readonly ErrorObject[]): Node[] {
  const pending: Node[] = [];
  for (const error of errors) {
    if (!CONTAINERS.has(error.keyword)) {
      pending.push({ error, children: [] });
      continue;
    }
    const children: Node[] = [];
    for (let i = pending.length - 1; i >= 0; i--) {
      const candidate = pending[i] as Node;
      if (candidate.error.schemaPath.startsWith(`${error.schemaPath}/`) && isWithin(candidate.error.instancePath, error.instancePath)) {
        children.unshift(candidate);
        pending.splice(i, 1);
      }
    }
    pending.push({ error, children });
  }
  return pending;
}

const TRUNCATE = 60;
function quote(value: unknown): string {
  const text = (JSON.stringify(value) as string | undefined) ?? String(value);
  return text.length > TRUNCATE ? `${text.slice(0, TRUNCATE - 1)}…` : text;
}

const jsonType = (value: unknown): string => (value === null ? 'null' : Array.isArray(value) ? 'array' : Number.isInteger(value) ? 'integer' : typeof value);
const article = (type: string): string => (type === 'null' ? 'null' : /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`);
const plural = (n: unknown, one: string, many: string) => `${String(n)} ${n === 1 ? one : many}`;
const typesOf = (type: unknown): string[] => (Array.isArray(type) ? type.map(String) : String(type).split(','));
/** What the value is, for "(got …)"; a number where an integer is wanted is "a number". */
const got = (value: unknown) => `(got ${article(jsonType(value) === 'integer' ? 'number' : jsonType(value))})`;

function titleOf(error: ErrorObject): string {
  const title = (error.parentSchema as { title?: unknown } | undefined)?.title;
  // Titles are also OpenAPI component names (`DeliveryStatus`): said in words, `delivery status`.
  return typeof title === 'string' && title !== '' ? title.replace(/(?<=[a-z0-9])(?=[A-Z])/g, ' ').toLowerCase() : 'value';
}

const unknownValue = (error: ErrorObject, values: readonly unknown[]) =>
  `unknown ${titleOf(error)} ${quote(error.data)}; allowed: ${values.map((v) => (typeof v === 'string' ? v : quote(v))).join(', ')}`;

function describeOne(error: ErrorObject): string {
  const p = error.params as Record<string, unknown>;
  const description = (error.parentSchema as { description?: unknown } | undefined)?.description;
  switch (error.keyword) {
    case 'additionalProperties':
    case 'unevaluatedProperties':
      return `unknown property ${quote(p['additionalProperty'] ?? p['unevaluatedProperty'])}`;
    case 'required':
      return `missing required property ${quote(p['missingProperty'])}`;
    case 'dependentRequired':
    case 'dependencies':
      return `property ${quote(p['property'])} needs property ${quote(p['missingProperty'])}`;
    case 'type':
      return `must be ${typesOf(p['type']).map(article).join(' or ')} ${got(error.data)}`;
    case 'const':
      return `must be ${quote(p['allowedValue'])} (got ${quote(error.data)})`;
    case 'enum':
      return unknownValue(error, (p['allowedValues'] as unknown[] | undefined) ?? []);
    case 'minLength':
      return `must be at least ${plural(p['limit'], 'character', 'characters')} long`;
    case 'maxLength':
      return `must be at most ${plural(p['limit'], 'character', 'characters')} long`;
    case 'minimum':
      return `must be at least ${String(p['limit'])}`;
    case 'maximum':
      return `must be at most ${String(p['limit'])}`;
    case 'exclusiveMinimum':
      return `must be greater than ${String(p['limit'])}`;
    case 'exclusiveMaximum':
      return `must be less than ${String(p['limit'])}`;
    case 'multipleOf':
      return `must be a multiple of ${String(p['multipleOf'])}`;
    case 'minItems':
      return `must have at least ${plural(p['limit'], 'item', 'items')}`;
    case 'maxItems':
      return `must have at most ${plural(p['limit'], 'item', 'items')}`;
    case 'uniqueItems':
      return `must not repeat an item (items ${String(p['j'])} and ${String(p['i'])} are identical)`;
    case 'minProperties':
      return `must have at least ${plural(p['limit'], 'property', 'properties')}`;
    case 'maxProperties':
      return `must have at most ${plural(p['limit'], 'property', 'properties')}`;
    case 'pattern':
      return `${quote(error.data)} does not match the pattern ${String(p['pattern'])}${typeof description === 'string' ? ` (${description})` : ''}`;
    case 'format':
      return `${quote(error.data)} is not a ${String(p['format'])}`;
    case 'not':
      return 'is a value this field does not allow';
    default:
      return error.message ?? 'is not valid';
  }
}

const depth = (pointer: string) => (pointer === '' ? 0 : pointer.split('/').length - 1);
const deepest = (node: Node): number => Math.max(depth(node.error.instancePath), ...node.children.map(deepest));

interface Entry { pointer: string; message: string }

/**
 * The constants a branch wants, when it wants constants: its failing keyword is `const`/`enum`, or
 * `type` on a schema that also has one (TypeBox literals carry `type` beside `const`, so a value
 * of another type fails `type` first).
 */
function valuesOf(error: ErrorObject): unknown[] | undefined {
  const p = error.params as { allowedValue?: unknown; allowedValues?: unknown[] };
  if (error.keyword === 'const') return [p.allowedValue];
  if (error.keyword === 'enum') return p.allowedValues ?? [];
  const schema = error.parentSchema as { const?: unknown; enum?: unknown } | undefined;
  if (error.keyword === 'type' && schema !== undefined && 'const' in schema) return [schema.const];
  if (error.keyword === 'type' && Array.isArray(schema?.enum)) return schema.enum as unknown[];
  return undefined;
}

function describeUnion(node: Node): Entry[] {
  const { error, children } = node;
  if (error.keyword === 'oneOf' && children.length === 0) return [{ pointer: error.instancePath, message: 'matches more than one of the allowed forms' }];
  const branchOf = (child: Node) => child.error.schemaPath.slice(error.schemaPath.length + 1).split('/')[0] ?? '';
  const branches = new Map<string, Node[]>();
  for (const child of children) branches.set(branchOf(child), [...(branches.get(branchOf(child)) ?? []), child]);

  // The value got into a branch (it has the shape, a part of it is wrong): say what is wrong there.
  const into = [...branches.values()].filter((nodes) => nodes.some((n) => deepest(n) > depth(error.instancePath)));
  if (into.length > 0) {
    const best = into.reduce((a, b) => (Math.max(...b.map(deepest)) > Math.max(...a.map(deepest)) ? b : a));
    return best.flatMap(describe);
  }
  const alternatives = [...branches.values()].map((nodes) => nodes[0]?.error).filter((e): e is ErrorObject => e !== undefined);
  const wanted = alternatives.map(valuesOf);
  if (alternatives.length > 0 && wanted.every((v) => v !== undefined)) {
    return [{ pointer: error.instancePath, message: unknownValue(error, wanted.flat()) }];
  }
  if (alternatives.length > 0 && alternatives.every((e, i) => wanted[i] !== undefined || e.keyword === 'type')) {
    const forms = alternatives.flatMap((e, i) => wanted[i]?.map((v) => quote(v)) ?? typesOf((e.params as { type: unknown }).type).map(article));
    return [{ pointer: error.instancePath, message: `must be ${forms.join(' or ')} ${got(error.data)}` }];
  }
  return [{ pointer: error.instancePath, message: `matches none of the allowed forms: ${alternatives.map(describeOne).join('; ')}` }];
}

function describe(node: Node): Entry[] {
  const { error, children } = node;
  if (error.keyword === 'anyOf' || error.keyword === 'oneOf') return describeUnion(node);
  if (error.keyword === 'propertyNames') {
    const inner = children.flatMap(describe).map((e) => e.message);
    return [{ pointer: error.instancePath, message: `property name ${quote((error.params as { propertyName?: unknown }).propertyName)} is not allowed${inner.length > 0 ? `: ${inner.join('; ')}` : ''}` }];
  }
  // `if`/`then`: the branch's own errors say it.
  if (error.keyword === 'if') return children.length > 0 ? children.flatMap(describe) : [{ pointer: error.instancePath, message: describeOne(error) }];
  return [{ pointer: error.instancePath, message: describeOne(error) }];
}

/** One entry per mistake, in the order Ajv found them, at most `MAX_VALIDATION_ERRORS`. */
export function describeValidation(errors: readonly ErrorObject[], location: ValidationLocation): ValidationEntry[] {
  const seen = new Set<string>();
  const entries: ValidationEntry[] = [];
  for (const entry of tree(errors).flatMap(describe)) {
    const key = `${entry.pointer}\u0000${entry.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    entries.push({ location, pointer: entry.pointer, message: entry.message });
    if (entries.length === MAX_VALIDATION_ERRORS) break;
  }
  return entries;
}

/** The problem's `detail`: the first mistake, and how many more there are. */
export function summarise(entries: readonly ValidationEntry[]): string {
  const first = entries[0];
  if (!first) return 'the request is not valid';
  const more = entries.length > 1 ? ` (and ${plural(entries.length - 1, 'more problem', 'more problems')} in errors)` : '';
  return `${first.location} ${first.pointer || '/'}: ${first.message}${more}`;
}

/** A `validation_failed` for a body field a route checks beyond its schema (a URL's policy), shaped like the schema's own. */
export function bodyFieldInvalid(pointer: string, message: string): BulkheadError {
  const errors: ValidationEntry[] = [{ location: 'body', pointer, message }];
  return new BulkheadError('validation_failed', summarise(errors), { details: { errors } });
}
