/**
 * The integration template document: its typed model and its validation.
 *
 * A template is written once by the platform and deployed into workspaces as instances, so
 * validation is strict and complete: every problem is reported at once with a JSON pointer, and
 * unknown properties are refused everywhere (except inside a filter step's filter, whose own
 * grammar is checked by routing/filter.ts). The shape lives in template-schema.json, which the API
 * publishes; the rules a JSON Schema cannot state (slot references, unique names, cron syntax,
 * sizes, coherent defaults) are checked here and reported the same way.
 *
 * Transform code is checked for size only: compiling it needs the sandbox's QuickJS and is the
 * caller's step (sandbox/compile.ts), as for rules.
 */
import { Ajv2020, type ErrorObject } from 'ajv/dist/2020.js';
import { validateFilter } from '../routing/filter.js';
import { isReservedType } from '../routing/patterns.js';
import { checkFieldValue, type ConfigField } from './config-values.js';
import { parseSchedule } from './cron.js';
import { SEMVER_PATTERN } from './semver.js';
import schemaJson from './template-schema.json' with { type: 'json' };

export type { ConfigField } from './config-values.js';

export interface ConnectionSlot {
  /** Provider id in the catalog. */
  readonly provider: string;
  readonly scopes?: readonly string[];
  readonly description?: string;
}

export interface DestinationSlot {
  readonly description?: string;
}

export interface InboundSourceSlot {
  readonly description?: string;
}

export type TemplateTrigger =
  | { readonly type: 'event'; readonly eventTypes: readonly string[] }
  | { readonly type: 'inbound'; readonly source: string; readonly eventTypes?: readonly string[] }
  /** `timezone` is an IANA name; UTC when absent. */
  | { readonly type: 'cron'; readonly schedule: string; readonly timezone?: string };

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export type TemplateStep =
  | { readonly name: string; readonly type: 'filter'; readonly filter: Readonly<Record<string, unknown>> }
  | { readonly name: string; readonly type: 'transform'; readonly language: 'javascript' | 'typescript'; readonly code: string }
  | {
      readonly name: string;
      readonly type: 'connection';
      readonly connection: string;
      readonly method: HttpMethod;
      readonly path: string;
      readonly query?: Readonly<Record<string, string>>;
    }
  | { readonly name: string; readonly type: 'deliver'; readonly destination: string; readonly eventType?: string };

export interface TemplateDocument {
  /** Editors' pointer to the schema; carries no meaning. */
  readonly $schema?: string;
  readonly name: string;
  /** Semantic version 2.0.0. */
  readonly version: string;
  readonly description?: string;
  readonly config?: Readonly<Record<string, ConfigField>>;
  readonly connections?: Readonly<Record<string, ConnectionSlot>>;
  readonly destinations?: Readonly<Record<string, DestinationSlot>>;
  readonly inboundSources?: Readonly<Record<string, InboundSourceSlot>>;
  readonly triggers: readonly TemplateTrigger[];
  readonly steps: readonly TemplateStep[];
  /** Explicit grants for transform steps; see grantedCapabilities. */
  readonly capabilities?: readonly string[];
}

export interface TemplateProblem {
  /** JSON pointer into the document, e.g. `/steps/1/connection`; `` is the whole document. */
  readonly path: string;
  readonly message: string;
}

export type TemplateValidation = { ok: true; template: TemplateDocument } | { ok: false; problems: TemplateProblem[] };

export const MAX_TEMPLATE_BYTES = 1024 * 1024;
export const MAX_TRANSFORM_CODE_BYTES = 256 * 1024;

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    Object.values(value).forEach(deepFreeze);
    Object.freeze(value);
  }
  return value;
}

/**
 * The JSON Schema (draft 2020-12) of a template document, as published by the API. Frozen: the
 * validator below is compiled from it, so a consumer that needs to modify it (say, to embed it
 * in an OpenAPI document) works on a structuredClone.
 */
export const templateSchema: Readonly<Record<string, unknown>> = deepFreeze(schemaJson);

// Compiled once at load: the schema is part of the build, so a schema error is a startup error.
// `discriminator` picks the one branch of each `oneOf` by `type`, so a step of type connection is
// reported against the connection shape only, not against all four.
const ajv = new Ajv2020({ allErrors: true, strict: true, discriminator: true });
const checkShape = ajv.compile(templateSchema);
const checkConfigField = ajv.compile<ConfigField>({ $ref: `${String(templateSchema['$id'])}#/$defs/configField` });

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const escapeToken = (key: string): string => key.replaceAll('~', '~0').replaceAll('/', '~1');

// ajv would quote the regular expression; authors get the rule in words. A test checks that
// every pattern in the schema has an entry here.
export const PATTERN_MESSAGES: Readonly<Record<string, string>> = {
  '^[a-z0-9][a-z0-9-]{0,62}$': 'must be 1 to 63 characters of a-z, 0-9 and -, starting with a letter or digit',
  [SEMVER_PATTERN]: 'must be a semantic version such as 1.2.0 or 2.0.0-rc.1',
  '^[A-Za-z][A-Za-z0-9_]{0,62}$': 'must be 1 to 63 characters of A-Z, a-z, 0-9 and _, starting with a letter',
  '^[a-z][a-z0-9_]{0,62}$': 'must be 1 to 63 characters of a-z, 0-9 and _, starting with a letter',
  '^[a-z0-9][a-z0-9_-]{0,62}$': 'must be 1 to 63 characters of a-z, 0-9, _ and -, starting with a letter or digit',
  '^connections\\.[a-z][a-z0-9_]{0,62}\\.request$': 'must be connections.<slot>.request',
  '^(\\*|[a-z0-9_-]+)(\\.(\\*|[a-z0-9_-]+))*$': 'must be an event type pattern: dot-separated segments of a-z, 0-9, _ and -, or *',
  '^[a-z0-9_-]+(\\.[a-z0-9_-]+)*$': 'must be an event type: dot-separated segments of a-z, 0-9, _ and -',
  '^\\S+$': 'must not contain whitespace',
  '^/[^\\s?#]*$': 'must start with / and contain no whitespace, ? or # (query parameters go in query)',
};

function message(error: ErrorObject, params: Record<string, unknown>): string {
  switch (error.keyword) {
    case 'pattern':
      return (typeof params['pattern'] === 'string' ? PATTERN_MESSAGES[params['pattern']] : undefined) ?? error.message ?? 'is invalid';
    case 'not':
      // The only `not` in the schema keeps names that break property access in the sandbox out.
      return 'must not be constructor, prototype or then';
    case 'const':
    case 'enum':
      return `${error.message ?? 'is invalid'}: ${JSON.stringify(params['allowedValues'] ?? params['allowedValue'])}`;
    default:
      return error.message ?? 'is invalid';
  }
}

const typesAt = (at: string): string =>
  at.startsWith('/config/') ? 'string, number, boolean, enum, secret' : at.startsWith('/triggers/') ? 'event, inbound, cron' : 'filter, transform, connection, deliver';

/** One problem per ajv error, pointing at the property concerned rather than at its parent. */
function describe(error: ErrorObject): TemplateProblem {
  const at = error.instancePath;
  const params = error.params as Record<string, unknown>;
  const param = (name: string): string => (typeof params[name] === 'string' ? params[name] : '');
  // A failure inside propertyNames concerns the name of a property of the object at `at`.
  if (error.propertyName !== undefined) return { path: `${at}/${escapeToken(error.propertyName)}`, message: `is not an allowed name: ${message(error, params)}` };
  switch (error.keyword) {
    case 'required':
      return { path: `${at}/${escapeToken(param('missingProperty'))}`, message: 'is required' };
    case 'additionalProperties': {
      const property = param('additionalProperty');
      // Only the secret field shape lacks `default`; say why instead of "unknown property".
      if (property === 'default' && /^\/config\/[^/]+$/.test(at)) {
        return { path: `${at}/default`, message: 'a secret field cannot have a default: secrets are supplied per instance' };
      }
      return { path: `${at}/${escapeToken(property)}`, message: 'is not a known property here' };
    }
    case 'discriminator':
      return param('error') === 'tag'
        ? { path: `${at}/type`, message: 'is required and must be a string' }
        : { path: `${at}/type`, message: `must be one of ${typesAt(at)}` };
    default:
      return { path: at, message: message(error, params) };
  }
}

function shapeProblems(errors: readonly ErrorObject[]): TemplateProblem[] {
  // Each bad property name is reported by the keyword it broke (kept) and again by propertyNames
  // itself, without detail (dropped).
  const seen = new Set<string>();
  return errors
    .filter((e) => e.keyword !== 'propertyNames')
    .map(describe)
    .filter((p) => {
      const key = `${p.path}\u0000${p.message}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
}

const slotNames = (doc: Record<string, unknown>, key: string): ReadonlySet<string> => new Set(isRecord(doc[key]) ? Object.keys(doc[key]) : []);

const records = (value: unknown): [number, Record<string, unknown>][] =>
  Array.isArray(value) ? value.flatMap((v: unknown, i) => (isRecord(v) ? [[i, v] as [number, Record<string, unknown>]] : [])) : [];

function configProblems(config: unknown): TemplateProblem[] {
  if (!isRecord(config)) return [];
  const problems: TemplateProblem[] = [];
  for (const [name, raw] of Object.entries(config)) {
    // A field of the wrong shape is already reported; its default cannot be judged.
    if (!checkConfigField(raw)) continue;
    const field = raw;
    const at = `/config/${escapeToken(name)}`;
    if (field.type === 'number' && field.minimum !== undefined && field.maximum !== undefined && field.minimum > field.maximum) {
      problems.push({ path: `${at}/minimum`, message: 'is greater than maximum' });
    }
    if (field.type === 'secret' || field.default === undefined) continue;
    // The default must be a value the field itself would accept: same rules as an instance's value.
    const problem = checkFieldValue(field, field.default);
    if (problem !== null) problems.push({ path: `${at}/default`, message: problem });
  }
  return problems;
}

// A dot segment could walk the request out of the provider's base path (`/v1/../admin`), and
// percent-encoded ones are decoded by some servers.
const DOT_SEGMENT = /(^|\/)(\.|%2e){1,2}(\/|$)/i;

function crossFieldProblems(doc: Record<string, unknown>): TemplateProblem[] {
  const problems: TemplateProblem[] = [];
  const connections = slotNames(doc, 'connections');
  const destinations = slotNames(doc, 'destinations');
  const inboundSources = slotNames(doc, 'inboundSources');

  problems.push(...configProblems(doc['config']));

  for (const [i, trigger] of records(doc['triggers'])) {
    const at = `/triggers/${i}`;
    if (trigger['type'] === 'inbound' && typeof trigger['source'] === 'string' && !inboundSources.has(trigger['source'])) {
      problems.push({ path: `${at}/source`, message: 'does not name a slot declared in inboundSources' });
    }
    if (trigger['type'] === 'cron' && typeof trigger['schedule'] === 'string') {
      const timezone = trigger['timezone'];
      const check = parseSchedule(trigger['schedule'], typeof timezone === 'string' ? timezone : undefined);
      if (!check.ok) problems.push({ path: `${at}/${check.field}`, message: check.message });
    }
  }

  const firstUse = new Map<string, number>();
  for (const [i, step] of records(doc['steps'])) {
    const at = `/steps/${i}`;
    const name = step['name'];
    if (typeof name === 'string') {
      const earlier = firstUse.get(name);
      if (earlier === undefined) firstUse.set(name, i);
      else problems.push({ path: `${at}/name`, message: `duplicates the name of step ${earlier}` });
    }
    switch (step['type']) {
      case 'filter':
        if (isRecord(step['filter'])) problems.push(...validateFilter(step['filter']).map((message) => ({ path: `${at}/filter`, message })));
        break;
      case 'transform': {
        const code = step['code'];
        // The schema bounds characters; UTF-8 can be up to 3 bytes per character of a JSON string.
        if (typeof code === 'string' && code.length <= MAX_TRANSFORM_CODE_BYTES && Buffer.byteLength(code) > MAX_TRANSFORM_CODE_BYTES) {
          problems.push({ path: `${at}/code`, message: `is larger than ${MAX_TRANSFORM_CODE_BYTES} bytes (UTF-8)` });
        }
        break;
      }
      case 'connection':
        if (typeof step['connection'] === 'string' && !connections.has(step['connection'])) {
          problems.push({ path: `${at}/connection`, message: 'does not name a slot declared in connections' });
        }
        if (typeof step['path'] === 'string' && DOT_SEGMENT.test(step['path'])) {
          problems.push({ path: `${at}/path`, message: 'must not contain . or .. segments' });
        }
        break;
      case 'deliver':
        if (typeof step['destination'] === 'string' && !destinations.has(step['destination'])) {
          problems.push({ path: `${at}/destination`, message: 'does not name a slot declared in destinations' });
        }
        if (typeof step['eventType'] === 'string' && isReservedType(step['eventType'])) {
          problems.push({ path: `${at}/eventType`, message: 'is in the reserved bulkhead namespace' });
        }
        break;
      default:
        break;
    }
  }

  if (Array.isArray(doc['capabilities'])) {
    doc['capabilities'].forEach((capability: unknown, i) => {
      const slot = typeof capability === 'string' ? /^connections\.([^.]+)\.request$/.exec(capability)?.[1] : undefined;
      if (slot !== undefined && !connections.has(slot)) problems.push({ path: `/capabilities/${i}`, message: 'names a connection slot that is not declared in connections' });
    });
  }
  return problems;
}

/**
 * Validates a template document (typically a parsed JSON request body). The document is copied
 * through JSON before checking, so the template returned is exactly what was checked and is not
 * shared with the caller's object.
 */
export function validateTemplate(doc: unknown): TemplateValidation {
  let json: string | undefined;
  try {
    json = JSON.stringify(doc);
  } catch {
    json = undefined;
  }
  if (json === undefined || !isRecord(doc)) return { ok: false, problems: [{ path: '', message: 'a template is a JSON object' }] };
  if (Buffer.byteLength(json) > MAX_TEMPLATE_BYTES) return { ok: false, problems: [{ path: '', message: `the template is larger than ${MAX_TEMPLATE_BYTES} bytes` }] };
  const copy = JSON.parse(json) as Record<string, unknown>;

  const problems = checkShape(copy) ? [] : shapeProblems(checkShape.errors ?? []);
  // The rules below run on a document the schema may have refused, so that every problem shows at
  // once; where the schema already objected to a property (a schedule over the length limit, say),
  // its objection is the one reported.
  const shapePaths = new Set(problems.map((p) => p.path));
  problems.push(...crossFieldProblems(copy).filter((p) => !shapePaths.has(p.path)));
  return problems.length > 0 ? { ok: false, problems } : { ok: true, template: copy as unknown as TemplateDocument };
}

/**
 * The host capabilities a template's transform steps are granted, e.g.
 * `connections.crm.request`. An explicit `capabilities` list is the grant. Without one, a
 * template with a transform step grants `connections.<slot>.request` for every declared
 * connection slot (a transform may reach any of them; which ones it does is not decidable from
 * the code), and a template without transforms grants nothing: connection steps are executed by
 * the host and need no grant.
 */
export function grantedCapabilities(t: TemplateDocument): string[] {
  if (t.capabilities !== undefined) return [...new Set(t.capabilities)];
  if (!t.steps.some((s) => s.type === 'transform')) return [];
  return Object.keys(t.connections ?? {}).map((slot) => `connections.${slot}.request`);
}

export { compareSemver, isSemver } from './semver.js';
