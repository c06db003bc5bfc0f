/**
 * The provider catalog shipped with the build (catalog.json beside this module). Loaded and
 * validated once at start-up: a broken catalog stops the server with every problem listed,
 * rather than failing on the first connection that needs it.
 */
import { readFileSync } from 'node:fs';
import { Value } from 'typebox/value';
import { definitionProblems, ProviderDefinition } from './provider-schema.js';

export function loadCatalog(file = new URL('./catalog.json', import.meta.url)): ReadonlyMap<string, ProviderDefinition> {
  const raw = JSON.parse(readFileSync(file, 'utf8')) as { providers?: unknown };
  const list = Array.isArray(raw.providers) ? (raw.providers as unknown[]) : [];
  const problems: string[] = [];
  const byKey = new Map<string, ProviderDefinition>();
  list.forEach((entry, i) => {
    if (!Value.Check(ProviderDefinition, entry)) {
      for (const error of Value.Errors(ProviderDefinition, entry)) problems.push(`providers[${i}]${error.instancePath}: ${error.message}`);
      return;
    }
    for (const problem of definitionProblems(entry, { allowHttp: false })) problems.push(`providers[${i}] (${entry.key}): ${problem}`);
    if (byKey.has(entry.key)) problems.push(`providers[${i}]: duplicate key ${entry.key}`);
    byKey.set(entry.key, Object.freeze(entry));
  });
  if (list.length === 0) problems.push('the catalog lists no providers');
  if (problems.length > 0) throw new Error(`provider catalog ${String(file)} is invalid:\n  ${problems.join('\n  ')}`);
  return byKey;
}
