/**
 * Inbound sources: a verification scheme, its sealed secret(s), the event type template, and a
 * public `POST /hooks/{id}` URL. Sources are created and deleted, never edited in place; the
 * secret rotates with an overlap during which the previous one still verifies. The secret is
 * returned once, when Bulkhead generated it (a pasted provider secret is never echoed back).
 */
import type { ActionContext } from '../audit/context.js';
import { workspaceAudit } from '../audit/store.js';
import { advisoryLockKey } from '../db/locks.js';
import { mapSerially } from '../db/serially.js';
import { enforceCountLimit } from '../limits/count-limit.js';
import { onUniqueViolation } from '../db/errors.js';
import type { WorkspaceTx } from '../db/tenant-tx.js';
import { BulkheadError, notFound } from '../errors.js';
import { idPattern, isId, newId, type Runtime } from '../ids.js';
import { decodeCursor, type Page, toPage } from '../pagination.js';
import type { Vault } from '../vault/vault.js';
import { defaultEventTypes, templateProblems } from './event-type.js';
import { type HmacOptions, type Scheme, timedSchemes } from './schemes/index.js';
import { generateSecret, schemesGeneratingSecrets, secretProblems } from './schemes/secrets.js';

export const DEFAULT_TOLERANCE_SECONDS = 300;
export const DEFAULT_RATE_LIMIT_PER_MINUTE = 1200;
/** Sources per workspace (a constant until plans carry it). */
export const MAX_SOURCES_PER_WORKSPACE = 50;
/** Secrets tried per request: the current one and at most this many minus one still in overlap. */
const MAX_LIVE_SECRETS = 4;
const COUNTER_SHARDS = 8;

export interface InboundSourceInput {
  readonly name: string;
  readonly scheme: Scheme;
  readonly secret?: string | undefined;
  readonly eventType?: string | undefined;
  readonly toleranceSeconds?: number | undefined;
  readonly hmac?: { header: string; algorithm?: 'sha256' | 'sha512' | undefined; encoding?: 'hex' | 'base64' | undefined; prefix?: string | undefined } | undefined;
  readonly rateLimitPerMinute?: number | undefined;
}

export interface InboundSourceView {
  readonly id: string;
  readonly name: string;
  readonly scheme: Scheme;
  readonly url: string;
  readonly eventType: string;
  readonly toleranceSeconds: number | null;
  readonly hmac: HmacOptions | null;
  readonly rateLimitPerMinute: number;
  readonly receivedCount: number;
  readonly rejectedCount: number;
  readonly lastReceivedAt: string | null;
  readonly lastRejectedAt: string | null;
  readonly lastRejectedReason: string | null;
  readonly createdAt: string;
}

/** What verification needs, read inside the source's workspace transaction. */
export interface SourceForReceipt {
  readonly id: string;
  readonly scheme: Scheme;
  readonly eventType: string;
  readonly toleranceSeconds: number | null;
  readonly hmac: HmacOptions | null;
  readonly secrets: string[];
}

interface Row {
  id: string;
  name: string;
  scheme: Scheme;
  event_type: string;
  tolerance_seconds: number | null;
  hmac: HmacOptions | null;
  rate_limit_per_minute: number;
  created_at: Date;
  received: number | null;
  rejected: number | null;
  last_received_at: Date | null;
  last_rejected_at: Date | null;
  last_rejected_reason: string | null;
}

const SELECT = `SELECT s.id, s.name, s.scheme, s.event_type, s.tolerance_seconds, s.hmac, s.rate_limit_per_minute, s.created_at,
       c.received, c.rejected, c.last_received_at, c.last_rejected_at, c.last_rejected_reason
  FROM inbound_sources s
  LEFT JOIN LATERAL (
    SELECT sum(received)::bigint AS received, sum(rejected)::bigint AS rejected, max(last_received_at) AS last_received_at, max(last_rejected_at) AS last_rejected_at,
           (array_agg(last_rejected_reason ORDER BY last_rejected_at DESC NULLS LAST))[1] AS last_rejected_reason
      FROM inbound_source_counters WHERE source_id = s.id
  ) c ON true`;

const secretPlace = (id: string) => ({ table: 'inbound_source_secrets', rowId: id, column: 'secret' });

/** Every problem with a creation request at once (the schema has already checked the shapes). */
export function inputProblems(input: InboundSourceInput): string[] {
  const problems: string[] = [];
  if (input.scheme === 'hmac' && input.hmac === undefined) problems.push('the hmac scheme needs hmac options (at least the header name)');
  if (input.scheme !== 'hmac' && input.hmac !== undefined) problems.push('hmac options apply to the hmac scheme only');
  if (input.toleranceSeconds !== undefined && !timedSchemes.has(input.scheme)) problems.push(`${input.scheme} signatures carry no timestamp, so toleranceSeconds does not apply`);
  if (input.secret === undefined && !schemesGeneratingSecrets.has(input.scheme)) problems.push(`a ${input.scheme} source needs the secret the provider issued`);
  if (input.secret !== undefined) problems.push(...secretProblems(input.scheme, input.secret));
  if (input.eventType !== undefined) problems.push(...templateProblems(input.eventType));
  return problems;
}

function validated(input: InboundSourceInput): void {
  const problems = inputProblems(input);
  if (problems.length > 0) throw new BulkheadError('validation_failed', problems.join('; '), { details: { problems } });
}

export function createInboundSources(deps: { vault: Vault; runtime: Runtime; publicUrl: () => string }) {
  const { vault, runtime } = deps;

  const view = (r: Row): InboundSourceView => ({
    id: r.id,
    name: r.name,
    scheme: r.scheme,
    url: `${deps.publicUrl()}/hooks/${r.id}`,
    eventType: r.event_type,
    toleranceSeconds: r.tolerance_seconds,
    hmac: r.hmac,
    rateLimitPerMinute: r.rate_limit_per_minute,
    receivedCount: r.received ?? 0,
    rejectedCount: r.rejected ?? 0,
    lastReceivedAt: r.last_received_at?.toISOString() ?? null,
    lastRejectedAt: r.last_rejected_at?.toISOString() ?? null,
    lastRejectedReason: r.last_rejected_reason,
    createdAt: r.created_at.toISOString(),
  });

  async function find(tx: WorkspaceTx, id: string): Promise<Row> {
    const row = isId('inboundSource', id) ? (await tx.query<Row>(`${SELECT} WHERE s.id = $1`, [id])).rows[0] : undefined;
    if (!row) throw notFound('inbound source');
    return row;
  }

  async function addSecret(tx: WorkspaceTx, sourceId: string, secret: string): Promise<void> {
    const id = newId('inboundSecret', runtime);
    await tx.query('INSERT INTO inbound_source_secrets (workspace_id, source_id, id, secret, created_at) VALUES ($1, $2, $3, $4, $5)', [
      tx.workspaceId,
      sourceId,
      id,
      await vault.workspace(tx).seal(secretPlace(id), secret),
      runtime.now(),
    ]);
  }

  /** Adds to one counter shard; selecting the source first means a source deleted meanwhile counts nothing. */
  async function count(tx: WorkspaceTx, sourceId: string, outcome: 'received' | { rejected: string }): Promise<void> {
    const shard = Math.floor(Math.random() * COUNTER_SHARDS);
    if (outcome === 'received') {
      await tx.query(
        `INSERT INTO inbound_source_counters (workspace_id, source_id, shard, received, last_received_at)
         SELECT s.workspace_id, s.id, $2::smallint, 1, $3::timestamptz FROM inbound_sources s WHERE s.id = $1
         ON CONFLICT (workspace_id, source_id, shard) DO UPDATE SET received = inbound_source_counters.received + 1,
           last_received_at = GREATEST(inbound_source_counters.last_received_at, EXCLUDED.last_received_at)`,
        [sourceId, shard, runtime.now()],
      );
      return;
    }
    await tx.query(
      `INSERT INTO inbound_source_counters (workspace_id, source_id, shard, rejected, last_rejected_at, last_rejected_reason)
       SELECT s.workspace_id, s.id, $2::smallint, 1, $3::timestamptz, $4::text FROM inbound_sources s WHERE s.id = $1
       ON CONFLICT (workspace_id, source_id, shard) DO UPDATE SET rejected = inbound_source_counters.rejected + 1,
         last_rejected_at = EXCLUDED.last_rejected_at, last_rejected_reason = EXCLUDED.last_rejected_reason`,
      [sourceId, shard, runtime.now(), outcome.rejected],
    );
  }

  return {
    /** Shape checks that need no database (run before the transaction). */
    validate: validated,

    async create(tx: WorkspaceTx, ctx: ActionContext, input: InboundSourceInput, limits: { max: number }): Promise<InboundSourceView & { secret?: string }> {
      validated(input);
      await enforceCountLimit(tx, 'inbound_sources', limits.max);

      const id = newId('inboundSource', runtime);
      const hmac: HmacOptions | null = input.hmac
        ? { header: input.hmac.header.toLowerCase(), algorithm: input.hmac.algorithm ?? 'sha256', encoding: input.hmac.encoding ?? 'hex', prefix: input.hmac.prefix ?? '' }
        : null;
      const tolerance = timedSchemes.has(input.scheme) ? (input.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS) : null;
      await tx
        .query(
          `INSERT INTO inbound_sources (workspace_id, id, name, scheme, event_type, tolerance_seconds, hmac, rate_limit_per_minute, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9)`,
          [tx.workspaceId, id, input.name, input.scheme, input.eventType ?? defaultEventTypes[input.scheme], tolerance, hmac === null ? null : JSON.stringify(hmac), input.rateLimitPerMinute ?? DEFAULT_RATE_LIMIT_PER_MINUTE, runtime.now()],
        )
        .catch(onUniqueViolation('name_taken', 'an inbound source with this name already exists in the workspace'));
      const generated = input.secret === undefined ? generateSecret(input.scheme, runtime) : undefined;
      await addSecret(tx, id, input.secret ?? (generated as string));
      await workspaceAudit.append(tx, runtime, { ...ctx, action: 'inbound_source.create', target: { type: 'inbound_source', id }, outcome: 'success', details: { scheme: input.scheme, secretGenerated: generated !== undefined } });
      const created = view(await find(tx, id));
      return generated === undefined ? created : { ...created, secret: generated };
    },

    async list(tx: WorkspaceTx, { cursor, limit }: { cursor?: string | undefined; limit: number }): Promise<Page<InboundSourceView>> {
      const after = decodeCursor(cursor, new RegExp(idPattern('inboundSource')));
      const { rows } = await tx.query<Row>(`${SELECT} WHERE ($1::text IS NULL OR s.id > $1) ORDER BY s.id LIMIT $2`, [after ?? null, limit + 1]);
      return toPage(rows, limit, (r) => r.id, view);
    },

    get: async (tx: WorkspaceTx, id: string) => view(await find(tx, id)),

    async remove(tx: WorkspaceTx, ctx: ActionContext, id: string): Promise<void> {
      await find(tx, id);
      await tx.query('DELETE FROM inbound_sources WHERE id = $1', [id]);
      await workspaceAudit.append(tx, runtime, { ...ctx, action: 'inbound_source.delete', target: { type: 'inbound_source', id }, outcome: 'success' });
    },

    /**
     * A new current secret (generated, or the provider's new one); the previous ones keep verifying
     * for `overlapSeconds` (0 ends them now, for a leaked secret).
     */
    async rotateSecret(tx: WorkspaceTx, ctx: ActionContext, id: string, input: { secret?: string | undefined; overlapSeconds: number }): Promise<{ secret?: string; previousExpiresAt: string }> {
      const row = await find(tx, id);
      // Rotations of one source take turns (row locks would need UPDATE, which the role lacks on purpose).
      await tx.query('SELECT pg_advisory_xact_lock($1)', [advisoryLockKey('inbound_source_secrets', id)]);
      const problems = input.secret === undefined ? (schemesGeneratingSecrets.has(row.scheme) ? [] : [`a ${row.scheme} source needs the new secret the provider issued`]) : secretProblems(row.scheme, input.secret);
      if (problems.length > 0) throw new BulkheadError('validation_failed', problems.join('; '), { details: { problems } });
      const now = runtime.now();
      const expiresAt = new Date(now.getTime() + input.overlapSeconds * 1000);
      await tx.query('DELETE FROM inbound_source_secrets WHERE source_id = $1 AND expires_at <= $2', [id, now]);
      await tx.query('UPDATE inbound_source_secrets SET expires_at = LEAST(COALESCE(expires_at, $2), $2) WHERE source_id = $1', [id, expiresAt]);
      const generated = input.secret === undefined ? generateSecret(row.scheme, runtime) : undefined;
      await addSecret(tx, id, input.secret ?? (generated as string));
      await workspaceAudit.append(tx, runtime, { ...ctx, action: 'inbound_source.secret.rotate', target: { type: 'inbound_source', id }, outcome: 'success', details: { overlapSeconds: input.overlapSeconds, secretGenerated: generated !== undefined } });
      return generated === undefined ? { previousExpiresAt: expiresAt.toISOString() } : { secret: generated, previousExpiresAt: expiresAt.toISOString() };
    },

    /** The source and its live secrets (opened), or undefined when it does not exist (deleted meanwhile). */
    async forReceipt(tx: WorkspaceTx, id: string): Promise<SourceForReceipt | undefined> {
      const row = (await tx.query<Row>('SELECT id, scheme, event_type, tolerance_seconds, hmac FROM inbound_sources s WHERE id = $1', [id])).rows[0];
      if (!row) return undefined;
      const { rows } = await tx.query<{ id: string; secret: Uint8Array }>(
        'SELECT id, secret FROM inbound_source_secrets WHERE source_id = $1 AND (expires_at IS NULL OR expires_at > $2) ORDER BY created_at DESC, id DESC LIMIT $3',
        [id, runtime.now(), MAX_LIVE_SECRETS],
      );
      const sealer = vault.workspace(tx);
      const secrets = await mapSerially(rows, (r) => sealer.openText(secretPlace(r.id), r.secret));
      return { id: row.id, scheme: row.scheme, eventType: row.event_type, toleranceSeconds: row.tolerance_seconds, hmac: row.hmac, secrets };
    },

    recordReceipt: (tx: WorkspaceTx, id: string) => count(tx, id, 'received'),

    recordRejection: (tx: WorkspaceTx, id: string, reason: string) => count(tx, id, { rejected: reason }),
  };
}

export type InboundSources = ReturnType<typeof createInboundSources>;
