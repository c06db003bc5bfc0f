import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import example from './examples/crm-contact-sync.json' with { type: 'json' };
import { MAX_SEMVER_LENGTH, SEMVER_PATTERN } from './semver.js';
import {
  compareSemver,
  grantedCapabilities,
  isSemver,
  MAX_TEMPLATE_BYTES,
  MAX_TRANSFORM_CODE_BYTES,
  PATTERN_MESSAGES,
  templateSchema,
  validateTemplate,
  type TemplateDocument,
  type TemplateProblem,
} from './template.js';

type Doc = Record<string, unknown> & { config?: Record<string, unknown>; triggers: unknown[]; steps: unknown[] };

/** The smallest valid template, as a fresh mutable object. */
const minimal = (): Doc => ({
  name: 'minimal',
  version: '0.1.0',
  triggers: [{ type: 'event', eventTypes: ['*'] }],
  steps: [{ name: 'out', type: 'deliver', destination: 'hook' }],
  destinations: { hook: {} },
});

function problemsOf(doc: unknown): TemplateProblem[] {
  const result = validateTemplate(doc);
  if (result.ok) throw new Error('expected the template to be rejected');
  return result.problems;
}

const paths = (doc: unknown): string[] => problemsOf(doc).map((p) => p.path);

function accepted(doc: unknown): TemplateDocument {
  const result = validateTemplate(doc);
  if (!result.ok) throw new Error(`expected the template to be accepted: ${JSON.stringify(result.problems)}`);
  return result.template;
}

describe('the published example', () => {
  it('crm-contact-sync validates and uses every part of the document', () => {
    const t = accepted(example);
    expect(t.name).toBe('crm-contact-sync');
    expect(new Set(t.triggers.map((x) => x.type))).toEqual(new Set(['event', 'inbound', 'cron']));
    expect(new Set(t.steps.map((x) => x.type))).toEqual(new Set(['filter', 'transform', 'connection', 'deliver']));
    expect(new Set(Object.values(t.config ?? {}).map((f) => f.type))).toEqual(new Set(['string', 'number', 'boolean', 'enum', 'secret']));
    expect(grantedCapabilities(t)).toEqual(['connections.crm.request']);
  });

  it('the template returned is a copy: changing the input afterwards changes nothing', () => {
    const doc = minimal();
    const t = accepted(doc);
    (doc.steps[0] as Record<string, unknown>)['destination'] = 'elsewhere';
    expect(t.steps[0]).toEqual({ name: 'out', type: 'deliver', destination: 'hook' });
  });

  it('a minimal template (one trigger, one step, no config) validates', () => {
    expect(accepted(minimal()).config).toBeUndefined();
  });

  it('every kind of trigger and step validates in its fullest form', () => {
    const doc = {
      ...minimal(),
      $schema: 'https://bulkhead.example/v1/integrations/schema',
      description: 'all the options',
      connections: { crm: { provider: 'hub-spot_2', scopes: ['a.b', 'c:d'], description: 'x' }, chat: { provider: 'slack' } },
      inboundSources: { github: { description: 'pushes' } },
      destinations: { hook: { description: 'out' } },
      triggers: [
        { type: 'event', eventTypes: ['contact.created', 'contact.*', '*'] },
        { type: 'inbound', source: 'github' },
        { type: 'inbound', source: 'github', eventTypes: ['push'] },
        { type: 'cron', schedule: '*/5 * * * *' },
        { type: 'cron', schedule: '@daily', timezone: 'America/New_York' },
      ],
      steps: [
        { name: 'only-big', type: 'filter', filter: { 'amount.total': { $gte: 100 }, $not: { status: 'void' } } },
        { name: 'shape_js', type: 'transform', language: 'javascript', code: 'function transform(e) { return e; }' },
        { name: 'shape-ts', type: 'transform', language: 'typescript', code: 'function transform(e: unknown) { return e; }' },
        { name: 'push', type: 'connection', connection: 'crm', method: 'PATCH', path: '/crm/v3/objects/contacts/{id}', query: { idProperty: 'email', 'a[b]': '' } },
        { name: 'get', type: 'connection', connection: 'chat', method: 'GET', path: '/' },
        { name: 'notify', type: 'deliver', destination: 'hook', eventType: 'crm.contact.synced' },
      ],
      capabilities: ['connections.crm.request'],
    };
    expect(accepted(doc).steps).toHaveLength(6);
  });
});

describe('the published schema', () => {
  it('is a frozen draft 2020-12 schema', () => {
    expect(templateSchema['$schema']).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(Object.isFrozen(templateSchema)).toBe(true);
    expect(Object.isFrozen(templateSchema['$defs'])).toBe(true);
    expect(() => { (templateSchema as Record<string, unknown>)['title'] = 'changed'; }).toThrow(TypeError);
  });

  it('states the semver grammar the code uses', () => {
    const properties = templateSchema['properties'] as Record<string, Record<string, unknown>>;
    expect(properties['version']?.['pattern']).toBe(SEMVER_PATTERN);
    expect(properties['version']?.['maxLength']).toBe(MAX_SEMVER_LENGTH);
  });

  it('every pattern in the schema has a message in words', () => {
    const patterns = new Set<string>();
    const walk = (node: unknown): void => {
      if (Array.isArray(node)) node.forEach(walk);
      else if (typeof node === 'object' && node !== null) {
        for (const [key, value] of Object.entries(node)) {
          if (key === 'pattern' && typeof value === 'string') patterns.add(value);
          walk(value);
        }
      }
    };
    walk(templateSchema);
    expect(patterns.size).toBeGreaterThan(5);
    for (const pattern of patterns) expect(PATTERN_MESSAGES[pattern], pattern).toBeTypeOf('string');
  });
});

describe('shape', () => {
  it.each([null, [], 'template', 42, undefined])('refuses %j as a document', (doc) => {
    expect(problemsOf(doc)).toEqual([{ path: '', message: 'a template is a JSON object' }]);
  });

  it('refuses a document that is not JSON (a cycle) without throwing', () => {
    const doc: Record<string, unknown> = minimal();
    doc['self'] = doc;
    expect(paths(doc)).toEqual(['']);
  });

  it('names every missing required property', () => {
    expect(paths({}).sort()).toEqual(['/name', '/steps', '/triggers', '/version']);
  });

  it('refuses unknown properties everywhere, pointing at each', () => {
    const doc = minimal();
    doc['extra'] = true;
    doc.config = { limit: { type: 'number', unit: 'ms' } };
    doc['connections'] = { crm: { provider: 'hubspot', token: 'x' } };
    doc['destinations'] = { hook: { url: 'https://example.com' } };
    doc['inboundSources'] = { gh: { secret: 's' } };
    doc.triggers = [{ type: 'event', eventTypes: ['a'], filter: {} }, { type: 'cron', schedule: '* * * * *', seconds: true }];
    doc.steps = [{ name: 'out', type: 'deliver', destination: 'hook', retries: 3 }];
    expect(problemsOf(doc)).toEqual(expect.arrayContaining([
      { path: '/extra', message: 'is not a known property here' },
      { path: '/config/limit/unit', message: 'is not a known property here' },
      { path: '/connections/crm/token', message: 'is not a known property here' },
      { path: '/destinations/hook/url', message: 'is not a known property here' },
      { path: '/inboundSources/gh/secret', message: 'is not a known property here' },
      { path: '/triggers/0/filter', message: 'is not a known property here' },
      { path: '/triggers/1/seconds', message: 'is not a known property here' },
      { path: '/steps/0/retries', message: 'is not a known property here' },
    ]));
  });

  it('accepts any paths inside a filter (its own grammar is checked separately)', () => {
    const doc = minimal();
    doc.steps.unshift({ name: 'f', type: 'filter', filter: { 'anything.at.all': 1, 'customer-id': { $in: ['a'] } } });
    accepted(doc);
  });

  it('reports a filter that breaks the filter grammar at the filter', () => {
    const doc = minimal();
    doc.steps.unshift({ name: 'f', type: 'filter', filter: { amount: { $regex: '.*' } } });
    expect(problemsOf(doc)).toEqual([{ path: '/steps/0/filter', message: expect.stringContaining('$regex') as string }]);
  });

  it('checks names, versions and identifiers, in words', () => {
    const doc = minimal();
    doc['name'] = 'CRM Sync';
    doc['version'] = '1.0';
    doc.steps = [{ name: 'Out Step', type: 'deliver', destination: 'hook' }];
    expect(problemsOf(doc)).toEqual([
      { path: '/name', message: 'must be 1 to 63 characters of a-z, 0-9 and -, starting with a letter or digit' },
      { path: '/version', message: 'must be a semantic version such as 1.2.0 or 2.0.0-rc.1' },
      { path: '/steps/0/name', message: 'must be 1 to 63 characters of a-z, 0-9, _ and -, starting with a letter or digit' },
    ]);
  });

  it.each([
    ['a 64-character name', { name: 'a'.repeat(64) }, '/name'],
    ['a description over 1000 characters', { description: 'x'.repeat(1001) }, '/description'],
    ['no triggers', { triggers: [] }, '/triggers'],
    ['21 triggers', { triggers: Array.from({ length: 21 }, () => ({ type: 'event', eventTypes: ['a'] })) }, '/triggers'],
    ['no steps', { steps: [] }, '/steps'],
    ['21 steps', { steps: Array.from({ length: 21 }, (_, i) => ({ name: `s${i}`, type: 'deliver', destination: 'hook' })) }, '/steps'],
    ['51 config fields', { config: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`f${i}`, { type: 'boolean' }])) }, '/config'],
    ['a duplicated capability', { connections: { crm: { provider: 'p' } }, capabilities: ['connections.crm.request', 'connections.crm.request'] }, '/capabilities'],
  ])('refuses %s', (_label, patch, path) => {
    expect(paths({ ...minimal(), ...patch })).toContain(path);
  });

  it('names the allowed types when a type is unknown or missing', () => {
    const doc = minimal();
    doc.config = { a: { type: 'date' }, b: { required: true } };
    doc.triggers = [{ type: 'webhook' }];
    doc.steps = [{ name: 'x', type: 'http' }, { name: 'y', type: 7 }];
    expect(problemsOf(doc)).toEqual([
      { path: '/config/a/type', message: 'must be one of string, number, boolean, enum, secret' },
      { path: '/config/b/type', message: 'is required and must be a string' },
      { path: '/triggers/0/type', message: 'must be one of event, inbound, cron' },
      { path: '/steps/0/type', message: 'must be one of filter, transform, connection, deliver' },
      { path: '/steps/1/type', message: 'is required and must be a string' },
    ]);
  });

  it('reports a wrong shape against the branch of its own type only', () => {
    const doc = minimal();
    doc.steps = [{ name: 'push', type: 'connection', connection: 'crm', method: 'FETCH' }];
    doc['connections'] = { crm: { provider: 'hubspot' } };
    expect(problemsOf(doc)).toEqual([
      { path: '/steps/0/path', message: 'is required' },
      { path: '/steps/0/method', message: 'must be equal to one of the allowed values: ["GET","POST","PUT","PATCH","DELETE"]' },
    ]);
  });

  it('checks event type patterns and emitted event types', () => {
    const doc = minimal();
    doc.triggers = [{ type: 'event', eventTypes: ['Contact.Created', 'contact..x', 'contact.*'] }];
    doc.steps = [{ name: 'out', type: 'deliver', destination: 'hook', eventType: 'crm.*' }];
    expect(paths(doc)).toEqual(['/triggers/0/eventTypes/0', '/triggers/0/eventTypes/1', '/steps/0/eventType']);
  });

  it('refuses an emitted event type in the reserved bulkhead namespace', () => {
    const doc = minimal();
    doc.steps = [{ name: 'out', type: 'deliver', destination: 'hook', eventType: 'bulkhead.delivery.failing' }];
    expect(problemsOf(doc)).toEqual([{ path: '/steps/0/eventType', message: 'is in the reserved bulkhead namespace' }]);
  });

  it('slot names are identifiers the sandbox can address, and not its reserved words', () => {
    for (const name of ['then', 'constructor', 'prototype', 'Crm', 'my-crm', '2crm', '_crm', '__proto__']) {
      const doc = { ...minimal(), connections: { [name]: { provider: 'hubspot' } } };
      expect(paths(doc), name).toEqual([`/connections/${name}`]);
    }
  });

  it('checks provider ids and scopes of connection slots', () => {
    const doc = { ...minimal(), connections: { crm: { provider: 'Hub Spot', scopes: ['ok', 'has space', ''] } } };
    expect(paths(doc)).toEqual(['/connections/crm/provider', '/connections/crm/scopes/1', '/connections/crm/scopes/2']);
  });

  it('connection paths are relative paths without a query, a fragment or dot segments', () => {
    for (const [path, ok] of [
      ['/crm/v3/objects', true], ['/a/b.json', true], ['/a/..b', true], ['crm/v3', false], ['https://evil.example/x', false], ['/a?x=1', false],
      ['/a#f', false], ['/a b', false], ['/a/../admin', false], ['/..', false], ['/./a', false], ['/a/%2e%2E/b', false], ['/a/%2e', false],
    ] as const) {
      const doc = { ...minimal(), connections: { crm: { provider: 'p' } } };
      doc.steps = [{ name: 's', type: 'connection', connection: 'crm', method: 'GET', path }];
      expect(validateTemplate(doc).ok, path).toBe(ok);
    }
  });
});

describe('cross-field rules', () => {
  it('a connection step must name a declared connection slot', () => {
    const doc = { ...minimal(), connections: { crm: { provider: 'hubspot' } } };
    doc.steps = [{ name: 'push', type: 'connection', connection: 'billing', method: 'POST', path: '/x' }];
    expect(problemsOf(doc)).toEqual([{ path: '/steps/0/connection', message: 'does not name a slot declared in connections' }]);
  });

  it('a deliver step must name a declared destination slot', () => {
    const doc = minimal();
    delete doc['destinations'];
    expect(problemsOf(doc)).toEqual([{ path: '/steps/0/destination', message: 'does not name a slot declared in destinations' }]);
  });

  it('an inbound trigger must name a declared inbound source slot', () => {
    const doc = { ...minimal(), inboundSources: { github: {} } };
    doc.triggers = [{ type: 'inbound', source: 'gitlab' }];
    expect(problemsOf(doc)).toEqual([{ path: '/triggers/0/source', message: 'does not name a slot declared in inboundSources' }]);
  });

  it('slots of one kind do not satisfy references of another', () => {
    const doc = { ...minimal(), connections: { hook: { provider: 'p' } }, destinations: { crm: {} }, inboundSources: { crm: {} } };
    doc.triggers = [{ type: 'inbound', source: 'hook' }];
    doc.steps = [{ name: 'a', type: 'connection', connection: 'crm', method: 'GET', path: '/' }, { name: 'b', type: 'deliver', destination: 'hook' }];
    expect(paths(doc)).toEqual(['/triggers/0/source', '/steps/0/connection', '/steps/1/destination']);
  });

  it('step names are unique', () => {
    const doc = minimal();
    doc.steps = [
      { name: 'out', type: 'deliver', destination: 'hook' },
      { name: 'other', type: 'deliver', destination: 'hook' },
      { name: 'out', type: 'deliver', destination: 'hook' },
    ];
    expect(problemsOf(doc)).toEqual([{ path: '/steps/2/name', message: 'duplicates the name of step 0' }]);
  });

  it('cron schedules must parse, and the problem points at the schedule or the time zone', () => {
    const doc = minimal();
    doc.triggers = [
      { type: 'cron', schedule: '*/5 * * * * *' },
      { type: 'cron', schedule: '61 * * * *' },
      { type: 'cron', schedule: '0 9 * * *', timezone: 'Europe/Atlantis' },
      { type: 'cron', schedule: '@reboot' },
      { type: 'cron', schedule: '0 9 * * 1-5', timezone: 'Europe/Berlin' },
    ];
    expect(paths(doc)).toEqual(['/triggers/0/schedule', '/triggers/1/schedule', '/triggers/2/timezone', '/triggers/3/schedule']);
  });

  it('a property the schema already refused is reported once', () => {
    const doc = minimal();
    doc.triggers = [{ type: 'cron', schedule: `${'1,'.repeat(60)}1 * * * *`, timezone: `Europe/${'x'.repeat(60)}` }];
    expect(paths(doc)).toEqual(['/triggers/0/schedule', '/triggers/0/timezone']);
  });

  it('transform code is at most 256 KiB of UTF-8, however many characters that is', () => {
    const at = (code: string) => {
      const doc = minimal();
      doc.steps.unshift({ name: 't', type: 'transform', language: 'javascript', code });
      return validateTemplate(doc);
    };
    expect(at('x'.repeat(MAX_TRANSFORM_CODE_BYTES)).ok).toBe(true);
    const ascii = at('x'.repeat(MAX_TRANSFORM_CODE_BYTES + 1));
    expect(ascii.ok ? [] : ascii.problems).toEqual([{ path: '/steps/0/code', message: expect.any(String) as string }]);
    // 100,000 three-byte characters: within the character bound, over the byte bound.
    const wide = at(`// ${'€'.repeat(100_000)}`);
    expect(wide.ok ? [] : wide.problems).toEqual([{ path: '/steps/0/code', message: `is larger than ${MAX_TRANSFORM_CODE_BYTES} bytes (UTF-8)` }]);
  });

  it('the whole document is at most 1 MiB', () => {
    const doc = minimal();
    doc['description'] = 'x';
    doc.steps = Array.from({ length: 5 }, (_, i) => ({ name: `t${i}`, type: 'transform', language: 'javascript', code: 'x'.repeat(250_000) }));
    expect(problemsOf(doc)).toEqual([{ path: '', message: `the template is larger than ${MAX_TEMPLATE_BYTES} bytes` }]);
  });

  it('a secret field cannot have a default', () => {
    const doc = { ...minimal(), config: { apiToken: { type: 'secret', required: true, default: 'sk_live_123' } } };
    const problems = problemsOf(doc);
    expect(problems).toEqual([{ path: '/config/apiToken/default', message: 'a secret field cannot have a default: secrets are supplied per instance' }]);
    expect(JSON.stringify(problems)).not.toContain('sk_live_123');
  });

  it('defaults must be values the field accepts', () => {
    const doc = {
      ...minimal(),
      config: {
        region: { type: 'enum', values: ['eu', 'us'], default: 'asia' },
        limit: { type: 'number', minimum: 0, maximum: 100, default: 101 },
        floor: { type: 'number', minimum: 10, default: 9 },
        whole: { type: 'number', integer: true, default: 1.5 },
        short: { type: 'string', maxLength: 3, default: 'long' },
        implicit: { type: 'string', default: 'x'.repeat(2001) },
        wrong: { type: 'boolean', default: 'yes' },
        fine: { type: 'number', minimum: 0, maximum: 100, integer: true, default: 100 },
      },
    };
    expect(problemsOf(doc)).toEqual([
      { path: '/config/wrong/default', message: 'must be boolean' },
      { path: '/config/region/default', message: 'must be one of eu, us' },
      { path: '/config/limit/default', message: 'must be at most 100' },
      { path: '/config/floor/default', message: 'must be at least 10' },
      { path: '/config/whole/default', message: 'must be an integer' },
      { path: '/config/short/default', message: 'must be at most 3 characters' },
      { path: '/config/implicit/default', message: 'must be at most 2000 characters' },
    ]);
  });

  it('a number field cannot have its minimum above its maximum', () => {
    const doc = { ...minimal(), config: { n: { type: 'number', minimum: 5, maximum: 1 } } };
    expect(problemsOf(doc)).toEqual([{ path: '/config/n/minimum', message: 'is greater than maximum' }]);
  });

  it('config field names and enum values are checked', () => {
    const doc = { ...minimal(), config: { '9lives': { type: 'boolean' }, 'a-b': { type: 'boolean' }, e: { type: 'enum', values: [] }, d: { type: 'enum', values: ['a', 'a'] } } };
    expect(paths(doc)).toEqual(['/config/9lives', '/config/a-b', '/config/e/values', '/config/d/values']);
  });

  it('capabilities may only name declared connection slots', () => {
    const doc = { ...minimal(), connections: { crm: { provider: 'hubspot' } }, capabilities: ['connections.crm.request', 'connections.billing.request', 'fs.read', 'connections.crm.delete'] };
    expect(problemsOf(doc)).toEqual([
      { path: '/capabilities/2', message: 'must be connections.<slot>.request' },
      { path: '/capabilities/3', message: 'must be connections.<slot>.request' },
      { path: '/capabilities/1', message: 'names a connection slot that is not declared in connections' },
    ]);
  });

  it('lists every problem of a document at once', () => {
    const doc = {
      name: 'Bad',
      version: 'one',
      config: { s: { type: 'secret', default: 'x' }, e: { type: 'enum', values: ['a'], default: 'b' } },
      connections: { crm: { provider: 'hubspot' } },
      triggers: [{ type: 'cron', schedule: 'every minute' }, { type: 'inbound', source: 'nowhere' }],
      steps: [
        { name: 'a', type: 'connection', connection: 'nowhere', method: 'GET', path: '/' },
        { name: 'a', type: 'deliver', destination: 'nowhere' },
      ],
      capabilities: ['connections.nowhere.request'],
    };
    expect(paths(doc).sort()).toEqual([
      '/capabilities/0', '/config/e/default', '/config/s/default', '/name', '/steps/0/connection', '/steps/1/destination', '/steps/1/name',
      '/triggers/0/schedule', '/triggers/1/source', '/version',
    ]);
  });

  it('never throws, and points every problem into the document, whatever the input', () => {
    const templateish = fc.record({
      name: fc.oneof(fc.string(), fc.constant('ok')),
      version: fc.oneof(fc.string(), fc.constant('1.0.0')),
      config: fc.dictionary(fc.string(), fc.jsonValue()),
      triggers: fc.array(fc.oneof(fc.jsonValue(), fc.record({ type: fc.constantFrom('event', 'inbound', 'cron'), schedule: fc.string(), source: fc.string(), eventTypes: fc.jsonValue() }))),
      steps: fc.array(fc.oneof(fc.jsonValue(), fc.record({ name: fc.string(), type: fc.constantFrom('filter', 'transform', 'connection', 'deliver'), filter: fc.jsonValue(), connection: fc.string(), path: fc.string() }))),
      capabilities: fc.jsonValue(),
    }, { requiredKeys: [] });
    fc.assert(fc.property(fc.oneof(fc.jsonValue(), templateish), (doc) => {
      const result = validateTemplate(doc);
      if (!result.ok) {
        expect(result.problems.length).toBeGreaterThan(0);
        for (const p of result.problems) expect(p.path).toMatch(/^(\/[^/]*)*$/);
      }
    }), { numRuns: 300 });
  });
});

describe('granted capabilities', () => {
  const withTransform = (extra: Record<string, unknown> = {}): TemplateDocument => accepted({
    ...minimal(),
    connections: { crm: { provider: 'hubspot' }, chat: { provider: 'slack' } },
    steps: [{ name: 't', type: 'transform', language: 'javascript', code: 'function transform(e) { return e; }' }, { name: 'out', type: 'deliver', destination: 'hook' }],
    ...extra,
  });

  it('without a list, a template with a transform may call every declared connection slot', () => {
    expect(grantedCapabilities(withTransform())).toEqual(['connections.crm.request', 'connections.chat.request']);
  });

  it('an explicit list is the grant, and an empty one grants nothing', () => {
    expect(grantedCapabilities(withTransform({ capabilities: ['connections.chat.request'] }))).toEqual(['connections.chat.request']);
    expect(grantedCapabilities(withTransform({ capabilities: [] }))).toEqual([]);
  });

  it('a template without transforms grants nothing: connection steps run in the host', () => {
    const t = accepted({ ...minimal(), connections: { crm: { provider: 'hubspot' } }, steps: [{ name: 'p', type: 'connection', connection: 'crm', method: 'GET', path: '/' }] });
    expect(grantedCapabilities(t)).toEqual([]);
  });

  it('no connections, nothing to grant', () => {
    expect(grantedCapabilities(withTransform({ connections: {} }))).toEqual([]);
  });
});

describe('semantic versions', () => {
  it.each(['0.0.0', '1.2.3', '10.20.30', '1.0.0-alpha', '1.0.0-alpha.1', '1.0.0-0.3.7', '1.0.0-x.7.z.92', '1.0.0+20130313144700', '1.0.0-beta+exp.sha.5114f85', '1.0.0--', '99999999999999999999.0.0'])('%s is a version', (v) => {
    expect(isSemver(v)).toBe(true);
  });

  it.each(['1', '1.2', '1.2.3.4', 'v1.2.3', '01.2.3', '1.02.3', '1.2.03', '1.2.3-', '1.2.3-01', '1.2.3+', '1.2.3-a..b', ' 1.2.3', '1.2.3 ', '', '1.2.3-ä', `1.0.0-${'a'.repeat(MAX_SEMVER_LENGTH)}`])('%j is not', (v) => {
    expect(isSemver(v)).toBe(false);
  });

  it('orders by precedence as semver 2.0 §11 lists it', () => {
    const ordered = ['1.0.0-alpha', '1.0.0-alpha.1', '1.0.0-alpha.beta', '1.0.0-beta', '1.0.0-beta.2', '1.0.0-beta.11', '1.0.0-rc.1', '1.0.0', '1.0.1', '1.1.0', '1.10.0', '2.0.0', '10.0.0'];
    for (let i = 0; i < ordered.length; i++) {
      for (let j = 0; j < ordered.length; j++) {
        const a = ordered[i] ?? '';
        const b = ordered[j] ?? '';
        expect(Math.sign(compareSemver(a, b)), `${a} vs ${b}`).toBe(Math.sign(i - j));
      }
    }
  });

  it('ignores build metadata and compares numbers beyond 2^53 exactly', () => {
    expect(compareSemver('1.0.0+build.1', '1.0.0+build.2')).toBe(0);
    expect(compareSemver('1.0.0-rc.1+a', '1.0.0-rc.1')).toBe(0);
    expect(compareSemver('9007199254740993.0.0', '9007199254740992.0.0')).toBe(1);
    expect(compareSemver('1.0.0-9007199254740993', '1.0.0-9007199254740992')).toBe(1);
    // Numeric identifiers sort before alphanumeric ones, even "larger" looking ones.
    expect(compareSemver('1.0.0-999', '1.0.0-a')).toBe(-1);
  });

  it('refuses to order something that is not a version', () => {
    expect(() => compareSemver('1.0', '1.0.0')).toThrow(TypeError);
    expect(() => compareSemver('1.0.0', 'latest')).toThrow(TypeError);
  });

  it('is a total order: antisymmetric and transitive', () => {
    const id = fc.oneof(fc.nat({ max: 20 }).map(String), fc.stringMatching(/^[a-z][a-z0-9-]{0,3}$/));
    const version = fc.tuple(fc.nat({ max: 3 }), fc.nat({ max: 3 }), fc.nat({ max: 3 }), fc.array(id, { maxLength: 3 }), fc.option(fc.stringMatching(/^[a-z0-9]{1,4}$/)))
      .map(([a, b, c, pre, build]) => `${a}.${b}.${c}${pre.length > 0 ? `-${pre.join('.')}` : ''}${build === null ? '' : `+${build}`}`);
    fc.assert(fc.property(version, version, version, (a, b, c) => {
      expect(isSemver(a)).toBe(true);
      expect(Math.sign(compareSemver(a, b)) + Math.sign(compareSemver(b, a))).toBe(0);
      if (compareSemver(a, b) <= 0 && compareSemver(b, c) <= 0) expect(compareSemver(a, c)).toBeLessThanOrEqual(0);
    }), { numRuns: 500 });
  });
});
