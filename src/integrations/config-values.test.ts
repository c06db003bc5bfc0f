import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { migrateConfig, validateConfig, type ConfigFields, type ConfigProblem, type ConfigResult, type MigrationResult } from './config-values.js';

const fields: ConfigFields = {
  channel: { type: 'string', required: true, maxLength: 20, default: 'general' },
  note: { type: 'string' },
  limit: { type: 'number', minimum: 0, maximum: 100, integer: true, default: 10 },
  ratio: { type: 'number' },
  verbose: { type: 'boolean', default: false },
  region: { type: 'enum', values: ['eu', 'us'], default: 'eu' },
  apiToken: { type: 'secret', required: true },
  webhookSecret: { type: 'secret' },
};

const SECRET = 'sk_live_do_not_leak_4242';

function ok(result: ConfigResult): Extract<ConfigResult, { ok: true }> {
  if (!result.ok) throw new Error(`expected success: ${JSON.stringify(result.problems)}`);
  return result;
}

function problems(result: ConfigResult | MigrationResult): ConfigProblem[] {
  if (result.ok) throw new Error('expected problems');
  return result.problems;
}

describe('validateConfig', () => {
  it('accepts a value of every type, applies defaults and keeps secrets apart', () => {
    const result = ok(validateConfig(fields, { channel: 'ops', note: 'n', limit: 5, ratio: -0.5, verbose: true, region: 'us', apiToken: SECRET }));
    expect(result.plain).toEqual({ channel: 'ops', note: 'n', limit: 5, ratio: -0.5, verbose: true, region: 'us' });
    expect(result.secrets).toEqual({ apiToken: SECRET });
    expect(result.clearedSecrets).toEqual([]);
  });

  it('fills missing plain fields with their defaults and leaves fields without one out', () => {
    const result = ok(validateConfig(fields, { apiToken: SECRET }));
    expect(result.plain).toEqual({ channel: 'general', limit: 10, verbose: false, region: 'eu' });
  });

  it('never puts a secret in the plain values', () => {
    const result = ok(validateConfig(fields, { apiToken: SECRET, webhookSecret: 'whsec_x' }));
    expect(JSON.stringify(result.plain)).not.toContain(SECRET);
    expect(Object.keys(result.plain)).not.toContain('apiToken');
    expect(result.secrets).toEqual({ apiToken: SECRET, webhookSecret: 'whsec_x' });
  });

  it('a required secret already stored need not be resent', () => {
    expect(problems(validateConfig(fields, {}))).toEqual([{ path: '/apiToken', message: 'is required (a secret, not stored yet)' }]);
    const result = ok(validateConfig(fields, {}, new Set(['apiToken'])));
    expect(result.secrets).toEqual({});
    expect(result.clearedSecrets).toEqual([]);
  });

  it('a required field without a default must be present', () => {
    const required: ConfigFields = { id: { type: 'string', required: true }, n: { type: 'number', required: true }, flag: { type: 'boolean', required: true }, e: { type: 'enum', values: ['a'], required: true } };
    expect(problems(validateConfig(required, {})).map((p) => p.path)).toEqual(['/id', '/n', '/flag', '/e']);
  });

  it('refuses keys the template does not declare', () => {
    expect(problems(validateConfig(fields, { apiToken: SECRET, chanel: 'typo', __proto__x: 1 }))).toEqual([
      { path: '/chanel', message: 'is not a config field of this template' },
      { path: '/__proto__x', message: 'is not a config field of this template' },
    ]);
  });

  it('does not mistake inherited properties for fields or values', () => {
    const odd: ConfigFields = JSON.parse('{"constructor": {"type": "string"}, "toString": {"type": "number", "default": 1}}') as ConfigFields;
    expect(problems(validateConfig(odd, JSON.parse('{"__proto__": {"constructor": "x"}}')))).toEqual([{ path: '/__proto__', message: 'is not a config field of this template' }]);
    expect(ok(validateConfig(odd, {})).plain).toEqual({ toString: 1 });
    // An object's inherited members are not fields of an ordinary template.
    expect(problems(validateConfig(fields, { constructor: 'x', toString: 'y' })).map((p) => p.path)).toEqual(['/constructor', '/toString', '/apiToken']);
  });

  it.each([
    ['string', { note: 5 }, '/note', 'must be a string'],
    ['string over its maxLength', { channel: 'x'.repeat(21) }, '/channel', 'must be at most 20 characters'],
    ['string over the default maximum of 2000', { note: 'x'.repeat(2001) }, '/note', 'must be at most 2000 characters'],
    ['number as a string', { limit: '5' }, '/limit', 'must be a number'],
    ['non-integer', { limit: 2.5 }, '/limit', 'must be an integer'],
    ['number below the minimum', { limit: -1 }, '/limit', 'must be at least 0'],
    ['number above the maximum', { limit: 101 }, '/limit', 'must be at most 100'],
    ['boolean as a string', { verbose: 'true' }, '/verbose', 'must be true or false'],
    ['enum value not listed', { region: 'asia' }, '/region', 'must be one of eu, us'],
    ['enum value of another type', { region: 1 }, '/region', 'must be one of eu, us'],
    ['secret that is not a string', { webhookSecret: 12345 }, '/webhookSecret', 'must be a string'],
    ['empty secret', { webhookSecret: '' }, '/webhookSecret', 'must not be empty'],
    ['secret over 4096 characters', { webhookSecret: 'x'.repeat(4097) }, '/webhookSecret', 'must be at most 4096 characters'],
    ['object where a string belongs', { note: { a: 1 } }, '/note', 'must be a string'],
  ])('refuses a %s', (_label, values, path, message) => {
    expect(problems(validateConfig(fields, { apiToken: SECRET, ...values }))).toEqual([{ path, message }]);
  });

  it('accepts the boundaries', () => {
    ok(validateConfig(fields, { apiToken: 'x'.repeat(4096), webhookSecret: 'y', channel: 'x'.repeat(20), note: 'x'.repeat(2000), limit: 100 }));
    ok(validateConfig(fields, { apiToken: SECRET, limit: 0, ratio: 1e300 }));
  });

  it('refuses values that are not an object', () => {
    for (const values of [null, [], 'x', 3]) expect(problems(validateConfig(fields, values))[0]).toEqual({ path: '', message: 'config values must be an object of field name to value' });
  });

  it('treats absent values as an empty object', () => {
    expect(problems(validateConfig(fields, undefined))).toEqual([{ path: '/apiToken', message: 'is required (a secret, not stored yet)' }]);
  });

  it('null clears a field that is not required: a plain field falls back to its default, a stored secret is cleared', () => {
    const result = ok(validateConfig(fields, { note: null, limit: null, webhookSecret: null }, new Set(['apiToken', 'webhookSecret'])));
    expect(result.plain).toEqual({ channel: 'general', limit: 10, verbose: false, region: 'eu' });
    expect(result.clearedSecrets).toEqual(['webhookSecret']);
    expect(result.secrets).toEqual({});
  });

  it('null for a secret that is not stored clears nothing', () => {
    expect(ok(validateConfig(fields, { webhookSecret: null }, new Set(['apiToken']))).clearedSecrets).toEqual([]);
  });

  it('null cannot clear a required field, secret or not', () => {
    expect(problems(validateConfig(fields, { channel: null, apiToken: null }, new Set(['apiToken'])))).toEqual([
      { path: '/channel', message: 'is required and cannot be cleared' },
      { path: '/apiToken', message: 'is required and cannot be cleared' },
    ]);
  });

  it('lists every problem at once', () => {
    expect(problems(validateConfig(fields, { channel: 1, limit: 1000, region: 'mars', extra: true })).map((p) => p.path)).toEqual(['/extra', '/channel', '/limit', '/region', '/apiToken']);
  });

  it('escapes field names in problem paths as JSON pointers', () => {
    expect(problems(validateConfig({}, { 'a/b~c': 1 }))).toEqual([{ path: '/a~1b~0c', message: 'is not a config field of this template' }]);
  });

  it('no problem message ever repeats a value, whatever field it was sent to', () => {
    fc.assert(fc.property(fc.constantFrom(...Object.keys(fields)), fc.string({ minLength: 8 }).map((s) => `${SECRET}${s}`), (field, value) => {
      const result = validateConfig(fields, { [field]: value, [`${field}_`]: value });
      expect(JSON.stringify(result.ok ? result.plain : result.problems)).not.toContain(SECRET);
    }));
  });
});

describe('migrateConfig', () => {
  const v1: ConfigFields = {
    channel: { type: 'string', required: true },
    limit: { type: 'number', minimum: 0, maximum: 100 },
    region: { type: 'enum', values: ['eu', 'us', 'apac'] },
    retired: { type: 'boolean' },
    apiToken: { type: 'secret', required: true },
    oldSecret: { type: 'secret' },
  };
  const current = { channel: 'ops', limit: 50, region: 'eu', retired: true };
  const stored = new Set(['apiToken', 'oldSecret']);

  function migrated(result: MigrationResult): Extract<MigrationResult, { ok: true }> {
    if (!result.ok) throw new Error(`expected success: ${JSON.stringify(result.problems)}`);
    return result;
  }

  it('carries values and stored secrets over when the fields are unchanged', () => {
    const result = migrated(migrateConfig(v1, v1, current, stored));
    expect(result.plain).toEqual(current);
    expect(result.keepSecrets).toEqual(['apiToken', 'oldSecret']);
    expect(result.secrets).toEqual({});
    expect(result.droppedFields).toEqual([]);
  });

  it('applies defaults of new fields and reports removed ones as dropped', () => {
    const { retired: _r, oldSecret: _o, ...kept } = v1;
    const v2: ConfigFields = { ...kept, verbose: { type: 'boolean', default: true }, mode: { type: 'enum', values: ['a', 'b'], default: 'b' } };
    const result = migrated(migrateConfig(v1, v2, current, stored));
    expect(result.plain).toEqual({ channel: 'ops', limit: 50, region: 'eu', verbose: true, mode: 'b' });
    expect(result.keepSecrets).toEqual(['apiToken']);
    expect(result.droppedFields).toEqual(['oldSecret', 'retired']);
  });

  it('keeps a carried value rather than a changed default', () => {
    const v2: ConfigFields = { ...v1, limit: { type: 'number', minimum: 0, maximum: 100, default: 20 } };
    expect(migrated(migrateConfig(v1, v2, current, stored)).plain['limit']).toBe(50);
  });

  it('reports a new required field without a default, and accepts it when supplied', () => {
    const v2: ConfigFields = { ...v1, tenantId: { type: 'string', required: true } };
    expect(problems(migrateConfig(v1, v2, current, stored))).toEqual([{ path: '/tenantId', message: 'is a new required field without a default: supply a value' }]);
    expect(migrated(migrateConfig(v1, v2, current, stored, { tenantId: 't-1' })).plain['tenantId']).toBe('t-1');
  });

  it('reports a field that became required while it has no value', () => {
    const v2: ConfigFields = { ...v1, limit: { type: 'number', required: true } };
    expect(problems(migrateConfig(v1, v2, { channel: 'ops' }, stored))).toEqual([{ path: '/limit', message: 'is now required, has no value and no default: supply a value' }]);
  });

  it('reports a changed type instead of converting, and accepts an override', () => {
    const v2: ConfigFields = { ...v1, channel: { type: 'number', required: true }, limit: { type: 'string' } };
    expect(problems(migrateConfig(v1, v2, current, stored))).toEqual([
      { path: '/channel', message: 'changed type from string to number: supply a value' },
      { path: '/limit', message: 'changed type from number to string: supply a value, or null to leave it empty' },
    ]);
    const result = migrated(migrateConfig(v1, v2, current, stored, { channel: 7, limit: null }));
    expect(result.plain).toEqual({ channel: 7, region: 'eu', retired: true });
  });

  it('a changed type with no current value needs nothing', () => {
    const v2: ConfigFields = { ...v1, limit: { type: 'string' } };
    expect(migrated(migrateConfig(v1, v2, { channel: 'ops' }, stored)).plain).toEqual({ channel: 'ops' });
  });

  it('reports an enum value that is no longer allowed', () => {
    const v2: ConfigFields = { ...v1, region: { type: 'enum', values: ['us', 'apac'], default: 'us' } };
    expect(problems(migrateConfig(v1, v2, current, stored))).toEqual([
      { path: '/region', message: 'the current value is not valid in the new version (must be one of us, apac): supply a value, or null to leave it empty' },
    ]);
    expect(migrated(migrateConfig(v1, v2, current, stored, { region: 'apac' })).plain['region']).toBe('apac');
    // null falls back to the new default.
    expect(migrated(migrateConfig(v1, v2, current, stored, { region: null })).plain['region']).toBe('us');
  });

  it('reports a number outside the new bounds or no longer whole', () => {
    const v2: ConfigFields = { ...v1, limit: { type: 'number', minimum: 0, maximum: 10, integer: true } };
    expect(problems(migrateConfig(v1, v2, current, stored)).map((p) => p.message)).toEqual(['the current value is not valid in the new version (must be at most 10): supply a value, or null to leave it empty']);
    expect(problems(migrateConfig(v1, v2, { ...current, limit: 2.5 }, stored))[0]?.message).toContain('must be an integer');
  });

  it('moves values between string and enum when they fit the new field', () => {
    const v2: ConfigFields = { ...v1, channel: { type: 'enum', values: ['ops', 'dev'], required: true }, region: { type: 'string', maxLength: 2 } };
    expect(migrated(migrateConfig(v1, v2, current, stored)).plain).toMatchObject({ channel: 'ops', region: 'eu' });
    expect(problems(migrateConfig(v1, v2, { ...current, channel: 'sales', region: 'apac' }, stored)).map((p) => p.path)).toEqual(['/channel', '/region']);
  });

  it('reports a required secret that is neither stored nor supplied, and takes it when supplied', () => {
    const v2: ConfigFields = { ...v1, signingKey: { type: 'secret', required: true } };
    expect(problems(migrateConfig(v1, v2, current, stored))).toEqual([{ path: '/signingKey', message: 'is a required secret in the new version and is not stored: supply it' }]);
    const result = migrated(migrateConfig(v1, v2, current, stored, { signingKey: SECRET }));
    expect(result.secrets).toEqual({ signingKey: SECRET });
    expect(result.keepSecrets).toEqual(['apiToken', 'oldSecret']);
    expect(JSON.stringify(result.plain)).not.toContain(SECRET);
  });

  it('a secret that became required is reported when it was never stored', () => {
    const v2: ConfigFields = { ...v1, oldSecret: { type: 'secret', required: true } };
    expect(problems(migrateConfig(v1, v2, current, new Set(['apiToken'])))).toEqual([{ path: '/oldSecret', message: 'is a required secret in the new version and is not stored: supply it' }]);
  });

  it('a supplied secret replaces the stored one, and null drops an optional one', () => {
    const result = migrated(migrateConfig(v1, v1, current, stored, { apiToken: 'new-token', oldSecret: null }));
    expect(result.secrets).toEqual({ apiToken: 'new-token' });
    expect(result.keepSecrets).toEqual([]);
  });

  it('never moves a value between plain config and secrets: either direction is a reported type change', () => {
    const v2: ConfigFields = { ...v1, channel: { type: 'secret', required: true }, oldSecret: { type: 'string' } };
    expect(problems(migrateConfig(v1, v2, current, stored))).toEqual([
      { path: '/channel', message: 'changed type from string to secret: supply a value' },
      { path: '/oldSecret', message: 'changed type from secret to string: supply a value, or null to leave it empty' },
    ]);
    const result = migrated(migrateConfig(v1, v2, current, stored, { channel: SECRET, oldSecret: 'visible' }));
    expect(result.secrets).toEqual({ channel: SECRET });
    expect(result.plain).toMatchObject({ oldSecret: 'visible' });
    expect(result.keepSecrets).toEqual(['apiToken']);
    expect(JSON.stringify(result.plain)).not.toContain(SECRET);
  });

  it('checks overrides like config values: unknown fields and invalid values are reported', () => {
    expect(problems(migrateConfig(v1, v1, current, stored, { nope: 1, limit: 'many', channel: null }))).toEqual([
      { path: '/nope', message: 'is not a config field of the new version' },
      { path: '/channel', message: 'is required and cannot be cleared' },
      { path: '/limit', message: 'must be a number' },
    ]);
    expect(problems(migrateConfig(v1, v1, current, stored, []))[0]?.path).toBe('');
  });

  it('reports every field that cannot be carried, all at once', () => {
    const v2: ConfigFields = {
      channel: { type: 'number' },
      limit: { type: 'number', maximum: 10 },
      region: { type: 'enum', values: ['us'] },
      apiToken: { type: 'secret', required: true },
      fresh: { type: 'string', required: true },
      key: { type: 'secret', required: true },
    };
    expect(problems(migrateConfig(v1, v2, current, stored)).map((p) => p.path)).toEqual(['/channel', '/limit', '/region', '/fresh', '/key']);
  });

  it('a stored secret of a field absent from the old version still carries when the new field is a secret', () => {
    const result = migrated(migrateConfig({}, { token: { type: 'secret' } }, {}, new Set(['token'])));
    expect(result.keepSecrets).toEqual(['token']);
  });
});
