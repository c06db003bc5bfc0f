/**
 * Ingest: an event and every delivery it causes are committed in one transaction, before the 202
 * (SPEC §4: nothing acknowledged can be lost). Rules are evaluated here, once: changing a rule
 * affects only later events. Payloads are sealed with the workspace key.
 *
 * Idempotency: a key (body `idempotencyKey` or the `Idempotency-Key` header) is remembered for
 * 24 hours; repeating it returns the original event and creates nothing; the same key with a
 * different body is `idempotency_key_reused`. Concurrent requests with one key serialise on the
 * key's row (the second waits for the first to commit, then sees it).
 */
import { createHash } from 'node:crypto';
import { canonicalJson } from '../audit/chain.js';
import type { WorkspaceTx } from '../db/tenant-tx.js';
import { BulkheadError, notFound } from '../errors.js';
import { idPattern, isId, newId, type Runtime } from '../ids.js';
import { decodeCursor, type Page, toPage } from '../pagination.js';
import { matchesFilter } from '../routing/filter.js';
import { isEventType, isReservedType, matchesAny, RESERVED_NAMESPACE } from '../routing/patterns.js';
import { RULE_COLUMNS, type RuleRow } from '../routing/rules.js';
import type { Vault } from '../vault/vault.js';

export const IDEMPOTENCY_WINDOW_MS = 24 * 3600_000;

/** The usage period (calendar month, UTC) a moment falls in, as `YYYY-MM-01`. */
const monthOf = (now: Date) => new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)).toISOString().slice(0, 10);

export interface EventInput {
  readonly type: string;
  readonly resource?: string | undefined;
  readonly resourceId?: string | undefined;
  readonly payload: unknown;
  readonly idempotencyKey?: string | undefined;
}

export interface EventView {
  readonly id: string;
  readonly type: string;
  readonly resource: string | null;
  readonly resourceId: string | null;
  readonly payload: unknown;
  readonly createdAt: string;
}

export interface IngestResult {
  readonly event: EventView;
  readonly deliveries: number;
  /** True when an idempotency key returned an earlier event. */
  readonly replayed: boolean;
}

export interface EventLimits {
  readonly maxPayloadBytes: number;
  readonly eventsPerMonth: number;
}

interface EventRow {
  id: string;
  type: string;
  resource: string | null;
  resource_id: string | null;
  payload: Uint8Array;
  created_at: Date;
}

const payloadPlace = (id: string) => ({ table: 'events', rowId: id, column: 'payload' });
const requestHash = (input: EventInput) => createHash('sha256').update(canonicalJson({ type: input.type, resource: input.resource ?? null, resourceId: input.resourceId ?? null, payload: input.payload ?? null })).digest('hex');

/** What ingest routes by: the workspace's enabled rules and its destinations, read once per request. */
export interface Routing {
  readonly rules: readonly RuleRow[];
  readonly destinations: ReadonlyMap<string, { enabled: boolean; eventTypes: string[] | null; ordered: boolean }>;
}

export async function loadRouting(tx: WorkspaceTx): Promise<Routing> {
  const rules = (await tx.query<RuleRow>(`SELECT ${RULE_COLUMNS} FROM rules WHERE enabled`)).rows;
  const { rows } = await tx.query<{ id: string; enabled: boolean; event_types: string[] | null; ordered: boolean }>('SELECT id, enabled, event_types, ordered FROM destinations');
  return { rules, destinations: new Map(rows.map((d) => [d.id, { enabled: d.enabled, eventTypes: d.event_types, ordered: d.ordered }])) };
}

/** One delivery per destination, however many rules lead there; ordered if any of them asks. */
function targetsOf(routing: Routing, input: EventInput, exceptDestinationId: string | undefined): Map<string, { ruleId: string; ordered: boolean }> {
  const targets = new Map<string, { ruleId: string; ordered: boolean }>();
  for (const rule of routing.rules) {
    if (!matchesAny(rule.event_types, input.type)) continue;
    if (rule.resource !== null && rule.resource !== (input.resource ?? null)) continue;
    if (rule.filter && !matchesFilter(rule.filter, input.payload)) continue;
    for (const destinationId of rule.destination_ids) {
      if (destinationId === exceptDestinationId) continue;
      const destination = routing.destinations.get(destinationId);
      if (!destination?.enabled) continue;
      if (destination.eventTypes && !matchesAny(destination.eventTypes, input.type)) continue;
      const ordered = rule.ordered || destination.ordered;
      const existing = targets.get(destinationId);
      targets.set(destinationId, { ruleId: existing?.ruleId ?? rule.id, ordered: ordered || (existing?.ordered ?? false) });
    }
  }
  return targets;
}

/**
 * Writes one event (payload sealed) and its deliveries. `exceptDestinationId` keeps an
 * operational event about a destination from being delivered to that destination.
 */
export async function writeEvent(
  tx: WorkspaceTx,
  deps: { vault: Vault; runtime: Runtime },
  input: EventInput,
  json: string,
  routing: Routing,
  exceptDestinationId?: string,
): Promise<{ id: string; createdAt: Date; deliveries: number }> {
  const now = deps.runtime.now();
  const id = newId('event', deps.runtime);
  const sealed = await deps.vault.workspace(tx).seal(payloadPlace(id), json);
  await tx.query(
    'INSERT INTO events (workspace_id, id, type, resource, resource_id, payload, payload_bytes, idempotency_key, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)',
    [tx.workspaceId, id, input.type, input.resource ?? null, input.resourceId ?? null, sealed, Buffer.byteLength(json), input.idempotencyKey ?? null, now],
  );
  const targets = targetsOf(routing, input, exceptDestinationId);
  for (const [destinationId, target] of targets) {
    await tx.query(
      `INSERT INTO deliveries (workspace_id, id, event_id, destination_id, rule_id, status, next_attempt_at, ordering_key, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $6, $6)`,
      [tx.workspaceId, newId('delivery', deps.runtime), id, destinationId, target.ruleId, now, target.ordered ? (input.resourceId ?? null) : null],
    );
  }
  return { id, createdAt: now, deliveries: targets.size };
}

export function createEventService(deps: { vault: Vault; runtime: Runtime }) {
  const { vault, runtime } = deps;

  async function eventView(tx: WorkspaceTx, row: EventRow): Promise<EventView> {
    return {
      id: row.id,
      type: row.type,
      resource: row.resource,
      resourceId: row.resource_id,
      payload: JSON.parse(await vault.workspace(tx).openText(payloadPlace(row.id), row.payload)) as unknown,
      createdAt: row.created_at.toISOString(),
    };
  }

  function check(input: EventInput, limits: EventLimits): string {
    if (!isEventType(input.type)) throw new BulkheadError('invalid_event_type', 'type must be dot-separated segments of a-z, 0-9, _ and - (at most 200 characters)');
    if (isReservedType(input.type)) throw new BulkheadError('invalid_event_type', `types in the ${RESERVED_NAMESPACE}. namespace are Bulkhead's own operational events`);
    const json = JSON.stringify(input.payload ?? null);
    const bytes = Buffer.byteLength(json);
    if (bytes > limits.maxPayloadBytes) throw new BulkheadError('payload_too_large', `the payload is ${String(bytes)} bytes; this workspace accepts at most ${String(limits.maxPayloadBytes)}`, { details: { limit: limits.maxPayloadBytes } });
    return json;
  }

  async function quota(tx: WorkspaceTx, adding: number, limits: EventLimits): Promise<void> {
    const period = monthOf(runtime.now());
    const { rows } = await tx.query<{ n: number | null }>("SELECT sum(count)::bigint AS n FROM usage_counters WHERE metric = 'events' AND period = $1", [period]);
    if ((rows[0]?.n ?? 0) + adding > limits.eventsPerMonth) {
      throw new BulkheadError('quota_exceeded', `this workspace's monthly event quota (${String(limits.eventsPerMonth)}) is used up`, { details: { limit: limits.eventsPerMonth } });
    }
  }

  /** Counted in the same transaction as the events (a rolled-back batch counts nothing); replays do not count. */
  async function count(tx: WorkspaceTx, added: number): Promise<void> {
    if (added === 0) return;
    const period = monthOf(runtime.now());
    await tx.query(
      `INSERT INTO usage_counters (workspace_id, metric, period, shard, count) VALUES ($1, 'events', $2, $3, $4)
       ON CONFLICT (workspace_id, metric, period, shard) DO UPDATE SET count = usage_counters.count + EXCLUDED.count`,
      [tx.workspaceId, period, Math.floor(Math.random() * 16), added],
    );
  }

  async function one(tx: WorkspaceTx, input: EventInput, json: string, routing: Routing): Promise<IngestResult> {
    const now = runtime.now();
    if (input.idempotencyKey !== undefined) {
      const hash = requestHash(input);
      await tx.query('DELETE FROM event_idempotency WHERE key = $1 AND expires_at <= $2', [input.idempotencyKey, now]);
      const claimed = await tx.query(
        'INSERT INTO event_idempotency (workspace_id, key, event_id, request_hash, expires_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING',
        [tx.workspaceId, input.idempotencyKey, '', hash, new Date(now.getTime() + IDEMPOTENCY_WINDOW_MS)],
      );
      if (claimed.rowCount === 0) {
        const earlier = (await tx.query<{ event_id: string; request_hash: string }>('SELECT event_id, request_hash FROM event_idempotency WHERE key = $1', [input.idempotencyKey])).rows[0];
        if (earlier?.request_hash !== hash) throw new BulkheadError('idempotency_key_reused', 'this idempotency key was used with a different request in the last 24 hours');
        const row = (await tx.query<EventRow>('SELECT id, type, resource, resource_id, payload, created_at FROM events WHERE id = $1', [earlier.event_id])).rows[0];
        if (!row) throw notFound('event');
        const { rows } = await tx.query<{ n: number }>('SELECT count(*)::int AS n FROM deliveries WHERE event_id = $1', [row.id]);
        return { event: await eventView(tx, row), deliveries: rows[0]?.n ?? 0, replayed: true };
      }
    }
    const written = await writeEvent(tx, deps, input, json, routing);
    if (input.idempotencyKey !== undefined) await tx.query('UPDATE event_idempotency SET event_id = $2 WHERE key = $1', [input.idempotencyKey, written.id]);
    return { event: { id: written.id, type: input.type, resource: input.resource ?? null, resourceId: input.resourceId ?? null, payload: input.payload ?? null, createdAt: written.createdAt.toISOString() }, deliveries: written.deliveries, replayed: false };
  }

  return {
    /** Ingests a batch atomically: every event and delivery, or nothing. */
    async ingest(tx: WorkspaceTx, inputs: readonly EventInput[], limits: EventLimits): Promise<IngestResult[]> {
      const jsons = inputs.map((input) => check(input, limits));
      await quota(tx, inputs.length, limits);
      const routing = await loadRouting(tx);
      const results: IngestResult[] = [];
      for (const [i, input] of inputs.entries()) results.push(await one(tx, input, jsons[i] as string, routing));
      await count(tx, results.filter((r) => !r.replayed).length);
      return results;
    },

    async list(tx: WorkspaceTx, q: { cursor?: string | undefined; limit: number; type?: string | undefined; resource?: string | undefined; since?: string | undefined; until?: string | undefined }): Promise<Page<EventView>> {
      const after = decodeCursor(q.cursor, new RegExp(idPattern('event')));
      const { rows } = await tx.query<EventRow>(
        `SELECT id, type, resource, resource_id, payload, created_at FROM events
          WHERE ($1::text IS NULL OR id < $1) AND ($2::text IS NULL OR type = $2) AND ($3::text IS NULL OR resource = $3)
            AND ($4::timestamptz IS NULL OR created_at >= $4) AND ($5::timestamptz IS NULL OR created_at < $5)
          ORDER BY id DESC LIMIT $6`,
        [after ?? null, q.type ?? null, q.resource ?? null, q.since ?? null, q.until ?? null, q.limit + 1],
      );
      const page = toPage(rows, q.limit, (r) => r.id, (r) => r);
      return { data: await Promise.all(page.data.map((r) => eventView(tx, r))), nextCursor: page.nextCursor };
    },

    async get(tx: WorkspaceTx, id: string): Promise<EventView> {
      const row = isId('event', id) ? (await tx.query<EventRow>('SELECT id, type, resource, resource_id, payload, created_at FROM events WHERE id = $1', [id])).rows[0] : undefined;
      if (!row) throw notFound('event');
      return eventView(tx, row);
    },
  };
}

export type EventService = ReturnType<typeof createEventService>;
