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
import { mapSerially } from '../db/serially.js';
import type { WorkspaceTx } from '../db/tenant-tx.js';
import { enqueueEventDeliveries, type EventDelivery } from '../delivery/sql/enqueue.js';
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
  /** Executions queued (rule transforms, instance triggers); their deliveries come later. */
  readonly executions: number;
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

/** An enabled instance's triggers, as ingest matches them (denormalised on the instance row). */
interface InstanceTriggers {
  readonly id: string;
  readonly event_patterns: string[];
  readonly inbound_triggers: { sourceId: string; eventTypes: string[] | null; index: number }[];
}

/** What ingest routes by: the workspace's enabled rules, destinations and instances, read once per request. */
export interface Routing {
  readonly rules: readonly RuleRow[];
  readonly destinations: ReadonlyMap<string, { enabled: boolean; eventTypes: string[] | null; ordered: boolean }>;
  readonly instances: readonly InstanceTriggers[];
}

/** Three reads issued together: on PostgreSQL they are pipelined, one round trip for all. */
export async function loadRouting(tx: WorkspaceTx): Promise<Routing> {
  const [rules, destinations, instances] = await Promise.all([
    tx.query<RuleRow>(`SELECT ${RULE_COLUMNS} FROM rules WHERE enabled`),
    tx.query<{ id: string; enabled: boolean; event_types: string[] | null; ordered: boolean }>('SELECT id, enabled, event_types, ordered FROM destinations'),
    tx.query<InstanceTriggers>("SELECT id, event_patterns, inbound_triggers FROM instances WHERE enabled AND (cardinality(event_patterns) > 0 OR inbound_triggers <> '[]'::jsonb)"),
  ]);
  return {
    rules: rules.rows,
    destinations: new Map(destinations.rows.map((d) => [d.id, { enabled: d.enabled, eventTypes: d.event_types, ordered: d.ordered }])),
    instances: instances.rows,
  };
}

const ruleMatches = (rule: RuleRow, input: EventInput): boolean =>
  matchesAny(rule.event_types, input.type) && (rule.resource === null || rule.resource === (input.resource ?? null)) && (!rule.filter || matchesFilter(rule.filter, input.payload));

/** An execution an event starts: a rule's transform, or an instance's event or inbound trigger. */
type Started = { readonly kind: 'rule'; readonly ruleId: string; readonly revision: number } | { readonly kind: 'instance'; readonly instanceId: string; readonly trigger: 'event' | 'inbound' };

/**
 * Tenant code never runs at ingest: an event that starts code gets a queued execution, committed
 * with the event; the execution runner does the rest (and writes the deliveries it produces).
 */
function executionsOf(routing: Routing, input: EventInput): Started[] {
  const started: Started[] = [];
  for (const rule of routing.rules) {
    if (rule.transform_revision !== null && ruleMatches(rule, input)) started.push({ kind: 'rule', ruleId: rule.id, revision: rule.transform_revision });
  }
  for (const instance of routing.instances) {
    // The bulkhead.* namespace reaches an instance only through a pattern that names it (patterns.ts).
    if (matchesAny(instance.event_patterns, input.type)) {
      started.push({ kind: 'instance', instanceId: instance.id, trigger: 'event' });
      continue;
    }
    const viaSource = input.resource === 'inbound_source' && instance.inbound_triggers.some((t) => t.sourceId === input.resourceId && (t.eventTypes === null || matchesAny(t.eventTypes, input.type)));
    if (viaSource) started.push({ kind: 'instance', instanceId: instance.id, trigger: 'inbound' });
  }
  return started;
}

/** One delivery per destination, however many rules lead there; ordered if any of them asks. */
function targetsOf(routing: Routing, input: EventInput, exceptDestinationId: string | undefined): Map<string, { ruleId: string; ordered: boolean }> {
  const targets = new Map<string, { ruleId: string; ordered: boolean }>();
  for (const rule of routing.rules) {
    // A rule with a transform delivers what its transform returns, from the execution runner.
    if (rule.transform_revision !== null || !ruleMatches(rule, input)) continue;
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
 * Writes events (payloads sealed) and their deliveries with one multi-row insert each, whatever
 * the number: a batch costs two statements, not two per event, issued together (pipelined on
 * PostgreSQL: one round trip; they run in order, so the deliveries follow their events). `exceptDestinationId` keeps an
 * operational event about a destination from being delivered to that destination.
 */
export async function writeEvents(
  tx: WorkspaceTx,
  deps: { vault: Vault; runtime: Runtime },
  items: readonly { input: EventInput; json: string }[],
  routing: Routing,
  exceptDestinationId?: string,
): Promise<{ id: string; createdAt: Date; deliveries: number; executions: number }[]> {
  if (items.length === 0) return [];
  const now = deps.runtime.now();
  const sealer = deps.vault.workspace(tx);
  const ids = items.map(() => newId('event', deps.runtime));
  const sealed = await mapSerially(items.map((item, i) => ({ item, id: ids[i] as string })), ({ item, id }) => sealer.seal(payloadPlace(id), item.json));
  const eventsWritten = tx.query(
    `INSERT INTO events (workspace_id, id, type, resource, resource_id, payload, payload_bytes, idempotency_key, created_at)
     SELECT $1, e.id, e.type, e.resource, e.resource_id, decode(e.payload, 'hex'), e.payload_bytes, e.idempotency_key, $2
       FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[], $9::text[]) AS e(id, type, resource, resource_id, payload, payload_bytes, idempotency_key)`,
    [
      tx.workspaceId, now, ids, items.map((x) => x.input.type), items.map((x) => x.input.resource ?? null), items.map((x) => x.input.resourceId ?? null),
      sealed.map((b) => Buffer.from(b).toString('hex')), items.map((x) => Buffer.byteLength(x.json)), items.map((x) => x.input.idempotencyKey ?? null),
    ],
  );
  const deliveries: EventDelivery[] = [];
  const counts = items.map((item, i) => {
    const targets = targetsOf(routing, item.input, exceptDestinationId);
    for (const [destinationId, target] of targets) {
      deliveries.push({ id: newId('delivery', deps.runtime), eventId: ids[i] as string, destinationId, ruleId: target.ruleId, orderingKey: target.ordered ? (item.input.resourceId ?? null) : null });
    }
    return targets.size;
  });
  const executions = { id: [] as string[], kind: [] as string[], event: [] as string[], rule: [] as (string | null)[], revision: [] as (number | null)[], instance: [] as (string | null)[], trigger: [] as string[] };
  const started = items.map((item, i) => {
    const found = executionsOf(routing, item.input);
    for (const s of found) {
      executions.id.push(newId('execution', deps.runtime));
      executions.kind.push(s.kind);
      executions.event.push(ids[i] as string);
      executions.rule.push(s.kind === 'rule' ? s.ruleId : null);
      executions.revision.push(s.kind === 'rule' ? s.revision : null);
      executions.instance.push(s.kind === 'instance' ? s.instanceId : null);
      executions.trigger.push(s.kind === 'rule' ? 'event' : s.trigger);
    }
    return found.length;
  });
  const executionsWritten =
    executions.id.length === 0
      ? undefined
      : tx.query(
      `INSERT INTO executions (workspace_id, id, kind, event_id, rule_id, rule_revision, instance_id, trigger, status, created_at)
       SELECT $1, x.id, x.kind, x.event_id, x.rule_id, x.rule_revision, x.instance_id, x.trigger, 'queued', $2
         FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::int[], $8::text[], $9::text[]) AS x(id, kind, event_id, rule_id, rule_revision, instance_id, trigger)`,
      [tx.workspaceId, now, executions.id, executions.kind, executions.event, executions.rule, executions.revision, executions.instance, executions.trigger],
    );
  await Promise.all([eventsWritten, executionsWritten, enqueueEventDeliveries(tx, now, deliveries)]);
  return ids.map((id, i) => ({ id, createdAt: now, deliveries: counts[i] as number, executions: started[i] as number }));
}

export async function writeEvent(
  tx: WorkspaceTx,
  deps: { vault: Vault; runtime: Runtime },
  input: EventInput,
  json: string,
  routing: Routing,
  exceptDestinationId?: string,
): Promise<{ id: string; createdAt: Date; deliveries: number; executions: number }> {
  const [written] = await writeEvents(tx, deps, [{ input, json }], routing, exceptDestinationId);
  if (!written) throw new Error('writeEvents returned nothing');
  return written;
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

  /** Events counted this month; the quota compares against it. */
  async function usedThisMonth(tx: WorkspaceTx): Promise<number> {
    const { rows } = await tx.query<{ n: number | string | null }>("SELECT sum(count)::bigint AS n FROM usage_counters WHERE metric = 'events' AND period = $1", [monthOf(runtime.now())]);
    return Number(rows[0]?.n ?? 0);
  }
  const quotaExceeded = (limits: EventLimits) =>
    new BulkheadError('quota_exceeded', `this workspace's monthly event quota (${String(limits.eventsPerMonth)}) is used up`, { details: { limit: limits.eventsPerMonth } });

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

  /** The result for an event just written (not a replay). */
  const fresh = (input: EventInput, w: { id: string; createdAt: Date; deliveries: number; executions: number }): IngestResult => ({
    event: { id: w.id, type: input.type, resource: input.resource ?? null, resourceId: input.resourceId ?? null, payload: input.payload ?? null, createdAt: w.createdAt.toISOString() },
    deliveries: w.deliveries,
    executions: w.executions,
    replayed: false,
  });

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
        const { rows } = await tx.query<{ n: number; x: number }>('SELECT (SELECT count(*)::int FROM deliveries WHERE event_id = $1 AND execution_id IS NULL) AS n, (SELECT count(*)::int FROM executions WHERE event_id = $1) AS x', [row.id]);
        return { event: await eventView(tx, row), deliveries: rows[0]?.n ?? 0, executions: rows[0]?.x ?? 0, replayed: true };
      }
    }
    const written = await writeEvent(tx, deps, input, json, routing);
    if (input.idempotencyKey !== undefined) await tx.query('UPDATE event_idempotency SET event_id = $2 WHERE key = $1', [input.idempotencyKey, written.id]);
    return fresh(input, written);
  }

  return {
    /** Ingests a batch atomically: every event and delivery, or nothing. */
    async ingest(tx: WorkspaceTx, inputs: readonly EventInput[], limits: EventLimits): Promise<IngestResult[]> {
      const items = inputs.map((input) => ({ input, json: check(input, limits) }));
      const [used, routing] = await Promise.all([usedThisMonth(tx), loadRouting(tx)]);
      if (used + inputs.length > limits.eventsPerMonth) throw quotaExceeded(limits);
      // Events with an idempotency key go one by one (each may return an earlier event); the rest together.
      const results = new Array<IngestResult>(items.length);
      const plain: number[] = [];
      for (const [i, item] of items.entries()) {
        if (item.input.idempotencyKey === undefined) plain.push(i);
        else results[i] = await one(tx, item.input, item.json, routing);
      }
      const replays = results.filter((r) => r.replayed).length;
      const [written] = await Promise.all([writeEvents(tx, deps, plain.map((i) => items[i] as { input: EventInput; json: string }), routing), count(tx, items.length - replays)]);
      for (const [n, i] of plain.entries()) results[i] = fresh((items[i] as { input: EventInput }).input, written[n] as { id: string; createdAt: Date; deliveries: number; executions: number });
      return results;
    },

    /**
     * Ingests independent events in one transaction, each accepted or refused on its own (the
     * coalescer's path: many requests, one commit), as if they had come one after another: a
     * refusal is returned in the event's place, replays cost no quota, and the quota admits
     * events until it is used up. Per-event refusals are thrown by us, never by the database,
     * so the transaction stays usable after one.
     */
    async ingestEach(tx: WorkspaceTx, inputs: readonly EventInput[], limits: EventLimits): Promise<(IngestResult | BulkheadError)[]> {
      const results = new Array<IngestResult | BulkheadError>(inputs.length);
      const [used, routing] = await Promise.all([usedThisMonth(tx), loadRouting(tx)]);
      let room = limits.eventsPerMonth - used;
      let keyed = 0;
      const plain: { i: number; input: EventInput; json: string }[] = [];
      for (const [i, input] of inputs.entries()) {
        try {
          const json = check(input, limits);
          if (input.idempotencyKey === undefined) {
            plain.push({ i, input, json });
            continue;
          }
          if (room <= 0) throw quotaExceeded(limits);
          const result = await one(tx, input, json, routing);
          if (!result.replayed) {
            room -= 1;
            keyed += 1;
          }
          results[i] = result;
        } catch (error) {
          if (!(error instanceof BulkheadError) || error.status >= 500) throw error;
          results[i] = error;
        }
      }
      const admitted = plain.slice(0, Math.max(0, room));
      for (const p of plain.slice(admitted.length)) results[p.i] = quotaExceeded(limits);
      const [written] = await Promise.all([writeEvents(tx, deps, admitted, routing), count(tx, keyed + admitted.length)]);
      for (const [n, p] of admitted.entries()) results[p.i] = fresh(p.input, written[n] as { id: string; createdAt: Date; deliveries: number; executions: number });
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
      return { data: await mapSerially(page.data, (r) => eventView(tx, r)), nextCursor: page.nextCursor };
    },

    async get(tx: WorkspaceTx, id: string): Promise<EventView> {
      const row = isId('event', id) ? (await tx.query<EventRow>('SELECT id, type, resource, resource_id, payload, created_at FROM events WHERE id = $1', [id])).rows[0] : undefined;
      if (!row) throw notFound('event');
      return eventView(tx, row);
    },
  };
}

export type EventService = ReturnType<typeof createEventService>;
