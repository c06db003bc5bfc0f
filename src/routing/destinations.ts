/**
 * Webhook destinations and their Standard Webhooks signing secrets (`whsec_` + base64 of 32
 * random bytes). Secrets are sealed with the workspace key; rotation keeps the previous secret
 * signing alongside the new one for an overlap (default 24 h) so receivers can switch without
 * dropping a delivery. URLs are checked against the egress policy when saved (and again at send).
 */
import { randomBytes } from 'node:crypto';
import type { ActionContext } from '../audit/context.js';
import { workspaceAudit } from '../audit/store.js';
import { mapSerially } from '../db/serially.js';
import { enforceCountLimit } from '../limits/count-limit.js';
import type { WorkspaceTx } from '../db/tenant-tx.js';
import { BulkheadError, notFound } from '../errors.js';
import { idPattern, isId, newId, type Runtime } from '../ids.js';
import { decodeCursor, type Page, toPage } from '../pagination.js';
import type { Vault } from '../vault/vault.js';

export const DEFAULT_SECRET_OVERLAP_SECONDS = 86_400;

/** Headers a destination may not set: transport, signatures, and credentials of its own. */
const RESERVED_HEADERS = /^(host|content-length|content-type|transfer-encoding|connection|keep-alive|te|trailer|upgrade|expect|authorization|cookie|proxy-.*|webhook-.*|x-forwarded-.*)$/i;
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$/;

export interface DestinationView {
  readonly id: string;
  readonly type: 'webhook';
  readonly url: string;
  readonly description: string | null;
  readonly enabled: boolean;
  readonly disabledReason: string | null;
  readonly headers: Record<string, string>;
  readonly eventTypes: string[] | null;
  readonly rateLimitPerSecond: number | null;
  /** Most deliveries in flight at once; null means the server default. */
  readonly maxInFlight: number | null;
  readonly ordered: boolean;
  /** The circuit breaker: `open` sends nothing until `openUntil`, `half_open` sends one probe at a time. */
  readonly circuit: { readonly state: 'closed' | 'open' | 'half_open'; readonly consecutiveFailures: number; readonly openUntil: string | null };
  readonly createdAt: string;
  readonly updatedAt: string;
}

interface Row {
  id: string;
  type: 'webhook';
  url: string;
  description: string | null;
  enabled: boolean;
  disabled_reason: string | null;
  headers: Record<string, string>;
  event_types: string[] | null;
  rate_limit_per_second: number | null;
  max_in_flight: number | null;
  ordered: boolean;
  consecutive_failures: number;
  circuit_open_until: Date | null;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS = 'id, type, url, description, enabled, disabled_reason, headers, event_types, rate_limit_per_second, max_in_flight, ordered, consecutive_failures, circuit_open_until, created_at, updated_at';
const circuitOf = (r: Row, now: Date): DestinationView['circuit'] => ({
  state: r.circuit_open_until === null ? 'closed' : r.circuit_open_until > now ? 'open' : 'half_open',
  consecutiveFailures: r.consecutive_failures,
  openUntil: r.circuit_open_until?.toISOString() ?? null,
});
const view = (r: Row, now: Date): DestinationView => ({
  id: r.id,
  type: r.type,
  url: r.url,
  description: r.description,
  enabled: r.enabled,
  disabledReason: r.disabled_reason,
  headers: r.headers,
  eventTypes: r.event_types,
  rateLimitPerSecond: r.rate_limit_per_second,
  maxInFlight: r.max_in_flight,
  ordered: r.ordered,
  circuit: circuitOf(r, now),
  createdAt: r.created_at.toISOString(),
  updatedAt: r.updated_at.toISOString(),
});

export interface DestinationInput {
  readonly url?: string | undefined;
  readonly description?: string | undefined;
  readonly enabled?: boolean | undefined;
  readonly headers?: Record<string, string> | undefined;
  readonly eventTypes?: string[] | undefined;
  /** null clears it (on update). */
  readonly rateLimitPerSecond?: number | null | undefined;
  readonly maxInFlight?: number | null | undefined;
  readonly ordered?: boolean | undefined;
}

export function headerProblems(headers: Record<string, string>): string[] {
  const problems: string[] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (!HEADER_NAME.test(name)) problems.push(`header "${name.slice(0, 40)}" is not a valid header name`);
    else if (RESERVED_HEADERS.test(name)) problems.push(`header "${name}" is set by Bulkhead and cannot be overridden`);
    // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused here
    if (/[\0-\x1f\x7f]/.test(value) || value.length > 1024) problems.push(`header "${name.slice(0, 40)}" has a value with control characters or over 1024 characters`);
  }
  return problems;
}

const newSecret = () => `whsec_${randomBytes(32).toString('base64')}`;
const secretPlace = (id: string) => ({ table: 'destination_secrets', rowId: id, column: 'secret' });

export function createDestinationService(deps: {
  vault: Vault;
  runtime: Runtime;
  checkUrl: (url: string) => Promise<void>;
  /** The delivery queue's cancel transition (delivery/sql/cancel.ts), handed down: routing sits below delivery. */
  cancelDeliveries: (tx: WorkspaceTx, destinationId: string, now: Date) => Promise<number>;
}) {
  const { vault, runtime } = deps;

  async function find(tx: WorkspaceTx, id: string, lock = false): Promise<Row> {
    const row = isId('destination', id) ? (await tx.query<Row>(`SELECT ${COLUMNS} FROM destinations WHERE id = $1${lock ? ' FOR UPDATE' : ''}`, [id])).rows[0] : undefined;
    if (!row) throw notFound('destination');
    return row;
  }

  async function validate(input: DestinationInput): Promise<void> {
    const problems = input.headers ? headerProblems(input.headers) : [];
    if (problems.length > 0) throw new BulkheadError('validation_failed', problems.join('; '), { details: { problems } });
    if (input.url !== undefined) await deps.checkUrl(input.url);
  }

  async function addSecret(tx: WorkspaceTx, destinationId: string, secret: string): Promise<void> {
    const id = newId('destinationSecret', runtime);
    await tx.query('INSERT INTO destination_secrets (workspace_id, destination_id, id, secret, created_at) VALUES ($1, $2, $3, $4, $5)', [
      tx.workspaceId,
      destinationId,
      id,
      await vault.workspace(tx).seal(secretPlace(id), secret),
      runtime.now(),
    ]);
  }

  async function activeSecretRows(tx: WorkspaceTx, id: string): Promise<{ secret: string; expiresAt: string | null }[]> {
    const { rows } = await tx.query<{ id: string; secret: Uint8Array; expires_at: Date | null }>(
      'SELECT id, secret, expires_at FROM destination_secrets WHERE destination_id = $1 AND (expires_at IS NULL OR expires_at > $2) ORDER BY created_at DESC, id DESC',
      [id, runtime.now()],
    );
    const sealer = vault.workspace(tx);
    return mapSerially(rows, async (r) => ({ secret: await sealer.openText(secretPlace(r.id), r.secret), expiresAt: r.expires_at?.toISOString() ?? null }));
  }

  return {
    /** Checks run before the transaction (the URL check resolves DNS). */
    validate,

    async create(tx: WorkspaceTx, ctx: ActionContext, input: DestinationInput & { url: string }, limits: { max: number }): Promise<DestinationView & { secret: string }> {
      await enforceCountLimit(tx, 'destinations', limits.max);
      const id = newId('destination', runtime);
      const now = runtime.now();
      const { rows } = await tx.query<Row>(
        `INSERT INTO destinations (workspace_id, id, type, url, description, enabled, headers, event_types, rate_limit_per_second, max_in_flight, ordered, created_at, updated_at)
         VALUES ($1, $2, 'webhook', $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11, $11) RETURNING ${COLUMNS}`,
        [tx.workspaceId, id, input.url, input.description ?? null, input.enabled ?? true, JSON.stringify(input.headers ?? {}), input.eventTypes ?? null, input.rateLimitPerSecond ?? null, input.maxInFlight ?? null, input.ordered ?? false, now],
      );
      const secret = newSecret();
      await addSecret(tx, id, secret);
      await workspaceAudit.append(tx, runtime, { ...ctx, action: 'destination.create', target: { type: 'destination', id }, outcome: 'success', details: { url: input.url } });
      return { ...view(rows[0] as Row, now), secret };
    },

    async list(tx: WorkspaceTx, { cursor, limit }: { cursor?: string | undefined; limit: number }): Promise<Page<DestinationView>> {
      const after = decodeCursor(cursor, new RegExp(idPattern('destination')));
      const { rows } = await tx.query<Row>(`SELECT ${COLUMNS} FROM destinations WHERE ($1::text IS NULL OR id > $1) ORDER BY id LIMIT $2`, [after ?? null, limit + 1]);
      return toPage(rows, limit, (r) => r.id, (r) => view(r, runtime.now()));
    },

    get: async (tx: WorkspaceTx, id: string) => view(await find(tx, id), runtime.now()),

    async update(tx: WorkspaceTx, ctx: ActionContext, id: string, patch: DestinationInput): Promise<DestinationView> {
      const row = await find(tx, id, true);
      const enabled = patch.enabled ?? row.enabled;
      const { rows } = await tx.query<Row>(
        // Re-enabling starts afresh: no failing period, a closed circuit, a full bucket.
        `UPDATE destinations SET url = $2, description = $3, enabled = $4, disabled_reason = $5, headers = $6::jsonb, event_types = $7, rate_limit_per_second = $8, ordered = $9,
           max_in_flight = $11, rate_tokens = NULL, rate_refilled_at = NULL,
           failing_since = CASE WHEN $4 AND NOT enabled THEN NULL ELSE failing_since END,
           consecutive_failures = CASE WHEN $4 AND NOT enabled THEN 0 ELSE consecutive_failures END,
           circuit_open_until = CASE WHEN $4 AND NOT enabled THEN NULL ELSE circuit_open_until END,
           updated_at = $10 WHERE id = $1 RETURNING ${COLUMNS}`,
        [
          id, patch.url ?? row.url, patch.description ?? row.description, enabled, enabled ? null : row.disabled_reason ?? 'disabled by the platform', JSON.stringify(patch.headers ?? row.headers), patch.eventTypes ?? row.event_types,
          patch.rateLimitPerSecond === undefined ? row.rate_limit_per_second : patch.rateLimitPerSecond, patch.ordered ?? row.ordered, runtime.now(), patch.maxInFlight === undefined ? row.max_in_flight : patch.maxInFlight,
        ],
      );
      await workspaceAudit.append(tx, runtime, { ...ctx, action: 'destination.update', target: { type: 'destination', id }, outcome: 'success', details: { fields: Object.keys(patch).sort() } });
      return view(rows[0] as Row, runtime.now());
    },

    async remove(tx: WorkspaceTx, ctx: ActionContext, id: string): Promise<void> {
      await find(tx, id, true);
      const inUse = await tx.query<{ id: string }>('SELECT id FROM rules WHERE $1 = ANY (destination_ids) LIMIT 5', [id]);
      if (inUse.rows.length > 0) throw new BulkheadError('conflict', 'rules still send to this destination; change or delete them first', { details: { rules: inUse.rows.map((r) => r.id) } });
      await deps.cancelDeliveries(tx, id, runtime.now());
      await tx.query('DELETE FROM destinations WHERE id = $1', [id]);
      await workspaceAudit.append(tx, runtime, { ...ctx, action: 'destination.delete', target: { type: 'destination', id }, outcome: 'success' });
    },

    /** The secrets that sign right now: the current one, and previous ones inside their overlap. */
    async signingSecrets(tx: WorkspaceTx, id: string): Promise<{ secret: string; expiresAt: string | null }[]> {
      await find(tx, id);
      return activeSecretRows(tx, id);
    },

    /** The secrets that sign now, newest first (the engine's path: the destination is known to exist). */
    /** The signing secrets of several destinations in one statement (the delivery engine's batch load), newest first. */
    async activeSecretsOf(tx: WorkspaceTx, ids: readonly string[]): Promise<Map<string, string[]>> {
      const { rows } = await tx.query<{ id: string; destination_id: string; secret: Uint8Array }>(
        'SELECT id, destination_id, secret FROM destination_secrets WHERE destination_id = ANY($1::text[]) AND (expires_at IS NULL OR expires_at > $2) ORDER BY created_at DESC, id DESC',
        [ids, runtime.now()],
      );
      const sealer = vault.workspace(tx);
      const secrets = new Map<string, string[]>(ids.map((id) => [id, []]));
      for (const r of rows) secrets.get(r.destination_id)?.push(await sealer.openText(secretPlace(r.id), r.secret));
      return secrets;
    },

    async rotateSecret(tx: WorkspaceTx, ctx: ActionContext, id: string, overlapSeconds: number): Promise<{ secret: string; previousExpiresAt: string }> {
      await find(tx, id, true);
      const expiresAt = new Date(runtime.now().getTime() + overlapSeconds * 1000);
      await tx.query('UPDATE destination_secrets SET expires_at = LEAST(COALESCE(expires_at, $2), $2) WHERE destination_id = $1', [id, expiresAt]);
      const secret = newSecret();
      await addSecret(tx, id, secret);
      await workspaceAudit.append(tx, runtime, { ...ctx, action: 'destination.secret.rotate', target: { type: 'destination', id }, outcome: 'success', details: { overlapSeconds } });
      return { secret, previousExpiresAt: expiresAt.toISOString() };
    },
  };
}

export type DestinationService = ReturnType<typeof createDestinationService>;
