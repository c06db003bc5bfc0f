/**
 * CLI commands that read or change platform state, through the running server's HTTP API (see
 * server-client.ts). Each prints what the server answered, in the same shape as its `--offline`
 * twin in admin-commands.ts.
 */
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

const verifyWorkspace = async (server: ServerClient, id: string): Promise<ChainReport> => ({
  chain: id,
  ...(await server.request<Verify>('GET', `/v1/workspaces/${encodeURIComponent(id)}/audit-log/verify`)),
});

/** One workspace's chain, or (without one) the platform chain and every workspace's, ordered by id as offline. */
export async function verifyAudit(server: ServerClient, workspaceId: string | undefined): Promise<ChainReport[]> {
  if (workspaceId !== undefined) return [await verifyWorkspace(server, workspaceId)];
  const reports: ChainReport[] = [{ chain: 'platform', ...(await server.request<Verify>('GET', '/v1/platform/audit-log/verify')) }];
  const ids: string[] = [];
  for (const tenant of await server.all<{ id: string }>('/v1/tenants')) {
    for (const workspace of await server.all<{ id: string }>(`/v1/tenants/${encodeURIComponent(tenant.id)}/workspaces`)) ids.push(workspace.id);
  }
  for (const id of ids.sort()) reports.push(await verifyWorkspace(server, id));
  return reports;
}
