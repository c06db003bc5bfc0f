/**
 * Per-instance config values of an integration template: checking them against the template's
 * config fields, and carrying them across a template upgrade.
 *
 * Secrets never travel with the plain values. They come back in their own map for the caller to
 * seal; a stored secret is only ever referred to by name (the caller keeps its sealed value), and
 * no problem message repeats a value, secret or not.
 *
 * Plain values are a full replacement (a field not sent gets its default, or nothing); secrets are
 * a merge (a secret not sent keeps its stored value, so clients need not resend what they cannot
 * read back).
 */

interface FieldBase {
  readonly required?: boolean;
  readonly description?: string;
}

export interface StringConfigField extends FieldBase {
  readonly type: 'string';
  /** Characters; DEFAULT_MAX_STRING_LENGTH when absent. */
  readonly maxLength?: number;
  readonly default?: string;
}

export interface NumberConfigField extends FieldBase {
  readonly type: 'number';
  readonly minimum?: number;
  readonly maximum?: number;
  readonly integer?: boolean;
  readonly default?: number;
}

export interface BooleanConfigField extends FieldBase {
  readonly type: 'boolean';
  readonly default?: boolean;
}

export interface EnumConfigField extends FieldBase {
  readonly type: 'enum';
  readonly values: readonly string[];
  readonly default?: string;
}

/** Sealed at rest, write-only over the API, no default (a template never ships a secret). */
export interface SecretConfigField extends FieldBase {
  readonly type: 'secret';
}

export type ConfigField = StringConfigField | NumberConfigField | BooleanConfigField | EnumConfigField | SecretConfigField;

export type ConfigFields = Readonly<Record<string, ConfigField>>;

export interface ConfigProblem {
  /** JSON pointer into the submitted values, e.g. `/channel`. */
  readonly path: string;
  readonly message: string;
}

export const DEFAULT_MAX_STRING_LENGTH = 2_000;
export const MAX_SECRET_LENGTH = 4_096;

export type ConfigResult =
  | {
      ok: true;
      /** Non-secret values, defaults applied. Never holds a secret. */
      plain: Record<string, unknown>;
      /** Secrets sent with this request, to be sealed by the caller. */
      secrets: Record<string, string>;
      /** Stored secrets the request cleared with `null`: the caller deletes them. */
      clearedSecrets: string[];
    }
  | { ok: false; problems: ConfigProblem[] };

export type MigrationResult =
  | {
      ok: true;
      plain: Record<string, unknown>;
      /** Secrets supplied with the upgrade, to be sealed by the caller. */
      secrets: Record<string, string>;
      /**
       * Stored secrets that carry over unchanged; the caller keeps their sealed values. Every
       * stored secret in neither `keepSecrets` nor `secrets` is to be deleted.
       */
      keepSecrets: string[];
      /** Fields that had a value but no longer exist in the new version. */
      droppedFields: string[];
    }
  | { ok: false; problems: ConfigProblem[] };

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** RFC 6901 pointer to a top-level key. */
export const pointer = (key: string): string => `/${key.replaceAll('~', '~0').replaceAll('/', '~1')}`;

const clip = (s: string, max = 60): string => (s.length > max ? `${s.slice(0, max)}…` : s);

/**
 * Why `value` (neither undefined nor null) is not acceptable for `field`, or null if it is. The
 * message never contains the value: it may be a secret sent into the wrong field.
 */
export function checkFieldValue(field: ConfigField, value: unknown): string | null {
  switch (field.type) {
    case 'string': {
      if (typeof value !== 'string') return 'must be a string';
      const max = field.maxLength ?? DEFAULT_MAX_STRING_LENGTH;
      return value.length > max ? `must be at most ${max} characters` : null;
    }
    case 'number': {
      if (typeof value !== 'number' || !Number.isFinite(value)) return 'must be a number';
      if (field.integer === true && !Number.isInteger(value)) return 'must be an integer';
      if (field.minimum !== undefined && value < field.minimum) return `must be at least ${field.minimum}`;
      if (field.maximum !== undefined && value > field.maximum) return `must be at most ${field.maximum}`;
      return null;
    }
    case 'boolean':
      return typeof value === 'boolean' ? null : 'must be true or false';
    case 'enum':
      if (typeof value !== 'string' || !field.values.includes(value)) return `must be one of ${field.values.map((v) => clip(v)).join(', ')}`;
      return null;
    case 'secret':
      if (typeof value !== 'string') return 'must be a string';
      if (value.length === 0) return 'must not be empty';
      return value.length > MAX_SECRET_LENGTH ? `must be at most ${MAX_SECRET_LENGTH} characters` : null;
  }
}

const has = (o: Readonly<Record<string, unknown>>, key: string): boolean => Object.hasOwn(o, key) && o[key] !== undefined;

function unknownKeys(fields: ConfigFields, values: Readonly<Record<string, unknown>>): ConfigProblem[] {
  return Object.keys(values)
    .filter((key) => !Object.hasOwn(fields, key))
    .map((key) => ({ path: pointer(key), message: 'is not a config field of this template' }));
}

function readValues(values: unknown, problems: ConfigProblem[]): Readonly<Record<string, unknown>> {
  if (values === undefined) return {};
  if (isRecord(values)) return values;
  problems.push({ path: '', message: 'config values must be an object of field name to value' });
  return {};
}

/**
 * Checks config values for an instance being deployed or reconfigured. `previousSecrets` names
 * the secrets already stored for the instance: a required secret counts as present when stored
 * and not resent. `null` clears a field that is not required (a plain field falls back to its
 * default; a stored secret is listed in `clearedSecrets`).
 */
export function validateConfig(fields: ConfigFields, values: unknown, previousSecrets: ReadonlySet<string> = new Set()): ConfigResult {
  const problems: ConfigProblem[] = [];
  const input = readValues(values, problems);
  problems.push(...unknownKeys(fields, input));
  const plain: Record<string, unknown> = {};
  const secrets: Record<string, string> = {};
  const clearedSecrets: string[] = [];

  for (const [name, field] of Object.entries(fields)) {
    const path = pointer(name);
    const value = has(input, name) ? input[name] : undefined;
    if (value === null) {
      if (field.required === true) problems.push({ path, message: 'is required and cannot be cleared' });
      else if (field.type === 'secret') {
        if (previousSecrets.has(name)) clearedSecrets.push(name);
      } else if (field.default !== undefined) plain[name] = field.default;
      continue;
    }
    if (value !== undefined) {
      const problem = checkFieldValue(field, value);
      if (problem !== null) problems.push({ path, message: problem });
      else if (field.type === 'secret') secrets[name] = value as string;
      else plain[name] = value;
      continue;
    }
    if (field.type === 'secret') {
      if (field.required === true && !previousSecrets.has(name)) problems.push({ path, message: 'is required (a secret, not stored yet)' });
    } else if (field.default !== undefined) plain[name] = field.default;
    else if (field.required === true) problems.push({ path, message: 'is required' });
  }
  return problems.length > 0 ? { ok: false, problems } : { ok: true, plain, secrets, clearedSecrets };
}

type Held = { kind: 'secret' } | { kind: 'plain'; value: unknown } | { kind: 'nothing' };

// What an instance holds today for a field. Secrets only ever live in the store and plain values
// only in the plain config; a stray entry on the wrong side (an inconsistency the caller should
// not have) counts for nothing rather than being moved across.
function held(before: ConfigField | undefined, stored: boolean, current: unknown): Held {
  const isSecret = before === undefined ? stored : before.type === 'secret';
  if (isSecret) return stored ? { kind: 'secret' } : { kind: 'nothing' };
  return current === undefined || current === null ? { kind: 'nothing' } : { kind: 'plain', value: current };
}

// A value moves between these types when it is valid in the new field; every other change of
// type (number to string, string to secret, ...) needs a value from the person upgrading.
function compatible(from: ConfigField['type'], to: ConfigField['type']): boolean {
  return from === to || (from === 'string' && to === 'enum') || (from === 'enum' && to === 'string');
}

/**
 * Carries an instance's config from one template version to another. Values carry over when
 * their field still exists with a compatible type and the value is valid under the new field;
 * new fields get their defaults; `overrides` (supplied with the upgrade, same shape and rules
 * as `validateConfig` values) win over both. Every field that cannot be carried is reported,
 * never guessed: a new required field without default, a changed type, an enum value no longer
 * allowed, a number out of the new bounds, a required secret neither stored nor supplied.
 */
export function migrateConfig(
  fromFields: ConfigFields,
  toFields: ConfigFields,
  currentPlain: Readonly<Record<string, unknown>>,
  storedSecretNames: ReadonlySet<string>,
  overrides?: unknown,
): MigrationResult {
  const problems: ConfigProblem[] = [];
  const supplied = readValues(overrides, problems);
  problems.push(...unknownKeys(toFields, supplied).map((p) => ({ ...p, message: 'is not a config field of the new version' })));
  const plain: Record<string, unknown> = {};
  const secrets: Record<string, string> = {};
  const keepSecrets: string[] = [];

  for (const [name, field] of Object.entries(toFields)) {
    const path = pointer(name);
    if (has(supplied, name)) {
      const value = supplied[name];
      if (value === null) {
        if (field.required === true) problems.push({ path, message: 'is required and cannot be cleared' });
        else if (field.type !== 'secret' && field.default !== undefined) plain[name] = field.default;
      } else {
        const problem = checkFieldValue(field, value);
        if (problem !== null) problems.push({ path, message: problem });
        else if (field.type === 'secret') secrets[name] = value as string;
        else plain[name] = value;
      }
      continue;
    }

    const before = Object.hasOwn(fromFields, name) ? fromFields[name] : undefined;
    const holds = held(before, storedSecretNames.has(name), has(currentPlain, name) ? currentPlain[name] : undefined);
    const hint = field.required === true ? 'supply a value' : 'supply a value, or null to leave it empty';

    if (field.type === 'secret') {
      if (holds.kind === 'secret') keepSecrets.push(name);
      else if (holds.kind === 'plain') problems.push({ path, message: `changed type from ${before?.type ?? 'unknown'} to secret: ${hint}` });
      else if (field.required === true) problems.push({ path, message: 'is a required secret in the new version and is not stored: supply it' });
      continue;
    }

    if (holds.kind === 'secret') {
      problems.push({ path, message: `changed type from secret to ${field.type}: ${hint}` });
      continue;
    }
    if (holds.kind === 'plain') {
      if (before !== undefined && !compatible(before.type, field.type)) {
        problems.push({ path, message: `changed type from ${before.type} to ${field.type}: ${hint}` });
        continue;
      }
      const problem = checkFieldValue(field, holds.value);
      if (problem === null) plain[name] = holds.value;
      else problems.push({ path, message: `the current value is not valid in the new version (${problem}): ${hint}` });
      continue;
    }
    if (field.default !== undefined) plain[name] = field.default;
    else if (field.required === true) {
      problems.push({ path, message: before === undefined ? 'is a new required field without a default: supply a value' : 'is now required, has no value and no default: supply a value' });
    }
  }

  if (problems.length > 0) return { ok: false, problems };
  const heldBefore = new Set([...Object.keys(currentPlain).filter((k) => has(currentPlain, k) && currentPlain[k] !== null), ...storedSecretNames]);
  const droppedFields = [...heldBefore].filter((name) => !Object.hasOwn(toFields, name)).sort();
  return { ok: true, plain, secrets, keepSecrets, droppedFields };
}
