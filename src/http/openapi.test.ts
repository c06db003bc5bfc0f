/**
 * The OpenAPI document at /openapi.json: a valid OpenAPI 3.1 document (checked by a real
 * validator), small, and complete for every operation — operationId, summary, description, tags,
 * security with the scope, and every error as problem+json with the codes it can carry. A route
 * added without them fails here, and at registration (`checkDocumented`).
 */
import { Validator } from '@seriousme/openapi-schema-validator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type App, buildApp } from '../app.js';
import { parseConfig } from '../config.js';
import { databaseRef } from '../db/open.js';
import { errorStatus, isErrorCode } from '../errors.js';
import { createLogger } from '../logging.js';
import { testClock, testSecrets } from '../testing/app.js';
import { dereference } from '../testing/openapi.js';
import { anyRequestCodes, checkDocumented, tags } from './openapi.js';
import { createHttpServer } from './server.js';

interface Media { schema: Record<string, unknown> }
interface Response { $ref?: string; description?: string; content?: Record<string, Media> }
interface Operation {
  operationId?: string;
  summary?: string;
  description?: string;
  tags?: string[];
  security?: Record<string, string[]>[];
  parameters?: { in: string; name: string }[];
  requestBody?: unknown;
  responses: Record<string, Response>;
}
interface Doc {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, unknown>; responses: Record<string, Response>; parameters: Record<string, unknown> };
}

const METHODS = new Set(['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']);
const operations = (doc: Doc) =>
  Object.entries(doc.paths).flatMap(([path, item]) => Object.entries(item).filter(([method]) => METHODS.has(method)).map(([method, op]) => ({ path, method, op, item })));

/** The codes an error response says it can carry: the enum narrowing the Problem schema. */
function codesOf(response: Response): string[] {
  const schema = response.content?.['application/problem+json']?.schema as { allOf?: { properties?: { code?: { enum?: string[] } } }[] } | undefined;
  // allOf: [Problem, { properties: { code: { enum } } }]; the first part carries the whole union.
  return schema?.allOf?.[1]?.properties?.code?.enum ?? [];
}

describe('the OpenAPI document', () => {
  let app: App;
  let body: string;
  let raw: Doc;
  let doc: Doc;
  beforeAll(async () => {
    app = await buildApp({ config: parseConfig({ LOG_LEVEL: 'silent' }), secrets: testSecrets, logger: createLogger({ level: 'silent' }), db: databaseRef(), runtime: testClock(), startJobs: false });
    const res = await app.http.inject({ method: 'GET', url: '/openapi.json' });
    expect(res.statusCode, res.body).toBe(200);
    body = res.body;
    raw = JSON.parse(body) as Doc;
    doc = dereference(raw);
  });
  afterAll(async () => app.close(0));

  it('is valid OpenAPI 3.1 and every reference resolves', async () => {
    const validator = new Validator();
    const result = await validator.validate(raw as unknown as Record<string, unknown>);
    expect(result.errors ?? [], JSON.stringify(result.errors)).toEqual([]);
    expect(result.valid).toBe(true);
    expect(validator.version).toBe('3.1');
    expect(() => validator.resolveRefs()).not.toThrow();
  });

  it('is under 150 KB, with shared schemas, responses and parameters described once and referenced', () => {
    expect(Buffer.byteLength(body)).toBeLessThan(150_000);
    for (const name of ['Problem', 'Tenant', 'ApiKey', 'Connection', 'Destination', 'Rule', 'Event', 'Delivery', 'Instance', 'Execution', 'InboundSource']) {
      expect(Object.keys(raw.components.schemas), name).toContain(name);
    }
    expect(Object.keys(raw.components.responses)).toEqual(expect.arrayContaining(['KeyUnauthorized', 'AdminUnauthorized', 'NotFound']));
    // Each named schema appears once, in components: the operations reference it.
    expect(body.split('"title":"Delivery"').length - 1).toBe(1);
    expect(body.split('"#/components/schemas/Delivery"').length - 1).toBeGreaterThanOrEqual(3);
  });

  it('gives every operation a unique verbNoun operationId, a summary, a description and known tags', () => {
    const ops = operations(raw);
    expect(ops.length).toBeGreaterThanOrEqual(87);
    const ids = ops.map(({ op }) => op.operationId);
    expect(new Set(ids).size).toBe(ids.length);
    const known = new Set<string>(tags.map((t) => t.name));
    for (const { path, method, op, item } of ops) {
      const where = `${method} ${path}`;
      expect(op.operationId, where).toMatch(/^[a-z][a-zA-Z0-9]+$/);
      expect(op.summary?.trim(), where).toBeTruthy();
      expect((op.description ?? (item as { description?: string }).description)?.trim(), where).toBeTruthy();
      expect(op.tags?.length, where).toBeGreaterThan(0);
      for (const tag of op.tags ?? []) expect(known.has(tag), `${where}: tag ${tag}`).toBe(true);
    }
    expect(ids).toEqual(expect.arrayContaining(['createTenant', 'listTenants', 'createApiKey', 'rotateApiKey', 'createEvent', 'listDeliveries', 'getDelivery', 'retryDelivery', 'retryExecution', 'receiveInboundWebhook', 'getProxy', 'postProxy']));
  });

  it('does not require a query parameter that has a default (`limit`, `cascade`): the server fills it in', () => {
    const params = operations(doc).flatMap(({ op, item }) => [...((item as { parameters?: unknown[] }).parameters ?? []), ...(op.parameters ?? [])] as { in: string; name: string; required?: boolean; schema?: { default?: unknown } }[]);
    const defaulted = params.filter((p) => p.in === 'query' && p.schema?.default !== undefined);
    expect(defaulted.map((p) => p.name)).toEqual(expect.arrayContaining(['limit', 'cascade']));
    for (const p of defaulted) expect(p.required, p.name).not.toBe(true);
  });

  it('states each operation\'s credential: admin token, or an API key with the one scope it needs, named in the extension and the description', () => {
    for (const { path, method, op } of operations(raw)) {
      const where = `${method} ${path}`;
      expect(Array.isArray(op.security), where).toBe(true);
      const [requirement, ...more] = op.security ?? [];
      // A route a workspace key and the admin token may both call (the provider catalog) lists both.
      expect(more, where).toEqual(requirement !== undefined && 'apiKey' in requirement && op.description?.includes('or the admin token') === true ? [{ adminToken: [] }] : []);
      if (requirement === undefined) {
        // Public: only the probes and the signed inbound endpoint.
        expect(['/healthz', '/readyz', '/hooks/{inboundId}', '/v1/audit-log/checkpoint-key'], where).toContain(path);
      } else if ('adminToken' in requirement) {
        expect(requirement, where).toEqual({ adminToken: [] });
      } else {
        const scope = (requirement as { apiKey?: string[] }).apiKey?.[0];
        expect(scope, where).toMatch(/^[a-z]+(:[a-z]+)?$/);
        expect(requirement, where).toEqual({ apiKey: [scope] });
        expect(op.description, where).toContain(`\`${String(scope)}\``);
      }
    }
    expect(raw.paths['/v1/deliveries/{id}/retry']?.['post']?.security).toEqual([{ apiKey: ['deliveries:write'] }]);
    expect(raw.paths['/v1/tenants']?.['post']?.security).toEqual([{ adminToken: [] }]);
  });

  it('declares every error as application/problem+json with codes from the union that carry that status', () => {
    for (const { path, method, op } of operations(doc)) {
      for (const [status, response] of Object.entries(op.responses)) {
        const where = `${method} ${path} ${status}`;
        if (Number(status) < 400) continue;
        expect(Object.keys(response.content ?? {}), where).toEqual(['application/problem+json']);
        const codes = codesOf(response);
        expect(codes.length, where).toBeGreaterThan(0);
        for (const code of codes) {
          expect(isErrorCode(code), `${where}: ${code}`).toBe(true);
          if (isErrorCode(code)) expect(String(errorStatus[code]), `${where}: ${code}`).toBe(status);
        }
      }
    }
    // The shared Problem schema carries the whole closed union.
    const problem = raw.components.schemas['Problem'] as { properties: { code: { enum: string[] } } };
    expect([...problem.properties.code.enum].sort()).toEqual(Object.keys(errorStatus).sort());
  });

  it('lists the generic errors each kind of operation can answer, and the route\'s own', () => {
    const statusCodes = (op: Operation) => Object.fromEntries(Object.entries(op.responses).filter(([s]) => Number(s) >= 400).map(([s, r]) => [s, codesOf(r)]));
    for (const { path, method, op } of operations(doc)) {
      const where = `${method} ${path}`;
      const got = statusCodes(op);
      const all = Object.values(got).flat();
      // Codes any request can meet are listed once in the document's description, not per operation, unless beside another code of their status.
      for (const [status, codes] of Object.entries(got)) expect(codes.some((c) => !anyRequestCodes.includes(c as never)), `${where} ${status}`).toBe(true);
      const requirement = op.security?.[0];
      if (requirement !== undefined) {
        expect(all, where).toEqual(expect.arrayContaining(['unauthenticated', 'rate_limited']));
        if ('apiKey' in requirement) expect(all, where).toEqual(expect.arrayContaining(['api_key_unknown', 'api_key_revoked', 'insufficient_scope', 'ip_not_allowed']));
        else expect(all, where).toContain('admin_token_invalid');
      }
      expect(all, where).toEqual(expect.arrayContaining(['bad_request', 'text_invalid']));
      if (path.includes('{')) expect(all, where).toEqual(expect.arrayContaining(['not_found', 'validation_failed']));
      if (op.requestBody !== undefined) expect(all, where).toEqual(expect.arrayContaining(['validation_failed', 'malformed_json', 'json_too_deep', 'unsupported_media_type']));
    }
    const codes = (path: string, method: string) => Object.values(statusCodes(doc.paths[path]?.[method] as Operation)).flat();
    expect(codes('/v1/tenants', 'post')).toContain('slug_taken');
    expect(codes('/v1/tenants/{id}', 'delete')).toContain('tenant_not_empty');
    expect(codes('/v1/events', 'post')).toEqual(expect.arrayContaining(['idempotency_key_reused', 'quota_exceeded', 'invalid_event_type']));
    expect(codes('/v1/tenants', 'get')).toContain('invalid_cursor');
    expect(codes('/v1/executions/{id}/retry', 'post')).toEqual(expect.arrayContaining(['execution_not_failed', 'execution_retry_pending']));
    expect(codes('/hooks/{inboundId}', 'post')).toEqual(expect.arrayContaining(['signature_invalid', 'signature_replayed']));
    expect(codes('/v1/proxy/{connectionId}/{*}', 'get')).toEqual(expect.arrayContaining(['relay_target_not_allowed', 'egress_blocked', 'upstream_unavailable']));
  });

  it('is served from /openapi.json without credentials, and is itself left out of the document', () => {
    expect(raw.openapi).toBe('3.1.0');
    expect(Object.keys(raw.paths)).not.toContain('/openapi.json');
    expect(Object.keys(raw.paths)).not.toContain('/metrics');
  });
});

describe('a route without its OpenAPI metadata', () => {
  const documented = { operationId: 'listWidgets', summary: 'List widgets', description: 'Lists widgets.', tags: ['events'] };
  const route = (schema: Record<string, unknown>, method: string | string[] = 'GET') => ({ method, url: '/v1/widgets', schema, config: { auth: { scope: 'events:read' as const } } });

  it('cannot be registered', () => {
    for (const missing of ['operationId', 'summary', 'description', 'tags'] as const) {
      const { [missing]: _gone, ...rest } = documented;
      expect(() => { checkDocumented(route(rest), new Set()); }, missing).toThrow(new RegExp(`no .*${missing}`));
    }
    expect(() => { checkDocumented(route({ ...documented, operationId: 'List_widgets' }), new Set()); }).toThrow(/verbNoun/);
    expect(() => { checkDocumented(route({ ...documented, tags: ['widgets'] }), new Set()); }).toThrow(/unknown tag widgets/);
    expect(() => { checkDocumented(route({ ...documented, security: [{ apiKey: [] }] }), new Set()); }).toThrow(/derived from config.auth/);
    const taken = new Set<string>();
    checkDocumented(route(documented), taken);
    expect(() => { checkDocumented(route(documented), taken); }).toThrow(/already taken/);
    // Hidden routes and Fastify's automatic HEAD routes are not documented, so need nothing.
    expect(() => { checkDocumented(route({ hide: true }), new Set()); }).not.toThrow();
    expect(() => { checkDocumented(route({}, 'HEAD'), new Set()); }).not.toThrow();
    // One route, several methods: one operationId per method.
    const ids = new Set<string>();
    checkDocumented(route({ ...documented, operationId: 'proxy' }, ['GET', 'POST']), ids);
    expect([...ids]).toEqual(['getProxy', 'postProxy']);
  });

  it('stops the server from starting', async () => {
    const config = parseConfig({ LOG_LEVEL: 'silent' });
    const http = await createHttpServer({ logger: createLogger({ level: 'silent' }), bodyLimit: config.bodyLimitBytes, trustProxy: config.trustProxy, version: 'test', connections: { requestTimeoutMs: config.requestTimeoutMs, uploadsPerAddress: config.uploadsPerAddress } });
    try {
      expect(() => http.get('/v1/undocumented', { config: { auth: 'admin' }, schema: { tags: ['tenancy'] } }, () => Promise.resolve({}))).toThrow(/has no operationId, summary, description/);
      http.get('/v1/documented', { config: { auth: 'admin' }, schema: { operationId: 'getDocumented', summary: 'Read it', description: 'Reads it.', tags: ['tenancy'] } }, () => Promise.resolve({}));
      expect(() => http.post('/v1/documented', { config: { auth: 'admin' }, schema: { operationId: 'getDocumented', summary: 'Post it', description: 'Posts it.', tags: ['tenancy'] } }, () => Promise.resolve({}))).toThrow(/already taken/);
    } finally {
      await http.close();
    }
  });
});
