/** Rows of `connections`, read and written inside the workspace's transaction (RLS applies). */
import type { WorkspaceTx } from '../db/tenant-tx.js';
import type { Vault } from '../vault/vault.js';
import type { Credential } from './credentials.js';

export type ConnectionStatus = 'active' | 'needs_reauth' | 'revoked' | 'error';

export interface ConnectionRow {
  id: string;
  provider_key: string;
  name: string;
  auth_type: string;
  status: ConnectionStatus;
  status_reason: string | null;
  credentials: Uint8Array | null;
  hint: string | null;
  scopes: string[];
  metadata: Record<string, unknown>;
  expires_at: Date | null;
  refresh_failures: number;
  next_refresh_at: Date | null;
  last_refreshed_at: Date | null;
  refresh_lease_owner: string | null;
  refresh_lease_until: Date | null;
  created_at: Date;
  updated_at: Date;
}

export interface ConnectionView {
  readonly id: string;
  readonly provider: string;
  readonly name: string;
  readonly authType: string;
  readonly status: ConnectionStatus;
  readonly statusReason: string | null;
  readonly hint: string | null;
  readonly scopes: string[];
  readonly metadata: Record<string, unknown>;
  readonly expiresAt: string | null;
  readonly lastRefreshedAt: string | null;
  readonly createdAt: string;
  readonly updatedAt: string;
}

export const CONNECTION_COLUMNS =
  'id, provider_key, name, auth_type, status, status_reason, credentials, hint, scopes, metadata, expires_at, refresh_failures, next_refresh_at, last_refreshed_at, refresh_lease_owner, refresh_lease_until, created_at, updated_at';

export const connectionView = (r: ConnectionRow): ConnectionView => ({
  id: r.id,
  provider: r.provider_key,
  name: r.name,
  authType: r.auth_type,
  status: r.status,
  statusReason: r.status_reason,
  hint: r.hint,
  scopes: r.scopes,
  metadata: r.metadata,
  expiresAt: r.expires_at?.toISOString() ?? null,
  lastRefreshedAt: r.last_refreshed_at?.toISOString() ?? null,
  createdAt: r.created_at.toISOString(),
  updatedAt: r.updated_at.toISOString(),
});

const place = (id: string) => ({ table: 'connections', rowId: id, column: 'credentials' });

export async function sealCredential(vault: Vault, tx: WorkspaceTx, id: string, credential: Credential): Promise<Buffer> {
  return vault.workspace(tx).seal(place(id), JSON.stringify(credential));
}

export async function openCredential(vault: Vault, tx: WorkspaceTx, row: Pick<ConnectionRow, 'id' | 'credentials'>): Promise<Credential | undefined> {
  if (!row.credentials) return undefined;
  return JSON.parse(await vault.workspace(tx).openText(place(row.id), row.credentials)) as Credential;
}

export async function findConnection(tx: WorkspaceTx, id: string, options: { lock?: boolean } = {}): Promise<ConnectionRow | undefined> {
  const { rows } = await tx.query<ConnectionRow>(`SELECT ${CONNECTION_COLUMNS} FROM connections WHERE id = $1${options.lock ? ' FOR UPDATE' : ''}`, [id]);
  return rows[0];
}
