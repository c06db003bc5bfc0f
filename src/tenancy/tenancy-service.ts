/**
 * The platform registry: tenants and their workspaces. This is named cross-workspace work, so it
 * runs in the owner's transaction (`withPlatform`), and every change lands in the platform audit
 * chain in the same transaction.
 */
import type { ActionContext } from '../audit/context.js';
import { platformAudit, workspaceAudit } from '../audit/store.js';
import { onUniqueViolation } from '../db/errors.js';
import { onlyRow } from '../db/rows.js';
import type { PlatformTx, WithPlatform } from '../db/tenant-tx.js';
import { BulkheadError, notFound } from '../errors.js';
import { idPattern, isId, newId, type Runtime } from '../ids.js';
import { decodeCursor, type Page, toPage } from '../pagination.js';
import { type Branding, checkBranding } from './branding.js';

export interface TenantLimits {
  readonly requestsPerMinute?: number;
  readonly connectionsPerWorkspace?: number;
  readonly eventsPerMonth?: number;
  readonly eventPayloadBytes?: number;
  readonly executionRetentionDays?: number;
  readonly retentionDays?: number;
}

export interface TenantView {
  readonly id: string;
  readonly name: string;
  readonly slug: string;
  readonly region: string;
  readonly isolationTier: string;
  readonly limits: TenantLimits;
  /** The hosted connect page's look for this tenant's end users; null: Bulkhead's own. */
  readonly branding: Branding | null;
  readonly createdAt: string;
  readonly updatedAt: string;
}

export interface WorkspaceView {
  readonly id: string;
  readonly tenantId: string;
  readonly name: string;
  readonly environment: string;
  readonly placement: string;
  readonly createdAt: string;
  readonly updatedAt: string;
}

interface TenantRow {
  id: string;
  name: string;
  slug: string;
  region: string;
  isolation_tier: string;
  limits: TenantLimits;
  branding: Branding | null;
  created_at: Date;
  updated_at: Date;
}

interface WorkspaceRow {
  id: string;
  tenant_id: string;
  name: string;
  environment: string;
  placement: string;
  created_at: Date;
  updated_at: Date;
}

const tenantView = (r: TenantRow): TenantView => ({
  id: r.id,
  name: r.name,
  slug: r.slug,
  region: r.region,
  isolationTier: r.isolation_tier,
  limits: r.limits,
  branding: r.branding,
  createdAt: r.created_at.toISOString(),
  updatedAt: r.updated_at.toISOString(),
});

const workspaceView = (r: WorkspaceRow): WorkspaceView => ({
  id: r.id,
  tenantId: r.tenant_id,
  name: r.name,
  environment: r.environment,
  placement: r.placement,
  createdAt: r.created_at.toISOString(),
  updatedAt: r.updated_at.toISOString(),
});

/** `undefined` keeps the current branding, `null` clears it, an object replaces it whole. */
function brandingValue(patch: Branding | null | undefined, current: Branding | null): string | null {
  const next = patch === undefined ? current : patch === null ? null : checkBranding(patch);
  return next === null ? null : JSON.stringify(next);
}

const TENANT_COLUMNS = 'id, name, slug, region, isolation_tier, limits, branding, created_at, updated_at';
const WORKSPACE_COLUMNS = 'id, tenant_id, name, environment, placement, created_at, updated_at';

export interface TenancyService {
  createTenant(ctx: ActionContext, input: { name: string; slug: string; region?: string | undefined; limits?: TenantLimits | undefined }): Promise<TenantView>;
  listTenants(options: { cursor?: string | undefined; limit: number }): Promise<Page<TenantView>>;
  getTenant(id: string): Promise<TenantView>;
  updateTenant(ctx: ActionContext, id: string, patch: { name?: string | undefined; limits?: TenantLimits | undefined; branding?: Branding | null | undefined }): Promise<TenantView>;
  /** Returns the ids of the workspaces deleted with the tenant. */
  deleteTenant(ctx: ActionContext, id: string, options: { cascade: boolean }): Promise<string[]>;
  createWorkspace(ctx: ActionContext, tenantId: string, input: { name: string; environment: string }): Promise<WorkspaceView>;
  listWorkspaces(tenantId: string, options: { cursor?: string | undefined; limit: number }): Promise<Page<WorkspaceView>>;
  getWorkspace(id: string): Promise<WorkspaceView>;
  updateWorkspace(ctx: ActionContext, id: string, patch: { name?: string | undefined }): Promise<WorkspaceView>;
  deleteWorkspace(ctx: ActionContext, id: string): Promise<void>;
}

/** Steps that must run before a workspace's rows are deleted (e.g. the vault destroys its keys). */
export type WorkspacePurgeStep = (tx: PlatformTx, workspaceId: string) => Promise<Record<string, unknown>>;

/** Steps that run in the transaction creating a workspace (e.g. the vault creates its first key). */
export type WorkspaceSetupStep = (tx: PlatformTx, workspaceId: string) => Promise<void>;

export function createTenancyService(deps: {
  withPlatform: WithPlatform;
  runtime: Runtime;
  purgeSteps?: readonly WorkspacePurgeStep[];
  setupSteps?: readonly WorkspaceSetupStep[];
}): TenancyService {
  const { withPlatform, runtime } = deps;


  async function findTenant(tx: PlatformTx, id: string, lock = false): Promise<TenantRow> {
    const row = isId('tenant', id)
      ? (await tx.query<TenantRow>(`SELECT ${TENANT_COLUMNS} FROM tenants WHERE id = $1${lock ? ' FOR UPDATE' : ''}`, [id])).rows[0]
      : undefined;
    if (!row) throw notFound('tenant');
    return row;
  }

  async function findWorkspace(tx: PlatformTx, id: string, lock = false): Promise<WorkspaceRow> {
    const row = isId('workspace', id)
      ? (await tx.query<WorkspaceRow>(`SELECT ${WORKSPACE_COLUMNS} FROM workspaces WHERE id = $1${lock ? ' FOR UPDATE' : ''}`, [id])).rows[0]
      : undefined;
    if (!row) throw notFound('workspace');
    return row;
  }

  async function purgeWorkspace(tx: PlatformTx, ctx: ActionContext, workspace: WorkspaceRow): Promise<void> {
    const steps: Record<string, unknown> = {};
    for (const step of deps.purgeSteps ?? []) Object.assign(steps, await step(tx, workspace.id));
    // The workspace's own chain goes with its data; its final head is preserved in the platform
    // chain so an auditor can still prove what the workspace's log said when it was deleted.
    const head = await workspaceAudit.head(tx, workspace.id);
    await tx.query('DELETE FROM workspaces WHERE id = $1', [workspace.id]);
    await platformAudit.append(tx, runtime, {
      ...ctx,
      action: 'workspace.delete',
      target: { type: 'workspace', id: workspace.id },
      outcome: 'success',
      details: { tenantId: workspace.tenant_id, name: workspace.name, auditChainHead: head, ...steps },
    });
  }

  return {
    createTenant: (ctx, input) =>
      withPlatform(async (tx) => {
        const now = runtime.now();
        const result = await tx
          .query<TenantRow>(
            `INSERT INTO tenants (id, name, slug, region, isolation_tier, limits, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'shared', $5::jsonb, $6, $6) RETURNING ${TENANT_COLUMNS}`,
            [newId('tenant', runtime), input.name, input.slug, input.region ?? 'default', JSON.stringify(input.limits ?? {}), now],
          )
          .catch(onUniqueViolation('slug_taken', `a tenant with slug "${input.slug}" already exists`));
        const tenant = onlyRow(result);
        await platformAudit.append(tx, runtime, { ...ctx, action: 'tenant.create', target: { type: 'tenant', id: tenant.id }, outcome: 'success', details: { slug: tenant.slug } });
        return tenantView(tenant);
      }),

    listTenants: ({ cursor, limit }) =>
      withPlatform(async (tx) => {
        const after = decodeCursor(cursor, new RegExp(idPattern('tenant')));
        const { rows } = await tx.query<TenantRow>(`SELECT ${TENANT_COLUMNS} FROM tenants WHERE ($1::text IS NULL OR id > $1) ORDER BY id LIMIT $2`, [after ?? null, limit + 1]);
        return toPage(rows, limit, (r) => r.id, tenantView);
      }),

    getTenant: (id) => withPlatform(async (tx) => tenantView(await findTenant(tx, id))),

    updateTenant: (ctx, id, patch) =>
      withPlatform(async (tx) => {
        const current = await findTenant(tx, id, true);
        const result = await tx.query<TenantRow>(
          `UPDATE tenants SET name = $2, limits = $3::jsonb, branding = $5::jsonb, updated_at = $4 WHERE id = $1 RETURNING ${TENANT_COLUMNS}`,
          [id, patch.name ?? current.name, JSON.stringify(patch.limits ?? current.limits), runtime.now(), brandingValue(patch.branding, current.branding)],
        );
        await platformAudit.append(tx, runtime, { ...ctx, action: 'tenant.update', target: { type: 'tenant', id }, outcome: 'success', details: { fields: Object.keys(patch).sort() } });
        return tenantView(onlyRow(result));
      }),

    deleteTenant: (ctx, id, { cascade }) =>
      withPlatform(async (tx) => {
        await findTenant(tx, id, true);
        const { rows: workspaces } = await tx.query<WorkspaceRow>(`SELECT ${WORKSPACE_COLUMNS} FROM workspaces WHERE tenant_id = $1 ORDER BY id FOR UPDATE`, [id]);
        if (workspaces.length > 0 && !cascade) {
          throw new BulkheadError('tenant_not_empty', 'the tenant still has workspaces; delete them first or pass cascade=true', { details: { workspaces: workspaces.length } });
        }
        for (const workspace of workspaces) await purgeWorkspace(tx, ctx, workspace);
        await tx.query('DELETE FROM tenants WHERE id = $1', [id]);
        await platformAudit.append(tx, runtime, { ...ctx, action: 'tenant.delete', target: { type: 'tenant', id }, outcome: 'success', details: { workspacesDeleted: workspaces.length } });
        return workspaces.map((w) => w.id);
      }),

    createWorkspace: (ctx, tenantId, input) =>
      withPlatform(async (tx) => {
        await findTenant(tx, tenantId);
        const now = runtime.now();
        const result = await tx
          .query<WorkspaceRow>(
            `INSERT INTO workspaces (id, tenant_id, name, environment, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING ${WORKSPACE_COLUMNS}`,
            [newId('workspace', runtime), tenantId, input.name, input.environment, now],
          )
          .catch(onUniqueViolation('name_taken', `the tenant already has a workspace named "${input.name}"`));
        const workspace = onlyRow(result);
        for (const step of deps.setupSteps ?? []) await step(tx, workspace.id);
        await platformAudit.append(tx, runtime, { ...ctx, action: 'workspace.create', target: { type: 'workspace', id: workspace.id }, outcome: 'success', details: { tenantId, environment: workspace.environment } });
        return workspaceView(workspace);
      }),

    listWorkspaces: (tenantId, { cursor, limit }) =>
      withPlatform(async (tx) => {
        await findTenant(tx, tenantId);
        const after = decodeCursor(cursor, new RegExp(idPattern('workspace')));
        const { rows } = await tx.query<WorkspaceRow>(
          `SELECT ${WORKSPACE_COLUMNS} FROM workspaces WHERE tenant_id = $1 AND ($2::text IS NULL OR id > $2) ORDER BY id LIMIT $3`,
          [tenantId, after ?? null, limit + 1],
        );
        return toPage(rows, limit, (r) => r.id, workspaceView);
      }),

    getWorkspace: (id) => withPlatform(async (tx) => workspaceView(await findWorkspace(tx, id))),

    updateWorkspace: (ctx, id, patch) =>
      withPlatform(async (tx) => {
        const current = await findWorkspace(tx, id, true);
        const result = await tx
          .query<WorkspaceRow>(`UPDATE workspaces SET name = $2, updated_at = $3 WHERE id = $1 RETURNING ${WORKSPACE_COLUMNS}`, [id, patch.name ?? current.name, runtime.now()])
          .catch(onUniqueViolation('name_taken', `the tenant already has a workspace named "${patch.name ?? ''}"`));
        await platformAudit.append(tx, runtime, { ...ctx, action: 'workspace.update', target: { type: 'workspace', id }, outcome: 'success', details: { fields: Object.keys(patch).sort() } });
        return workspaceView(onlyRow(result));
      }),

    deleteWorkspace: (ctx, id) =>
      withPlatform(async (tx) => {
        await purgeWorkspace(tx, ctx, await findWorkspace(tx, id, true));
      }),
  };
}
