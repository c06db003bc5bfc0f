/**
 * The SDK's generated sources match what the current server's OpenAPI document generates (so a
 * route changed without `npm run sdk:generate` fails CI), and the naming rule gives every
 * operation exactly one method.
 */
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { generateSdkSources, methodOf, operationTable, sdkSourceDir, serverDocument } from '../../src/testing/sdk-generate.js';

describe('the SDK generated from /openapi.json', () => {
  it('is up to date: sdk/src/openapi.ts and operations.ts are what the server generates now (run `npm run sdk:generate`)', async () => {
    const sources = await generateSdkSources();
    for (const [name, text] of Object.entries(sources)) {
      // Compared as text, not with toBe: a 200 KB diff in the failure says nothing useful.
      const checkedIn = await readFile(`${sdkSourceDir}${name}`, 'utf8');
      expect(checkedIn === text, `sdk/src/${name} is stale: run npm run sdk:generate`).toBe(true);
    }
  });

  it('gives every operation one method: tag → group, operationId minus the tag noun → method', async () => {
    const doc = await serverDocument();
    const table = operationTable(doc);
    const ids = Object.values(table).flatMap((g) => Object.values(g).map((e) => e.operationId));
    const documented = Object.values(doc.paths).flatMap((item) => Object.values(item).flatMap((op) => (typeof op === 'object' && op !== null && 'operationId' in op ? [String(op.operationId)] : [])));
    expect(ids.sort()).toEqual(documented.sort());
    expect(new Set(ids).size).toBe(ids.length);
    expect(table['events']).toMatchObject({ create: { operationId: 'createEvent' }, createBatch: { operationId: 'createEventBatch' }, list: { operationId: 'listEvents', paginated: true }, get: { operationId: 'getEvent', paginated: false } });
    expect(table['apiKeys']?.['listWorkspace']?.operationId).toBe('listWorkspaceApiKeys');
    expect(methodOf('audit', 'verifyPlatformAuditLog')).toBe('verifyPlatform');
    expect(methodOf('connections', 'createConnectSession')).toBe('createConnectSession');
    expect(methodOf('events', 'createEventBatch')).toBe('createBatch');
    expect(() => methodOf('widgets', 'createWidget')).toThrow(/tagNouns/);
  });
});
