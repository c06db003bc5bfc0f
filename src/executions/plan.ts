/**
 * What one execution will do, read in its workspace's transaction before any tenant code runs:
 * the trigger (event or cron slot), the items entering the first step (the event's payload, or
 * the state a retry resumes from), and the steps — a rule's transform followed by delivery to the
 * rule's destinations, or an instance's template steps with its bindings.
 */
import type { WorkspaceTx } from '../db/tenant-tx.js';
import { BulkheadError } from '../errors.js';
import { loadInstanceRuntime } from '../integrations/instances.js';
import { grantedCapabilities } from '../integrations/template.js';
import type { Filter } from '../routing/filter.js';
import type { Vault } from '../vault/vault.js';

export type PlanStep =
  | { readonly name: string; readonly type: 'filter'; readonly filter: Filter }
  | { readonly name: string; readonly type: 'transform'; readonly code: string }
  | { readonly name: string; readonly type: 'connection'; readonly slot: string; readonly method: string; readonly path: string; readonly query: Readonly<Record<string, string>> | undefined }
  | { readonly name: string; readonly type: 'deliver'; readonly slot: string | null; readonly destinationIds: readonly string[]; readonly eventType: string | null };

/** What tenant code sees as its first argument (the payload is the item the step works on). */
export interface TriggerView {
  readonly id: string | null;
  readonly type: string | null;
  readonly resource: string | null;
  readonly resourceId: string | null;
  readonly createdAt: string;
  readonly trigger: 'event' | 'inbound' | 'cron' | 'retry';
  readonly scheduledFor: string | null;
}

export interface Plan {
  readonly executionId: string;
  readonly kind: 'rule' | 'instance';
  readonly attempts: number;
  readonly trigger: TriggerView;
  readonly startAt: number;
  readonly items: readonly unknown[];
  readonly steps: readonly PlanStep[];
  readonly config: Readonly<Record<string, unknown>>;
  readonly capabilities: readonly string[];
  /** Connection slot -> connection id in this workspace (instances only). */
  readonly connections: Readonly<Record<string, string>>;
  /** Secret config values (instances only), for host-side placeholders; never passed to tenant code. */
  readonly secrets: Readonly<Record<string, string>>;
  readonly logPayloads: boolean;
  /** The rule, or `<template name>`, for deliveries' rule and default type. */
  readonly ruleId: string | null;
  readonly templateName: string | null;
}

/** A reason the execution cannot run at all (recorded as its failure; nothing ran). */
export class PlanError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

interface ExecutionRow {
  id: string;
  kind: 'rule' | 'instance';
  rule_id: string | null;
  rule_revision: number | null;
  instance_id: string | null;
  trigger: 'event' | 'inbound' | 'cron' | 'retry';
  event_id: string | null;
  scheduled_for: Date | null;
  status: string;
  attempts: number;
  lease_owner: string | null;
  resume_step: number;
  resume_state: Uint8Array | null;
  created_at: Date;
}

const statePlace = (id: string) => ({ table: 'executions', rowId: id, column: 'resume_state' });
export { statePlace };

/** Undefined when the lease is no longer this runner's (another took over after it ran out). */
export async function loadPlan(tx: WorkspaceTx, vault: Vault, executionId: string, owner: string): Promise<Plan | undefined> {
  const row = (await tx.query<ExecutionRow>(
    `SELECT id, kind, rule_id, rule_revision, instance_id, trigger, event_id, scheduled_for, status, attempts, lease_owner, resume_step, resume_state, created_at
       FROM executions WHERE id = $1`,
    [executionId],
  )).rows[0];
  if (row?.status !== 'running' || row.lease_owner !== owner) return undefined;
  const sealer = vault.workspace(tx);

  let trigger: TriggerView = { id: null, type: null, resource: null, resourceId: null, createdAt: (row.scheduled_for ?? row.created_at).toISOString(), trigger: row.trigger, scheduledFor: row.scheduled_for?.toISOString() ?? null };
  let payload: unknown = row.scheduled_for ? { scheduledFor: row.scheduled_for.toISOString() } : null;
  if (row.event_id !== null) {
    const event = (await tx.query<{ id: string; type: string; resource: string | null; resource_id: string | null; payload: Uint8Array; created_at: Date }>(
      'SELECT id, type, resource, resource_id, payload, created_at FROM events WHERE id = $1',
      [row.event_id],
    )).rows[0];
    if (!event) throw new PlanError('event_missing', 'the triggering event no longer exists');
    trigger = { ...trigger, id: event.id, type: event.type, resource: event.resource, resourceId: event.resource_id, createdAt: event.created_at.toISOString() };
    payload = JSON.parse(await sealer.openText({ table: 'events', rowId: event.id, column: 'payload' }, event.payload)) as unknown;
  }
  // A retry resumes with the items that entered the failed step; without them, from the trigger.
  const items = row.resume_state ? (JSON.parse(await sealer.openText(statePlace(row.id), row.resume_state)) as unknown[]) : [payload];
  const base = { executionId: row.id, kind: row.kind, attempts: row.attempts, trigger, startAt: row.resume_step, items };

  if (row.kind === 'rule') {
    const rule = (await tx.query<{ destination_ids: string[]; compiled: string }>(
      `SELECT r.destination_ids, t.compiled FROM rules r JOIN rule_transforms t ON t.workspace_id = r.workspace_id AND t.rule_id = r.id AND t.revision = $2 WHERE r.id = $1`,
      [row.rule_id, row.rule_revision],
    )).rows[0];
    if (!rule) throw new PlanError('rule_missing', 'the rule (or its transform revision) no longer exists');
    return {
      ...base,
      steps: [
        { name: 'transform', type: 'transform', code: rule.compiled },
        { name: 'deliver', type: 'deliver', slot: null, destinationIds: rule.destination_ids, eventType: null },
      ],
      config: {},
      capabilities: [],
      connections: {},
      secrets: {},
      logPayloads: false,
      ruleId: row.rule_id,
      templateName: null,
    };
  }

  const instance = await loadInstanceRuntime(tx, vault, row.instance_id ?? '').catch((error: unknown) => {
    throw error instanceof BulkheadError && error.code === 'not_found' ? new PlanError('instance_missing', 'the instance no longer exists') : error;
  });
  if (!instance.enabled) throw new PlanError('instance_disabled', 'the instance is disabled');
  const { document } = instance;
  const steps = document.steps.map((step): PlanStep => {
    switch (step.type) {
      case 'filter':
        return { name: step.name, type: 'filter', filter: step.filter };
      case 'transform':
        return { name: step.name, type: 'transform', code: instance.compiled[step.name] ?? '' };
      case 'connection':
        return { name: step.name, type: 'connection', slot: step.connection, method: step.method, path: step.path, query: step.query };
      case 'deliver': {
        const bound = instance.destinations[step.destination];
        return { name: step.name, type: 'deliver', slot: step.destination, destinationIds: bound ? [bound] : [], eventType: step.eventType ?? null };
      }
    }
  });
  // Only slots that are bound can be called; an unbound slot's grant would only ever fail.
  const capabilities = grantedCapabilities(document).filter((c) => instance.connections[c.split('.')[1] ?? ''] !== undefined);
  return { ...base, steps, config: instance.config, capabilities, connections: instance.connections, secrets: instance.secrets, logPayloads: instance.logPayloads, ruleId: null, templateName: document.name };
}
