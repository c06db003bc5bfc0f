/**
 * A workspace's current counts against its limits (`GET /v1/usage`): the per-workspace figures
 * that `/metrics` leaves out on purpose (a workspace id as a label would make one series per
 * workspace). Limits are the tenant's plan where it sets one, else the server's defaults; the
 * counts are read in the workspace's own transaction, as the limit checks count them.
 */
import type { WithPlatform, WithWorkspace } from '../db/tenant-tx.js';
import { BulkheadError } from '../errors.js';
import type { TenantLimits } from '../tenancy/tenancy-service.js';

export interface UsageFigure {
  readonly used: number;
  readonly limit: number;
}

export interface WorkspaceUsage {
  readonly workspaceId: string;
  /** The calendar month (UTC) the event count is for, `YYYY-MM`. */
  readonly period: string;
  readonly events: UsageFigure;
  readonly connections: UsageFigure;
  readonly destinations: UsageFigure;
  readonly rules: UsageFigure;
  readonly instances: UsageFigure;
  readonly inboundSources: UsageFigure;
}

export interface UsageDefaults {
  readonly eventsPerMonth: number;
  readonly connectionsPerWorkspace: number;
  readonly destinationsPerWorkspace: number;
  readonly rulesPerWorkspace: number;
  readonly instancesPerWorkspace: number;
  readonly inboundSourcesPerWorkspace: number;
}

export function createUsageService(deps: { withPlatform: WithPlatform; withWorkspace: WithWorkspace; now: () => Date; defaults: UsageDefaults }) {
  return {
    async of(workspaceId: string): Promise<WorkspaceUsage> {
      const plan = await deps.withPlatform(async (tx) => {
        const { rows } = await tx.query<{ limits: TenantLimits }>('SELECT t.limits FROM workspaces w JOIN tenants t ON t.id = w.tenant_id WHERE w.id = $1', [workspaceId]);
        return rows[0]?.limits;
      });
      if (!plan) throw new BulkheadError('not_found', 'workspace not found');
      const now = deps.now();
      const month = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)).toISOString().slice(0, 10);
      const counts = await deps.withWorkspace(workspaceId, async (tx) => {
        // One statement: every figure from the same snapshot.
        const { rows } = await tx.query<Record<'events' | 'connections' | 'destinations' | 'rules' | 'instances' | 'inbound_sources', string | number>>(
          `SELECT (SELECT COALESCE(sum(count), 0) FROM usage_counters WHERE metric = 'events' AND period = $1)::bigint AS events,
                  (SELECT count(*) FROM connections)::int AS connections,
                  (SELECT count(*) FROM destinations)::int AS destinations,
                  (SELECT count(*) FROM rules)::int AS rules,
                  (SELECT count(*) FROM instances)::int AS instances,
                  (SELECT count(*) FROM inbound_sources)::int AS inbound_sources`,
          [month],
        );
        const r = rows[0];
        const n = (v: string | number | undefined) => Number(v ?? 0);
        return { events: n(r?.events), connections: n(r?.connections), destinations: n(r?.destinations), rules: n(r?.rules), instances: n(r?.instances), inboundSources: n(r?.inbound_sources) };
      });
      const d = deps.defaults;
      return {
        workspaceId,
        period: month.slice(0, 7),
        events: { used: counts.events, limit: plan.eventsPerMonth ?? d.eventsPerMonth },
        connections: { used: counts.connections, limit: plan.connectionsPerWorkspace ?? d.connectionsPerWorkspace },
        destinations: { used: counts.destinations, limit: d.destinationsPerWorkspace },
        rules: { used: counts.rules, limit: d.rulesPerWorkspace },
        instances: { used: counts.instances, limit: d.instancesPerWorkspace },
        inboundSources: { used: counts.inboundSources, limit: d.inboundSourcesPerWorkspace },
      };
    },
  };
}

export type UsageService = ReturnType<typeof createUsageService>;
