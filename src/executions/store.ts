/**
 * Reading and retrying executions: the step-by-step record of every run of a rule transform or
 * an integration instance. The runner writes them; this module only reads them and queues a
 * retry of a failed one, which is a new execution (the failed one stays as it was, for the record).
 */
import type { ActionContext } from '../audit/context.js';
import { workspaceAudit } from '../audit/store.js';
import type { WorkspaceTx } from '../db/tenant-tx.js';
import { BulkheadError, notFound } from '../errors.js';
import { idPattern, isId, newId, type Runtime } from '../ids.js';
import { decodeCursor, type Page, toPage } from '../pagination.js';
import type { Vault } from '../vault/vault.js';

export const executionStatuses = ['queued', 'running', 'succeeded', 'failed'] as const;
export type ExecutionStatus = (typeof executionStatuses)[number];
export const executionTriggers = ['event', 'inbound', 'cron', 'retry'] as const;
export type ExecutionTrigger = (typeof executionTriggers)[number];
export type ExecutionKind = 'rule' | 'instance';

export const stepOutcomes = ['ok', 'failed', 'skipped', 'dropped'] as const;
export type StepOutcome = (typeof stepOutcomes)[number];
/** Step metadata is counts, sizes, statuses and ids: never payloads, never secrets. */
export type StepMetadataValue = number | string | boolean | null | number[];

/** One step of a run, as the runner records it in the `steps` column. */
export interface StepRecord {
  readonly name: string;
  readonly type: string;
  readonly startedAt: string;
  readonly durationMs: number;
  readonly outcome: StepOutcome;
  readonly metadata: Record<string, StepMetadataValue>;
  readonly logs: string[];
  readonly error?: { readonly code: string; readonly message: string };
}

export interface ExecutionError {
  readonly step: string | null;
  readonly code: string;
  readonly message: string;
}

export interface ExecutionView {
  readonly id: string;
  readonly kind: ExecutionKind;
  readonly ruleId: string | null;
  readonly instanceId: string | null;
  readonly trigger: ExecutionTrigger;
  readonly eventId: string | null;
  readonly scheduledFor: string | null;
  readonly status: ExecutionStatus;
  readonly attempts: number;
  readonly resumeStep: number;
  readonly retryOf: string | null;
  readonly steps: StepRecord[];
  readonly error: ExecutionError | null;
  readonly createdAt: string;
  readonly startedAt: string | null;
  readonly finishedAt: string | null;
  readonly durationMs: number | null;
}

/** One execution with its recorded step payloads (opened), or null when the instance does not log payloads. */
export interface ExecutionDetail extends ExecutionView {
  readonly payloads: unknown;
}

export interface ExecutionQuery {
  readonly cursor?: string | undefined;
  readonly limit: number;
  readonly ruleId?: string | undefined;
  readonly instanceId?: string | undefined;
  readonly status?: ExecutionStatus | undefined;
  /** Inclusive lower bound on created_at (ISO-8601). */
  readonly since?: string | undefined;
  /** Exclusive upper bound on created_at (ISO-8601). */
  readonly until?: string | undefined;
}

interface Row {
  id: string;
  kind: ExecutionKind;
  rule_id: string | null;
  rule_revision: number | null;
  instance_id: string | null;
  trigger: ExecutionTrigger;
  event_id: string | null;
  scheduled_for: Date | null;
  status: ExecutionStatus;
  attempts: number;
  resume_step: number;
  retry_of: string | null;
  steps: StepRecord[] | null;
  error: { step?: string | null; code?: string; message?: string } | null;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
}

// Never the sealed columns: `payloads` is read by `get` alone, `resume_state` by `retry` alone.
const COLUMNS =
  'id, kind, rule_id, rule_revision, instance_id, trigger, event_id, scheduled_for, status, attempts, resume_step, retry_of, steps, error, created_at, started_at, finished_at';

const iso = (d: Date | null): string | null => (d === null ? null : d.toISOString());

const view = (r: Row): ExecutionView => ({
  id: r.id,
  kind: r.kind,
  ruleId: r.rule_id,
  instanceId: r.instance_id,
  trigger: r.trigger,
  eventId: r.event_id,
  scheduledFor: iso(r.scheduled_for),
  status: r.status,
  attempts: r.attempts,
  resumeStep: r.resume_step,
  retryOf: r.retry_of,
  steps: r.steps ?? [],
  error: r.error === null ? null : { step: r.error.step ?? null, code: r.error.code ?? 'unknown', message: r.error.message ?? '' },
  createdAt: r.created_at.toISOString(),
  startedAt: iso(r.started_at),
  finishedAt: iso(r.finished_at),
  durationMs: r.started_at !== null && r.finished_at !== null ? r.finished_at.getTime() - r.started_at.getTime() : null,
});

const place = (rowId: string, column: 'resume_state' | 'payloads') => ({ table: 'executions', rowId, column });

export function createExecutionStore(deps: { vault: Vault; runtime: Runtime }) {
  const { vault, runtime } = deps;

  async function find<R extends Row>(tx: WorkspaceTx, id: string, extra: string, lock: boolean): Promise<R> {
    // A malformed id and another workspace's id (hidden by RLS) are as missing as an unknown one.
    const row = isId('execution', id)
      ? (await tx.query<R>(`SELECT ${COLUMNS}${extra} FROM executions WHERE id = $1${lock ? ' FOR UPDATE' : ''}`, [id])).rows[0]
      : undefined;
    if (!row) throw notFound('execution');
    return row;
  }

  return {
    /** Newest first. Filters are exact; `since`/`until` bound created_at as [since, until). */
    async list(tx: WorkspaceTx, q: ExecutionQuery): Promise<Page<ExecutionView>> {
      const after = decodeCursor(q.cursor, new RegExp(idPattern('execution')));
      const { rows } = await tx.query<Row>(
        `SELECT ${COLUMNS} FROM executions
          WHERE ($1::text IS NULL OR id < $1) AND ($2::text IS NULL OR rule_id = $2) AND ($3::text IS NULL OR instance_id = $3)
            AND ($4::text IS NULL OR status = $4) AND ($5::timestamptz IS NULL OR created_at >= $5) AND ($6::timestamptz IS NULL OR created_at < $6)
          ORDER BY id DESC LIMIT $7`,
        [after ?? null, q.ruleId ?? null, q.instanceId ?? null, q.status ?? null, q.since ?? null, q.until ?? null, q.limit + 1],
      );
      return toPage(rows, q.limit, (r) => r.id, view);
    },

    async get(tx: WorkspaceTx, id: string): Promise<ExecutionDetail> {
      const row = await find<Row & { payloads: Uint8Array | null }>(tx, id, ', payloads', false);
      const payloads = row.payloads === null ? null : (JSON.parse(await vault.workspace(tx).openText(place(row.id, 'payloads'), row.payloads)) as unknown);
      return { ...view(row), payloads };
    },

    /**
     * Queues a new execution that resumes a failed one at the step it failed in, with the items
     * that entered that step (re-sealed for the new row: associated data binds a ciphertext to its
     * row). Without recorded state the runner starts that step from the trigger input again.
     */
    async retry(tx: WorkspaceTx, ctx: ActionContext, id: string): Promise<ExecutionView> {
      // The lock serialises concurrent retries of one execution, so the pending check below holds.
      const old = await find<Row & { resume_state: Uint8Array | null }>(tx, id, ', resume_state', true);
      if (old.status !== 'failed') {
        throw new BulkheadError('execution_not_failed', `the execution is ${old.status}; only a failed execution can be retried`, { details: { status: old.status } });
      }
      const pending = (await tx.query<{ id: string }>("SELECT id FROM executions WHERE retry_of = $1 AND status IN ('queued', 'running') ORDER BY id LIMIT 1", [old.id])).rows[0];
      if (pending) {
        throw new BulkheadError('execution_retry_pending', 'a retry of this execution is already queued or running', { details: { retryId: pending.id } });
      }
      const newIdValue = newId('execution', runtime);
      let resumeState: Buffer | null = null;
      if (old.resume_state !== null) {
        const sealer = vault.workspace(tx);
        const state = await sealer.open(place(old.id, 'resume_state'), old.resume_state);
        try {
          resumeState = await sealer.seal(place(newIdValue, 'resume_state'), state);
        } finally {
          state.fill(0);
        }
      }
      const { rows } = await tx.query<Row>(
        `INSERT INTO executions (workspace_id, id, kind, rule_id, rule_revision, instance_id, trigger, event_id, status, resume_step, resume_state, retry_of, steps, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'retry', $7, 'queued', $8, $9, $10, '[]'::jsonb, $11) RETURNING ${COLUMNS}`,
        [tx.workspaceId, newIdValue, old.kind, old.rule_id, old.rule_revision, old.instance_id, old.event_id, old.resume_step, resumeState, old.id, runtime.now()],
      );
      await workspaceAudit.append(tx, runtime, {
        ...ctx,
        action: 'execution.retry',
        target: { type: 'execution', id: old.id },
        outcome: 'success',
        details: { retryId: newIdValue, resumeStep: old.resume_step },
      });
      return view(rows[0] as Row);
    },
  };
}

export type ExecutionStore = ReturnType<typeof createExecutionStore>;
