/**
 * CLI commands that read or change platform state, through the running server's HTTP API (see
 * server-client.ts). Each prints what the server answered, in the same shape as its `--offline`
 * twin in admin-commands.ts.
 */
import { PLATFORM_CHAIN } from '../audit/chain.js';
import { parseCheckpoint } from '../audit/checkpoint.js';
import type { Scope } from '../identity/scopes.js';
import type { ChainReport } from './admin-commands.js';
import type { ServerClient } from './server-client.js';

export const createTenant = (server: ServerClient, input: { name: string; slug: string }) => server.request('POST', '/v1/tenants', input);

export const createWorkspace = (server: ServerClient, input: { tenantId: string; name: string; environment: string }) =>
  server.request('POST', `/v1/tenants/${encodeURIComponent(input.tenantId)}/workspaces`, { name: input.name, environment: input.environment });

export const createApiKey = (server: ServerClient, input: { workspaceId: string; name: string; scopes: Scope[]; allowedCidrs: string[]; expiresAt?: string | undefined }) =>
  server.request('POST', `/v1/workspaces/${encodeURIComponent(input.workspaceId)}/api-keys`, {
    name: input.name,
    scopes: input.scopes,
    ...(input.allowedCidrs.length > 0 ? { allowedCidrs: input.allowedCidrs } : {}),
    ...(input.expiresAt === undefined ? {} : { expiresAt: input.expiresAt }),
  });

type Verify = Omit<ChainReport, 'chain'>;

const verifyWorkspace = async (server: ServerClient, id: string, query = ''): Promise<ChainReport> => ({
  chain: id,
  ...(await server.request<Verify>('GET', `/v1/workspaces/${encodeURIComponent(id)}/audit-log/verify${query}`)),
});

/**
 * One workspace's chain, or (without one) the platform chain and every workspace's, ordered by id
 * as offline. With a checkpoint, the chain it names, verified against it by the server.
 */
export async function verifyAudit(server: ServerClient, workspaceId: string | undefined, checkpointText?: string): Promise<ChainReport[]> {
  if (checkpointText !== undefined) {
    // The server checks the signature and the chain; here the chain's name only picks the route.
    const checkpoint = parseCheckpoint(checkpointText);
    const chain = workspaceId ?? checkpoint.chain;
    const query = `?checkpoint=${encodeURIComponent(JSON.stringify(checkpoint))}`;
    if (chain === PLATFORM_CHAIN) return [{ chain, ...(await server.request<Verify>('GET', `/v1/platform/audit-log/verify${query}`)) }];
    return [await verifyWorkspace(server, chain, query)];
  }
  if (workspaceId !== undefined) return [await verifyWorkspace(server, workspaceId)];
  const reports: ChainReport[] = [{ chain: 'platform', ...(await server.request<Verify>('GET', '/v1/platform/audit-log/verify')) }];
  const ids: string[] = [];
  for (const tenant of await server.all<{ id: string }>('/v1/tenants')) {
    for (const workspace of await server.all<{ id: string }>(`/v1/tenants/${encodeURIComponent(tenant.id)}/workspaces`)) ids.push(workspace.id);
  }
  for (const id of ids.sort()) reports.push(await verifyWorkspace(server, id));
  return reports;
}
