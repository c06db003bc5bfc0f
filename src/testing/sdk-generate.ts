/**
 * Generates the SDK's checked-in sources from the server's own OpenAPI document: the app is built
 * in-process (no database, no listener), `/openapi.json` is fetched through `inject`, and
 *   - sdk/src/openapi.ts    is what openapi-typescript makes of it (the types);
 *   - sdk/src/operations.ts is the table the client is built from: group → method → operation.
 * `npm run sdk:generate` writes both; sdk/test/generated.test.ts fails when they differ from what
 * the current server generates, so a route change without a regenerated SDK fails CI.
 *
 * The naming rule (docs/SDK.md): the group is the operation's tag in camelCase (`api-keys` →
 * `apiKeys`); the method is the operationId with the group's noun taken out (`createEvent` →
 * `events.create`, `listWorkspaceApiKeys` → `apiKeys.listWorkspace`), or the whole operationId
 * when the noun is not in it (`connections.createConnectSession`).
 */
import { writeFile } from 'node:fs/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import openapiTS, { astToString } from 'openapi-typescript';
import { buildApp } from '../app.js';
import { parseConfig } from '../config.js';
import { databaseRef } from '../db/open.js';
import { createLogger } from '../logging.js';
import { testClock, testSecrets } from './app.js';

/** The nouns taken out of an operationId, per tag, longest first (plural before singular). */
export const tagNouns: Readonly<Record<string, readonly string[]>> = {
  tenancy: [],
  usage: ['Usage'],
  'api-keys': ['ApiKeys', 'ApiKey'],
  audit: ['AuditLog', 'Audit'],
  providers: ['Providers', 'Provider'],
  connections: ['Connections', 'Connection'],
  relay: ['Proxy', 'Relay'],
  destinations: ['Destinations', 'Destination'],
  rules: ['Rules', 'Rule'],
  events: ['Events', 'Event'],
  deliveries: ['Deliveries', 'Delivery'],
  integrations: ['Integrations', 'Integration'],
  instances: ['Instances', 'Instance'],
  executions: ['Executions', 'Execution'],
  inbound: ['Inbound'],
  health: ['Health'],
};

export const groupOf = (tag: string): string => tag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** `operationId` minus the first of the tag's nouns that sits on a word boundary in it. */
export function methodOf(tag: string, operationId: string): string {
  const nouns = tagNouns[tag];
  if (nouns === undefined) throw new Error(`tag "${tag}" has no entry in tagNouns (src/testing/sdk-generate.ts)`);
  for (const noun of nouns) {
    const match = new RegExp(`${noun}(?=[A-Z]|$)`).exec(operationId);
    if (match) return operationId.slice(0, match.index) + operationId.slice(match.index + noun.length);
  }
  return operationId;
}

interface Schema { $ref?: string; type?: string; required?: string[]; minProperties?: number; anyOf?: unknown[]; oneOf?: unknown[]; allOf?: unknown[] }
interface Operation {
  operationId: string;
  tags: string[];
  parameters?: { in: string; name: string; $ref?: string }[];
  requestBody?: { required?: boolean; content?: Record<string, { schema?: Schema } | undefined> };
}
interface Document { paths: Record<string, Record<string, unknown>>; components: { parameters?: Record<string, { in: string; name: string }>; schemas?: Record<string, Schema> } }
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch'];

/**
 * `body`: whether the operation takes a JSON body, and whether it may be left out — when the
 * document does not require it, or `{}` is valid (an object schema with nothing required and no
 * `minProperties`: `rotateDestinationSecret`, not a PATCH that needs one field). The client sends
 * `{}` for one left out, so the server's "body must be object" never reaches a caller.
 */
export type BodyKind = 'none' | 'required' | 'optional';
export interface OperationEntry { operationId: string; method: string; path: string; paginated: boolean; body: BodyKind }

function bodyKind(doc: Document, op: Operation): BodyKind {
  const json = op.requestBody?.content?.['application/json'];
  if (json === undefined) return 'none';
  if (op.requestBody?.required !== true) return 'optional';
  let schema = json.schema;
  if (schema?.$ref !== undefined) schema = doc.components.schemas?.[schema.$ref.split('/').at(-1) ?? ''];
  if (schema?.type !== 'object' || schema.anyOf || schema.oneOf || schema.allOf) return 'required';
  return (schema.required ?? []).length === 0 && (schema.minProperties ?? 0) === 0 ? 'optional' : 'required';
}

/** group → method → operation, in document order. */
export function operationTable(doc: Document): Record<string, Record<string, OperationEntry>> {
  const table: Record<string, Record<string, OperationEntry>> = {};
  for (const [path, item] of Object.entries(doc.paths)) {
    const shared = (item['parameters'] ?? []) as Operation['parameters'];
    for (const method of METHODS) {
      const op = item[method] as Operation | undefined;
      if (op === undefined) continue;
      const tag = op.tags[0];
      if (tag === undefined) throw new Error(`${op.operationId} has no tag`);
      const parameters = [...(shared ?? []), ...(op.parameters ?? [])].map((p) => (p.$ref ? doc.components.parameters?.[p.$ref.split('/').at(-1) ?? ''] : p));
      const group = (table[groupOf(tag)] ??= {});
      const name = methodOf(tag, op.operationId);
      if (group[name]) throw new Error(`${op.operationId} and ${group[name].operationId} both map to ${groupOf(tag)}.${name}`);
      group[name] = { operationId: op.operationId, method: method.toUpperCase(), path, paginated: parameters.some((p) => p?.in === 'query' && p.name === 'cursor'), body: bodyKind(doc, op) };
    }
  }
  return table;
}

export async function serverDocument(): Promise<Document> {
  const app = await buildApp({ config: parseConfig({ LOG_LEVEL: 'silent' }), secrets: testSecrets, logger: createLogger({ level: 'silent' }), db: databaseRef(), runtime: testClock(), startJobs: false });
  try {
    const res = await app.http.inject({ method: 'GET', url: '/openapi.json' });
    if (res.statusCode !== 200) throw new Error(`/openapi.json answered ${String(res.statusCode)}`);
    return res.json<Document>();
  } finally {
    await app.close(0);
  }
}

const HEADER = '// Generated by `npm run sdk:generate` from the server\'s /openapi.json. Do not edit.\n';

export async function generateSdkSources(): Promise<{ 'openapi.ts': string; 'operations.ts': string }> {
  const doc = await serverDocument();
  // defaultNonNullable off: a field with a server-side default is optional to send.
  const types = astToString(await openapiTS(doc as unknown as Parameters<typeof openapiTS>[0], { defaultNonNullable: false }));
  const table = `${HEADER}/** group → method → operation; the client (client.ts) is built from it. */\nexport const operations = ${JSON.stringify(operationTable(doc), null, 2)} as const;\n`;
  return { 'openapi.ts': `${HEADER}/* eslint-disable */\n${types}`, 'operations.ts': table };
}

export const sdkSourceDir = fileURLToPath(new URL('../../sdk/src/', import.meta.url));

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const sources = await generateSdkSources();
  for (const [name, text] of Object.entries(sources)) await writeFile(`${sdkSourceDir}${name}`, text);
  process.stdout.write(`wrote ${Object.keys(sources).map((n) => `sdk/src/${n}`).join(', ')}\n`);
}
