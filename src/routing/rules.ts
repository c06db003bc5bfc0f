/**
 * Rules bind events to destinations: type patterns, an optional `resource` equality and an
 * optional declarative payload filter (filter.ts), fanning out to one or more destinations.
 * A rule change affects only events ingested afterwards: deliveries are decided at ingest.
 */
import type { ActionContext } from '../audit/context.js';
import { workspaceAudit } from '../audit/store.js';
import { enforceCountLimit } from '../limits/count-limit.js';
import { onUniqueViolation } from '../db/errors.js';
import type { WorkspaceTx } from '../db/tenant-tx.js';
import { BulkheadError, notFound } from '../errors.js';
import { idPattern, isId, newId, type Runtime } from '../ids.js';
import { decodeCursor, type Page, toPage } from '../pagination.js';
import { type Filter, validateFilter } from './filter.js';
import { EVENT_TYPE_PATTERN, MAX_TYPE_LENGTH } from './patterns.js';

export interface RuleView {
  readonly id: string;
  readonly name: string;
  readonly eventTypes: string[];
  readonly resource: string | null;
  readonly filter: Filter | null;
  readonly destinationIds: string[];
  readonly ordered: boolean;
  readonly enabled: boolean;
  readonly transform: TransformView | null;
  readonly createdAt: string;
  readonly updatedAt: string;
}

export type TransformLanguage = 'javascript' | 'typescript';
export interface TransformView {
  readonly language: TransformLanguage;
  readonly code: string;
  /** Bumped on every change: an execution runs the revision current when its event was ingested. */
  readonly revision: number;
}
/** A transform that passed the save-time syntax check (`compiled` is what runs). */
export interface CheckedTransform {
  readonly language: TransformLanguage;
  readonly source: string;
  readonly compiled: string;
}
export type TransformCompiler = (source: string, language: TransformLanguage) => Promise<{ ok: true; code: string } | { ok: false; error: { message: string; line: number; column: number } }>;

/** Save-time check of a transform: a syntax error is a 400 with its position, never a failure at the first event. */
export async function checkTransform(compile: TransformCompiler, input: { language: TransformLanguage; code: string }): Promise<CheckedTransform> {
  const result = await compile(input.code, input.language);
  if (!result.ok) {
    const { message, line, column } = result.error;
    throw new BulkheadError('transform_syntax_error', `${message} (line ${String(line)}, column ${String(column)})`, { details: { line, column } });
  }
  return { language: input.language, source: input.code, compiled: result.code };
}

export interface RuleRow {
  id: string;
  name: string;
  event_types: string[];
  resource: string | null;
  filter: Filter | null;
  destination_ids: string[];
  ordered: boolean;
  enabled: boolean;
  transform_revision: number | null;
  created_at: Date;
  updated_at: Date;
}
interface RuleViewRow extends RuleRow {
  transform_language: TransformLanguage | null;
  transform_source: string | null;
}

export const RULE_COLUMNS = 'id, name, event_types, resource, filter, destination_ids, ordered, enabled, transform_revision, created_at, updated_at';
// A rule with its current transform revision's source, for views.
const VIEW_SELECT = `SELECT r.id, r.name, r.event_types, r.resource, r.filter, r.destination_ids, r.ordered, r.enabled, r.transform_revision, r.created_at, r.updated_at,
       t.language AS transform_language, t.source AS transform_source
  FROM rules r LEFT JOIN rule_transforms t ON t.workspace_id = r.workspace_id AND t.rule_id = r.id AND t.revision = r.transform_revision`;
const view = (r: RuleViewRow): RuleView => ({
  id: r.id,
  name: r.name,
  eventTypes: r.event_types,
  resource: r.resource,
  filter: r.filter,
  destinationIds: r.destination_ids,
  ordered: r.ordered,
  enabled: r.enabled,
  transform: r.transform_revision !== null && r.transform_language !== null && r.transform_source !== null ? { language: r.transform_language, code: r.transform_source, revision: r.transform_revision } : null,
  createdAt: r.created_at.toISOString(),
  updatedAt: r.updated_at.toISOString(),
});

export interface RuleInput {
  readonly name?: string | undefined;
  readonly eventTypes?: string[] | undefined;
  readonly resource?: string | null | undefined;
  readonly filter?: Filter | null | undefined;
  readonly destinationIds?: string[] | undefined;
  readonly ordered?: boolean | undefined;
  readonly enabled?: boolean | undefined;
  /** Already checked (checkTransform); null removes the rule's transform. */
  readonly transform?: CheckedTransform | null | undefined;
}

export function createRuleService(deps: { runtime: Runtime }) {
  const { runtime } = deps;

  async function check(tx: WorkspaceTx, input: RuleInput): Promise<void> {
    const problems: string[] = [];
    for (const pattern of input.eventTypes ?? []) {
      if (pattern.length > MAX_TYPE_LENGTH || !EVENT_TYPE_PATTERN.test(pattern)) problems.push(`eventTypes: "${pattern.slice(0, 60)}" is not an event type pattern (segments of a-z, 0-9, _ and -, or *)`);
    }
    if (input.filter) problems.push(...validateFilter(input.filter));
    if (problems.length > 0) throw new BulkheadError('validation_failed', problems.join('; '), { details: { problems } });
    if (input.destinationIds) {
      const ids = input.destinationIds.filter((id) => isId('destination', id));
      const { rows } = await tx.query<{ id: string }>('SELECT id FROM destinations WHERE id = ANY ($1)', [ids]);
      const missing = input.destinationIds.filter((id) => !rows.some((r) => r.id === id));
      // Another workspace's destination is as missing as one that never existed.
      if (missing.length > 0) throw new BulkheadError('not_found', `destination not found: ${missing.join(', ')}`, { details: { missing } });
    }
  }

  const nameTaken = (name: string) => onUniqueViolation('name_taken', `a rule named "${name}" already exists`);

  async function load(tx: WorkspaceTx, id: string): Promise<RuleView> {
    const row = (await tx.query<RuleViewRow>(`${VIEW_SELECT} WHERE r.id = $1`, [id])).rows[0];
    if (!row) throw notFound('rule');
    return view(row);
  }

  /** Stores a new revision and points the rule at it (or at none, for null). */
  async function setTransform(tx: WorkspaceTx, id: string, current: number | null, transform: CheckedTransform | null): Promise<void> {
    if (transform === null) {
      await tx.query('UPDATE rules SET transform_revision = NULL WHERE id = $1', [id]);
      return;
    }
    const { rows } = await tx.query<{ n: number | null }>('SELECT max(revision) AS n FROM rule_transforms WHERE rule_id = $1', [id]);
    const revision = Math.max(current ?? 0, rows[0]?.n ?? 0) + 1;
    await tx.query(
      'INSERT INTO rule_transforms (workspace_id, rule_id, revision, language, source, compiled, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)',
      [tx.workspaceId, id, revision, transform.language, transform.source, transform.compiled, runtime.now()],
    );
    await tx.query('UPDATE rules SET transform_revision = $2 WHERE id = $1', [id, revision]);
  }

  async function find(tx: WorkspaceTx, id: string, lock = false): Promise<RuleRow> {
    const row = isId('rule', id) ? (await tx.query<RuleRow>(`SELECT ${RULE_COLUMNS} FROM rules WHERE id = $1${lock ? ' FOR UPDATE' : ''}`, [id])).rows[0] : undefined;
    if (!row) throw notFound('rule');
    return row;
  }

  return {
    async create(tx: WorkspaceTx, ctx: ActionContext, input: RuleInput & { name: string; eventTypes: string[]; destinationIds: string[] }, limits: { max: number }): Promise<RuleView> {
      await check(tx, input);
      await enforceCountLimit(tx, 'rules', limits.max);
      const id = newId('rule', runtime);
      await tx
        .query(
          `INSERT INTO rules (workspace_id, id, name, event_types, resource, filter, destination_ids, ordered, enabled, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $10)`,
          [tx.workspaceId, id, input.name, input.eventTypes, input.resource ?? null, input.filter ? JSON.stringify(input.filter) : null, input.destinationIds, input.ordered ?? false, input.enabled ?? true, runtime.now()],
        )
        .catch(nameTaken(input.name));
      if (input.transform) await setTransform(tx, id, null, input.transform);
      await workspaceAudit.append(tx, runtime, { ...ctx, action: 'rule.create', target: { type: 'rule', id }, outcome: 'success', details: { eventTypes: input.eventTypes, destinations: input.destinationIds.length, transform: input.transform ? input.transform.language : null } });
      return load(tx, id);
    },

    async list(tx: WorkspaceTx, { cursor, limit }: { cursor?: string | undefined; limit: number }): Promise<Page<RuleView>> {
      const after = decodeCursor(cursor, new RegExp(idPattern('rule')));
      const { rows } = await tx.query<RuleViewRow>(`${VIEW_SELECT} WHERE ($1::text IS NULL OR r.id > $1) ORDER BY r.id LIMIT $2`, [after ?? null, limit + 1]);
      return toPage(rows, limit, (r) => r.id, view);
    },

    get: async (tx: WorkspaceTx, id: string) => (isId('rule', id) ? load(tx, id) : Promise.reject(notFound('rule'))),

    async update(tx: WorkspaceTx, ctx: ActionContext, id: string, patch: RuleInput): Promise<RuleView> {
      const row = await find(tx, id, true);
      await check(tx, patch);
      const filter = patch.filter === undefined ? row.filter : patch.filter;
      await tx
        .query(
          `UPDATE rules SET name = $2, event_types = $3, resource = $4, filter = $5::jsonb, destination_ids = $6, ordered = $7, enabled = $8, updated_at = $9 WHERE id = $1`,
          [id, patch.name ?? row.name, patch.eventTypes ?? row.event_types, patch.resource === undefined ? row.resource : patch.resource, filter ? JSON.stringify(filter) : null, patch.destinationIds ?? row.destination_ids, patch.ordered ?? row.ordered, patch.enabled ?? row.enabled, runtime.now()],
        )
        .catch(nameTaken(patch.name ?? row.name));
      if (patch.transform !== undefined) await setTransform(tx, id, row.transform_revision, patch.transform);
      await workspaceAudit.append(tx, runtime, { ...ctx, action: 'rule.update', target: { type: 'rule', id }, outcome: 'success', details: { fields: Object.keys(patch).sort() } });
      return load(tx, id);
    },

    async remove(tx: WorkspaceTx, ctx: ActionContext, id: string): Promise<void> {
      await find(tx, id, true);
      await tx.query('DELETE FROM rules WHERE id = $1', [id]);
      await workspaceAudit.append(tx, runtime, { ...ctx, action: 'rule.delete', target: { type: 'rule', id }, outcome: 'success' });
    },
  };
}

export type RuleService = ReturnType<typeof createRuleService>;
