/**
 * Instances: a published template version deployed into one workspace, with that workspace's
 * config values and its own connections, destinations and inbound sources bound to the
 * template's slots. Every function runs inside the caller's workspace transaction.
 *
 *  - Secret config values are sealed together as one JSON object (table instances, row = id,
 *    column secret_config); only their names are stored in the clear, and no view returns them.
 *  - A binding must name a resource of this workspace (RLS makes another workspace's id look
 *    missing, which is exactly how it is reported). Connection slots may stay unbound: the
 *    instance then reads `needs_attention`. Destination and inbound slots must be bound.
 *  - Routing is denormalised onto the row at every write (event patterns, inbound triggers) and
 *    cron triggers become instance_schedules rows while the instance is enabled, so ingest and
 *    the scheduler never read a template.
 *  - An upgrade carries the config with migrateConfig and reports every field it cannot carry;
 *    nothing is written unless everything carries.
 */
import type { ActionContext } from '../audit/context.js';
import { workspaceAudit } from '../audit/store.js';
import { onUniqueViolation } from '../db/errors.js';
import { advisoryLockKey } from '../db/locks.js';
import type { WorkspaceTx } from '../db/tenant-tx.js';
import { BulkheadError, notFound } from '../errors.js';
import { idPattern, isId, newId, type Runtime } from '../ids.js';
import { decodeCursor, type Page, toPage } from '../pagination.js';
import type { Vault } from '../vault/vault.js';
import { type Attention, attentionOf, type Bindings, loadBindingStatus } from './attention.js';
import { type ConfigFields, type ConfigProblem, migrateConfig, pointer, validateConfig } from './config-values.js';
import { DEFAULT_TIMEZONE, nextFireAfter } from './cron.js';
import { compareSemver } from './semver.js';
import type { ConnectionSlot, TemplateDocument } from './template.js';

export const DEFAULT_INSTANCES_PER_WORKSPACE = 100;

export type InstanceState = 'active' | 'disabled' | 'needs_attention';

export interface InstanceView {
  readonly id: string;
  readonly name: string;
  readonly integrationId: string;
  readonly integrationName: string;
  readonly version: string;
  readonly enabled: boolean;
  readonly state: InstanceState;
  readonly attention: Attention[];
  /** Non-secret values only. */
  readonly config: Record<string, unknown>;
  /** The version's secret fields and whether each holds a value; never the value. */
  readonly secrets: { name: string; set: boolean }[];
  readonly connections: Record<string, string>;
  readonly destinations: Record<string, string>;
  readonly inboundSources: Record<string, string>;
  readonly logPayloads: boolean;
  readonly createdAt: string;
  readonly updatedAt: string;
}

/** What the execution runner needs to run an instance (secrets opened: keep them out of the sandbox and the logs). */
export interface InstanceRuntime {
  readonly id: string;
  readonly enabled: boolean;
  readonly integrationId: string;
  readonly version: string;
  readonly document: TemplateDocument;
  /** Transform step name → the JavaScript to run. */
  readonly compiled: Record<string, string>;
  readonly config: Record<string, unknown>;
  readonly secrets: Record<string, string>;
  readonly connections: Record<string, string>;
  readonly destinations: Record<string, string>;
  readonly inboundSources: Record<string, string>;
  readonly logPayloads: boolean;
}

/** A slot binding in a patch: an id binds, null unbinds. */
type BindingPatch = Readonly<Record<string, string | null>>;

export interface CreateInstanceInput {
  readonly name: string;
  readonly integrationId: string;
  readonly version: string;
  readonly config?: Readonly<Record<string, unknown>> | undefined;
  readonly connections?: Readonly<Record<string, string>> | undefined;
  readonly destinations?: Readonly<Record<string, string>> | undefined;
  readonly inboundSources?: Readonly<Record<string, string>> | undefined;
  readonly enabled?: boolean | undefined;
  readonly logPayloads?: boolean | undefined;
}

export interface UpdateInstanceInput {
  readonly name?: string | undefined;
  /** The full set of non-secret values; secrets not sent keep their stored value, null clears one. */
  readonly config?: Readonly<Record<string, unknown>> | undefined;
  readonly connections?: BindingPatch | undefined;
  readonly destinations?: BindingPatch | undefined;
  readonly inboundSources?: BindingPatch | undefined;
  readonly enabled?: boolean | undefined;
  readonly logPayloads?: boolean | undefined;
}

export interface UpgradeInstanceInput {
  readonly version: string;
  /** Values for fields that cannot be carried (or to change on the way); same rules as update. */
  readonly config?: Readonly<Record<string, unknown>> | undefined;
  /** Bindings for slots the new version adds (or to change on the way); null unbinds. */
  readonly connections?: BindingPatch | undefined;
  readonly destinations?: BindingPatch | undefined;
  readonly inboundSources?: BindingPatch | undefined;
}

interface InstanceRow {
  id: string;
  name: string;
  integration_id: string;
  version: string;
  enabled: boolean;
  config: Record<string, unknown>;
  secret_config: Uint8Array | null;
  secret_names: string[];
  connections: Record<string, string>;
  destinations: Record<string, string>;
  inbound_sources: Record<string, string>;
  log_payloads: boolean;
  created_at: Date;
  updated_at: Date;
}
/** A row with what its view needs of the version (not the whole document: steps can be large). */
interface ViewRow extends InstanceRow {
  integration_name: string;
  config_fields: ConfigFields | null;
  connection_slots: Record<string, unknown> | null;
  destination_slots: Record<string, unknown> | null;
  inbound_slots: Record<string, unknown> | null;
}

const COLUMNS = 'id, name, integration_id, version, enabled, config, secret_config, secret_names, connections, destinations, inbound_sources, log_payloads, created_at, updated_at';
const VIEW_SELECT = `SELECT i.id, i.name, i.integration_id, i.version, i.enabled, i.config, i.secret_config, i.secret_names, i.connections, i.destinations, i.inbound_sources,
       i.log_payloads, i.created_at, i.updated_at, g.name AS integration_name, v.document->'config' AS config_fields, v.document->'connections' AS connection_slots,
       v.document->'destinations' AS destination_slots, v.document->'inboundSources' AS inbound_slots
  FROM instances i
  JOIN integrations g ON g.id = i.integration_id
  JOIN integration_versions v ON v.integration_id = i.integration_id AND v.version = i.version`;

const secretPlace = (id: string) => ({ table: 'instances', rowId: id, column: 'secret_config' });
async function openSecrets(tx: WorkspaceTx, vault: Vault, row: Pick<InstanceRow, 'id' | 'secret_config'>): Promise<Record<string, string>> {
  if (row.secret_config === null) return {};
  return JSON.parse(await vault.workspace(tx).openText(secretPlace(row.id), row.secret_config)) as Record<string, string>;
}
const bindingsOf = (r: InstanceRow): Bindings => ({ connections: r.connections, destinations: r.destinations, inboundSources: r.inbound_sources });
const keys = (o: Readonly<Record<string, unknown>> | null | undefined): string[] => Object.keys(o ?? {});

function toView(r: ViewRow, attention: Attention[]): InstanceView {
  const stored = new Set(r.secret_names);
  const declared = Object.entries(r.config_fields ?? {}).filter(([, f]) => f.type === 'secret').map(([name]) => name);
  return {
    id: r.id,
    name: r.name,
    integrationId: r.integration_id,
    integrationName: r.integration_name,
    version: r.version,
    enabled: r.enabled,
    state: !r.enabled ? 'disabled' : attention.length > 0 ? 'needs_attention' : 'active',
    attention,
    config: r.config,
    secrets: [...new Set([...declared, ...r.secret_names])].map((name) => ({ name, set: stored.has(name) })),
    connections: r.connections,
    destinations: r.destinations,
    inboundSources: r.inbound_sources,
    logPayloads: r.log_payloads,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
  };
}

async function views(tx: WorkspaceTx, rows: readonly ViewRow[]): Promise<InstanceView[]> {
  const status = await loadBindingStatus(tx, rows.map(bindingsOf));
  return rows.map((r) =>
    toView(r, attentionOf({ connections: keys(r.connection_slots), destinations: keys(r.destination_slots), inboundSources: keys(r.inbound_slots) }, bindingsOf(r), status)),
  );
}

/** Paths in problems point into the request body (`/config/channel`, `/destinations/alerts`). */
const underConfig = (problems: readonly ConfigProblem[]): ConfigProblem[] => problems.map((p) => ({ path: `/config${p.path}`, message: p.message }));
const summary = (problems: readonly ConfigProblem[]) => `${problems.slice(0, 5).map((p) => `${p.path} ${p.message}`).join('; ')}${problems.length > 5 ? '; …' : ''}`;

async function loadVersion(tx: WorkspaceTx, integrationId: string, version: string): Promise<{ document: TemplateDocument; compiled: Record<string, string> }> {
  const row = isId('integration', integrationId)
    ? (await tx.query<{ document: TemplateDocument; compiled: Record<string, string> }>('SELECT document, compiled FROM integration_versions WHERE integration_id = $1 AND version = $2', [integrationId, version])).rows[0]
    : undefined;
  if (!row) throw notFound('integration version');
  return row;
}

type KindKey = keyof Bindings;
const KINDS: readonly { key: KindKey; noun: string; required: boolean }[] = [
  { key: 'connections', noun: 'connection', required: false },
  { key: 'destinations', noun: 'destination', required: true },
  { key: 'inboundSources', noun: 'inbound source', required: true },
];

function applyPatch(current: Readonly<Record<string, string>>, patch: BindingPatch | undefined): Record<string, string> {
  const out: Record<string, string> = { ...current };
  for (const [slot, id] of Object.entries(patch ?? {})) {
    if (id === null) Reflect.deleteProperty(out, slot);
    else out[slot] = id;
  }
  return out;
}

/** The slots a patch binds (not those it unbinds). */
const boundBy = (patch: BindingPatch | undefined): Record<string, string> => Object.fromEntries(Object.entries(patch ?? {}).filter((e): e is [string, string] => e[1] !== null));

/**
 * Problems with the final bindings against a version: slots it does not declare, destination and
 * inbound slots left unbound, ids in `fresh` (bound by this request) that are not this
 * workspace's, and connections (fresh or carried) of another provider than their slot's.
 */
async function bindingProblems(tx: WorkspaceTx, doc: TemplateDocument, final: Bindings, fresh: Bindings): Promise<ConfigProblem[]> {
  const problems: ConfigProblem[] = [];
  const declared: Record<KindKey, Readonly<Record<string, unknown>>> = { connections: doc.connections ?? {}, destinations: doc.destinations ?? {}, inboundSources: doc.inboundSources ?? {} };
  for (const { key, noun, required } of KINDS) {
    for (const slot of Object.keys(final[key])) {
      if (!Object.hasOwn(declared[key], slot)) problems.push({ path: `/${key}${pointer(slot)}`, message: `is not a ${noun} slot of ${doc.name} ${doc.version}` });
    }
    if (required) {
      for (const slot of Object.keys(declared[key])) {
        if (!Object.hasOwn(final[key], slot)) problems.push({ path: `/${key}${pointer(slot)}`, message: `must be bound to a ${noun} of this workspace` });
      }
    }
  }

  const ids = (kind: 'connection' | 'destination' | 'inboundSource', record: Readonly<Record<string, string>>) => Object.values(record).filter((id) => isId(kind, id));
  const connectionIds = ids('connection', final.connections);
  const connections = new Map(
    connectionIds.length === 0 ? [] : (await tx.query<{ id: string; provider_key: string }>('SELECT id, provider_key FROM connections WHERE id = ANY ($1::text[])', [connectionIds])).rows.map((r) => [r.id, r.provider_key]),
  );
  const exists = async (table: 'destinations' | 'inbound_sources', list: string[]) =>
    new Set(list.length === 0 ? [] : (await tx.query<{ id: string }>(`SELECT id FROM ${table} WHERE id = ANY ($1::text[])`, [list])).rows.map((r) => r.id));
  const destinations = await exists('destinations', ids('destination', fresh.destinations));
  const sources = await exists('inbound_sources', ids('inboundSource', fresh.inboundSources));

  for (const [slot, id] of Object.entries(final.connections)) {
    const slotDef = Object.hasOwn(declared.connections, slot) ? (declared.connections[slot] as ConnectionSlot) : undefined;
    // An undeclared slot is already reported.
    if (!slotDef) continue;
    const provider = connections.get(id);
    // A carried binding whose connection has since been deleted is left for `attention` to report.
    if (provider === undefined) {
      if (Object.hasOwn(fresh.connections, slot)) problems.push({ path: `/connections${pointer(slot)}`, message: 'no such connection in this workspace' });
    } else if (provider !== slotDef.provider) {
      problems.push({ path: `/connections${pointer(slot)}`, message: `needs a ${slotDef.provider} connection; this one is ${provider}` });
    }
  }
  const missing = (key: 'destinations' | 'inboundSources', found: ReadonlySet<string>, noun: string) => {
    for (const [slot, id] of Object.entries(fresh[key])) {
      if (Object.hasOwn(declared[key], slot) && !found.has(id)) problems.push({ path: `/${key}${pointer(slot)}`, message: `no such ${noun} in this workspace` });
    }
  };
  missing('destinations', destinations, 'destination');
  missing('inboundSources', sources, 'inbound source');
  return problems;
}

/** What ingest and the scheduler read, derived from the version's triggers and the bindings. */
function routingOf(doc: TemplateDocument, bindings: Bindings) {
  const eventPatterns = [...new Set(doc.triggers.flatMap((t) => (t.type === 'event' ? t.eventTypes : [])))];
  const inboundTriggers = doc.triggers.flatMap((t, index) => {
    const sourceId = t.type === 'inbound' && Object.hasOwn(bindings.inboundSources, t.source) ? bindings.inboundSources[t.source] : undefined;
    return t.type === 'inbound' && sourceId !== undefined ? [{ sourceId, eventTypes: t.eventTypes ? [...t.eventTypes] : null, index }] : [];
  });
  return { eventPatterns, inboundTriggers };
}

export function createInstanceService(deps: { vault: Vault; runtime: Runtime }) {
  const { vault, runtime } = deps;

  async function find(tx: WorkspaceTx, id: string, lock = false): Promise<InstanceRow> {
    const row = isId('instance', id) ? (await tx.query<InstanceRow>(`SELECT ${COLUMNS} FROM instances WHERE id = $1${lock ? ' FOR UPDATE' : ''}`, [id])).rows[0] : undefined;
    if (!row) throw notFound('instance');
    return row;
  }

  async function load(tx: WorkspaceTx, id: string): Promise<InstanceView> {
    const row = isId('instance', id) ? (await tx.query<ViewRow>(`${VIEW_SELECT} WHERE i.id = $1`, [id])).rows[0] : undefined;
    if (!row) throw notFound('instance');
    const [view] = await views(tx, [row]);
    if (!view) throw notFound('instance');
    return view;
  }

  async function sealSecrets(tx: WorkspaceTx, id: string, secrets: Record<string, string>): Promise<{ sealed: Buffer | null; names: string[] }> {
    const names = Object.keys(secrets).sort();
    if (names.length === 0) return { sealed: null, names };
    return { sealed: await vault.workspace(tx).seal(secretPlace(id), JSON.stringify(secrets)), names };
  }

  /** Replaces the instance's cron rows: one per cron trigger while enabled, none otherwise. */
  async function setSchedules(tx: WorkspaceTx, id: string, doc: TemplateDocument, enabled: boolean): Promise<void> {
    await tx.query('DELETE FROM instance_schedules WHERE instance_id = $1', [id]);
    if (!enabled) return;
    const now = runtime.now();
    const rows = doc.triggers.flatMap((t, index) => {
      if (t.type !== 'cron') return [];
      const timezone = t.timezone ?? DEFAULT_TIMEZONE;
      const next = nextFireAfter(t.schedule, timezone, now);
      return next === null ? [] : [{ index, schedule: t.schedule, timezone, next }];
    });
    if (rows.length === 0) return;
    await tx.query(
      `INSERT INTO instance_schedules (workspace_id, instance_id, trigger_index, schedule, timezone, next_fire_at)
       SELECT $1, $2, x.trigger_index, x.schedule, x.timezone, x.next_fire_at FROM unnest($3::int[], $4::text[], $5::text[], $6::timestamptz[]) AS x(trigger_index, schedule, timezone, next_fire_at)`,
      [tx.workspaceId, id, rows.map((r) => r.index), rows.map((r) => r.schedule), rows.map((r) => r.timezone), rows.map((r) => r.next)],
    );
  }

  async function enforceLimit(tx: WorkspaceTx, max: number): Promise<void> {
    // Creations in one workspace are serialised, so two concurrent ones cannot both pass the count.
    await tx.query('SELECT pg_advisory_xact_lock($1)', [advisoryLockKey('instances', tx.workspaceId)]);
    const { rows } = await tx.query<{ n: number }>('SELECT count(*)::int AS n FROM instances');
    if ((rows[0]?.n ?? 0) >= max) throw new BulkheadError('limit_exceeded', `this workspace may have at most ${String(max)} instances`, { details: { limit: max } });
  }

  const nameTaken = (name: string) => onUniqueViolation('name_taken', `an instance named "${name}" already exists`);
  const bindingInvalid = (problems: ConfigProblem[]) => new BulkheadError('binding_invalid', `the bindings are not valid: ${summary(problems)}`, { details: { problems } });
  const configInvalid = (problems: ConfigProblem[]) => new BulkheadError('config_invalid', `the config is not valid: ${summary(problems)}`, { details: { problems } });

  return {
    async create(tx: WorkspaceTx, ctx: ActionContext, input: CreateInstanceInput, limits: { max: number }): Promise<InstanceView> {
      const { document: doc } = await loadVersion(tx, input.integrationId, input.version);
      const config = validateConfig(doc.config ?? {}, input.config ?? {});
      if (!config.ok) throw configInvalid(underConfig(config.problems));
      const bindings: Bindings = { connections: { ...input.connections }, destinations: { ...input.destinations }, inboundSources: { ...input.inboundSources } };
      const problems = await bindingProblems(tx, doc, bindings, bindings);
      if (problems.length > 0) throw bindingInvalid(problems);
      await enforceLimit(tx, limits.max);

      const id = newId('instance', runtime);
      const enabled = input.enabled ?? true;
      const secrets = await sealSecrets(tx, id, config.secrets);
      const routing = routingOf(doc, bindings);
      await tx
        .query(
          `INSERT INTO instances (workspace_id, id, name, integration_id, version, enabled, config, secret_config, secret_names, connections, destinations, inbound_sources,
                                  event_patterns, inbound_triggers, log_payloads, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10::jsonb, $11::jsonb, $12::jsonb, $13, $14::jsonb, $15, $16, $16)`,
          [
            tx.workspaceId, id, input.name, input.integrationId, input.version, enabled, JSON.stringify(config.plain), secrets.sealed, secrets.names,
            JSON.stringify(bindings.connections), JSON.stringify(bindings.destinations), JSON.stringify(bindings.inboundSources),
            routing.eventPatterns, JSON.stringify(routing.inboundTriggers), input.logPayloads ?? false, runtime.now(),
          ],
        )
        .catch(nameTaken(input.name));
      await setSchedules(tx, id, doc, enabled);
      await workspaceAudit.append(tx, runtime, {
        ...ctx,
        action: 'instance.create',
        target: { type: 'instance', id },
        outcome: 'success',
        details: { integrationId: input.integrationId, version: input.version, enabled, secrets: secrets.names },
      });
      return load(tx, id);
    },

    get: (tx: WorkspaceTx, id: string) => load(tx, id),

    async list(tx: WorkspaceTx, { cursor, limit, integrationId }: { cursor?: string | undefined; limit: number; integrationId?: string | undefined }): Promise<Page<InstanceView>> {
      const after = decodeCursor(cursor, new RegExp(idPattern('instance')));
      const { rows } = await tx.query<ViewRow>(`${VIEW_SELECT} WHERE ($1::text IS NULL OR i.id > $1) AND ($2::text IS NULL OR i.integration_id = $2) ORDER BY i.id LIMIT $3`, [
        after ?? null,
        integrationId ?? null,
        limit + 1,
      ]);
      const page = toPage(rows, limit, (r) => r.id, (r) => r);
      return { data: await views(tx, page.data), nextCursor: page.nextCursor };
    },

    async update(tx: WorkspaceTx, ctx: ActionContext, id: string, patch: UpdateInstanceInput): Promise<InstanceView> {
      const row = await find(tx, id, true);
      const { document: doc } = await loadVersion(tx, row.integration_id, row.version);

      let plain = row.config;
      let secrets: { sealed: Uint8Array | null; names: string[] } = { sealed: row.secret_config, names: row.secret_names };
      if (patch.config !== undefined) {
        const config = validateConfig(doc.config ?? {}, patch.config, new Set(row.secret_names));
        if (!config.ok) throw configInvalid(underConfig(config.problems));
        plain = config.plain;
        if (Object.keys(config.secrets).length > 0 || config.clearedSecrets.length > 0) {
          const merged = await openSecrets(tx, vault, row);
          for (const name of config.clearedSecrets) Reflect.deleteProperty(merged, name);
          secrets = await sealSecrets(tx, id, { ...merged, ...config.secrets });
        }
      }

      const current = bindingsOf(row);
      const fresh: Bindings = { connections: boundBy(patch.connections), destinations: boundBy(patch.destinations), inboundSources: boundBy(patch.inboundSources) };
      const bindings: Bindings = {
        connections: applyPatch(current.connections, patch.connections),
        destinations: applyPatch(current.destinations, patch.destinations),
        inboundSources: applyPatch(current.inboundSources, patch.inboundSources),
      };
      const problems = await bindingProblems(tx, doc, bindings, fresh);
      if (problems.length > 0) throw bindingInvalid(problems);

      const enabled = patch.enabled ?? row.enabled;
      const routing = routingOf(doc, bindings);
      await tx
        .query(
          `UPDATE instances SET name = $2, enabled = $3, config = $4::jsonb, secret_config = $5, secret_names = $6, connections = $7::jsonb, destinations = $8::jsonb,
                  inbound_sources = $9::jsonb, event_patterns = $10, inbound_triggers = $11::jsonb, log_payloads = $12, updated_at = $13
            WHERE id = $1`,
          [
            id, patch.name ?? row.name, enabled, JSON.stringify(plain), secrets.sealed, secrets.names, JSON.stringify(bindings.connections),
            JSON.stringify(bindings.destinations), JSON.stringify(bindings.inboundSources), routing.eventPatterns, JSON.stringify(routing.inboundTriggers),
            patch.logPayloads ?? row.log_payloads, runtime.now(),
          ],
        )
        .catch(nameTaken(patch.name ?? row.name));
      // Schedules follow the enabled flag; re-enabling starts from now rather than firing missed slots.
      if (enabled !== row.enabled) await setSchedules(tx, id, doc, enabled);
      await workspaceAudit.append(tx, runtime, {
        ...ctx,
        action: 'instance.update',
        target: { type: 'instance', id },
        outcome: 'success',
        details: { fields: Object.keys(patch).filter((k) => patch[k as keyof UpdateInstanceInput] !== undefined).sort(), ...(enabled !== row.enabled ? { enabled } : {}) },
      });
      return load(tx, id);
    },

    async upgrade(tx: WorkspaceTx, ctx: ActionContext, id: string, input: UpgradeInstanceInput): Promise<InstanceView> {
      const row = await find(tx, id, true);
      const { document: target } = await loadVersion(tx, row.integration_id, input.version);
      if (compareSemver(input.version, row.version) <= 0) {
        throw new BulkheadError('version_not_newer', `version ${input.version} is not newer than the instance's version ${row.version}`, { details: { currentVersion: row.version } });
      }
      const { document: from } = await loadVersion(tx, row.integration_id, row.version);

      const problems: ConfigProblem[] = [];
      const config = migrateConfig(from.config ?? {}, target.config ?? {}, row.config, new Set(row.secret_names), input.config ?? {});
      if (!config.ok) problems.push(...underConfig(config.problems));

      // Bindings of slots the new version still declares carry over; the others are dropped.
      const current = bindingsOf(row);
      const declared: Record<KindKey, Readonly<Record<string, unknown>>> = { connections: target.connections ?? {}, destinations: target.destinations ?? {}, inboundSources: target.inboundSources ?? {} };
      const carried = (key: KindKey) => Object.fromEntries(Object.entries(current[key]).filter(([slot]) => Object.hasOwn(declared[key], slot)));
      const droppedBindings = KINDS.flatMap(({ key }) => Object.keys(current[key]).filter((slot) => !Object.hasOwn(declared[key], slot)).map((slot) => `${key}/${slot}`));
      const fresh: Bindings = { connections: boundBy(input.connections), destinations: boundBy(input.destinations), inboundSources: boundBy(input.inboundSources) };
      const bindings: Bindings = {
        connections: applyPatch(carried('connections'), input.connections),
        destinations: applyPatch(carried('destinations'), input.destinations),
        inboundSources: applyPatch(carried('inboundSources'), input.inboundSources),
      };
      // A binding this request names (bound or unbound) is the caller's input, refused as create and
      // patch refuse it; only what the instance carries, or lacks, is a migration problem.
      const named = new Set(KINDS.flatMap(({ key }) => Object.keys(input[key] ?? {}).map((slot) => `/${key}${pointer(slot)}`)));
      const bindingIssues = await bindingProblems(tx, target, bindings, fresh);
      const supplied = bindingIssues.filter((p) => named.has(p.path));
      if (supplied.length > 0) throw bindingInvalid(supplied);
      problems.push(...bindingIssues);
      if (problems.length > 0 || !config.ok) {
        throw new BulkheadError('config_migration_failed', `the instance cannot be upgraded to ${input.version} as it is: ${summary(problems)}`, { details: { from: row.version, to: input.version, problems } });
      }

      const kept = new Set(config.keepSecrets);
      const unchangedSecrets = Object.keys(config.secrets).length === 0 && row.secret_names.every((n) => kept.has(n));
      let secrets: { sealed: Uint8Array | null; names: string[] } = { sealed: row.secret_config, names: row.secret_names };
      if (!unchangedSecrets) {
        const stored = await openSecrets(tx, vault, row);
        const next: Record<string, string> = {};
        for (const name of config.keepSecrets) if (Object.hasOwn(stored, name) && stored[name] !== undefined) next[name] = stored[name];
        secrets = await sealSecrets(tx, id, { ...next, ...config.secrets });
      }

      const routing = routingOf(target, bindings);
      await tx.query(
        `UPDATE instances SET version = $2, config = $3::jsonb, secret_config = $4, secret_names = $5, connections = $6::jsonb, destinations = $7::jsonb, inbound_sources = $8::jsonb,
                event_patterns = $9, inbound_triggers = $10::jsonb, updated_at = $11
          WHERE id = $1`,
        [
          id, input.version, JSON.stringify(config.plain), secrets.sealed, secrets.names, JSON.stringify(bindings.connections), JSON.stringify(bindings.destinations),
          JSON.stringify(bindings.inboundSources), routing.eventPatterns, JSON.stringify(routing.inboundTriggers), runtime.now(),
        ],
      );
      await setSchedules(tx, id, target, row.enabled);
      await workspaceAudit.append(tx, runtime, {
        ...ctx,
        action: 'instance.upgrade',
        target: { type: 'instance', id },
        outcome: 'success',
        details: { from: row.version, to: input.version, droppedFields: config.droppedFields, droppedBindings },
      });
      return load(tx, id);
    },

    async remove(tx: WorkspaceTx, ctx: ActionContext, id: string): Promise<void> {
      const row = await find(tx, id, true);
      // Its schedules go with it (foreign key, on delete cascade).
      await tx.query('DELETE FROM instances WHERE id = $1', [id]);
      await workspaceAudit.append(tx, runtime, { ...ctx, action: 'instance.delete', target: { type: 'instance', id }, outcome: 'success', details: { integrationId: row.integration_id, version: row.version } });
    },
  };
}

export type InstanceService = ReturnType<typeof createInstanceService>;

/** Everything the execution runner needs for one instance, secrets opened, in the caller's transaction. */
export async function loadInstanceRuntime(tx: WorkspaceTx, vault: Vault, instanceId: string): Promise<InstanceRuntime> {
  const row = isId('instance', instanceId)
    ? (
        await tx.query<InstanceRow & { document: TemplateDocument; compiled: Record<string, string> }>(
          `SELECT ${COLUMNS.split(', ').map((c) => `i.${c}`).join(', ')}, v.document, v.compiled
             FROM instances i JOIN integration_versions v ON v.integration_id = i.integration_id AND v.version = i.version
            WHERE i.id = $1`,
          [instanceId],
        )
      ).rows[0]
    : undefined;
  if (!row) throw notFound('instance');
  const secrets = await openSecrets(tx, vault, row);
  return {
    id: row.id,
    enabled: row.enabled,
    integrationId: row.integration_id,
    version: row.version,
    document: row.document,
    compiled: row.compiled,
    config: row.config,
    secrets,
    connections: row.connections,
    destinations: row.destinations,
    inboundSources: row.inbound_sources,
    logPayloads: row.log_payloads,
  };
}
