/**
 * Integration templates and their versions: platform data, written with the admin token in the
 * owner's transaction and read by every workspace (the application role may SELECT them).
 *
 * A published version is immutable: there is no update or delete, and each new version must be
 * strictly newer (semver precedence) than every version before it, so "the latest version" is
 * always the last one published and an instance's upgrade path only ever goes forward.
 * Transform steps are compiled at publish: a syntax error is a 400 with its position, and what
 * the runner executes (TypeScript already stripped) is stored beside the document.
 */
import type { ActionContext } from '../audit/context.js';
import { platformAudit } from '../audit/store.js';
import { onUniqueViolation, sqlState, UNIQUE_VIOLATION } from '../db/errors.js';
import type { PlatformTx, WithPlatform, WorkspaceTx } from '../db/tenant-tx.js';
import type { Queryable } from '../db/types.js';
import { BulkheadError, notFound } from '../errors.js';
import { idPattern, isId, newId, type Runtime } from '../ids.js';
import { decodeCursor, type Page, toPage } from '../pagination.js';
import type { TransformCompiler } from '../routing/rules.js';
import { compareSemver, isSemver } from './semver.js';
import { type TemplateDocument, type TemplateProblem, validateTemplate } from './template.js';

export interface VersionSummary {
  readonly version: string;
  readonly createdAt: string;
}

export interface IntegrationView {
  readonly id: string;
  readonly name: string;
  /** The latest version's description. */
  readonly description: string | null;
  readonly latestVersion: string;
  /** Every published version, oldest first. */
  readonly versions: VersionSummary[];
  readonly createdAt: string;
  readonly updatedAt: string;
}

export interface IntegrationVersionView {
  readonly integrationId: string;
  readonly name: string;
  readonly version: string;
  readonly document: TemplateDocument;
  readonly createdAt: string;
}

/**
 * What a workspace sees of a version: enough to render a config form and bind slots, without
 * the template's steps (the platform's logic, not the tenant's).
 */
export interface VersionManifest {
  readonly integrationId: string;
  readonly name: string;
  readonly version: string;
  readonly description: string | null;
  readonly config: NonNullable<TemplateDocument['config']>;
  readonly connections: NonNullable<TemplateDocument['connections']>;
  readonly destinations: NonNullable<TemplateDocument['destinations']>;
  readonly inboundSources: NonNullable<TemplateDocument['inboundSources']>;
  readonly triggers: TemplateDocument['triggers'];
  readonly createdAt: string;
}

interface IntegrationRow {
  id: string;
  name: string;
  description: string | null;
  created_at: Date;
  updated_at: Date;
  versions: { version: string; created_at: string }[];
}
interface VersionRow {
  integration_id: string;
  name: string;
  version: string;
  document: TemplateDocument;
  created_at: Date;
}

// Versions ride along as one JSON array per integration, so a page is one query.
const INTEGRATION_SELECT = `SELECT g.id, g.name, g.description, g.created_at, g.updated_at,
       coalesce((SELECT json_agg(json_build_object('version', v.version, 'created_at', v.created_at)) FROM integration_versions v WHERE v.integration_id = g.id), '[]') AS versions
  FROM integrations g`;

const byPrecedence = (a: { version: string }, b: { version: string }) => compareSemver(a.version, b.version);

function integrationView(r: IntegrationRow): IntegrationView {
  const versions = [...r.versions].sort(byPrecedence).map((v) => ({ version: v.version, createdAt: new Date(v.created_at).toISOString() }));
  return {
    id: r.id,
    name: r.name,
    description: r.description,
    latestVersion: versions.at(-1)?.version ?? '',
    versions,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
  };
}

const versionView = (r: VersionRow): IntegrationVersionView => ({ integrationId: r.integration_id, name: r.name, version: r.version, document: r.document, createdAt: r.created_at.toISOString() });

export function manifestOf(v: IntegrationVersionView): VersionManifest {
  const d = v.document;
  return {
    integrationId: v.integrationId,
    name: v.name,
    version: v.version,
    description: d.description ?? null,
    config: d.config ?? {},
    connections: d.connections ?? {},
    destinations: d.destinations ?? {},
    inboundSources: d.inboundSources ?? {},
    triggers: d.triggers,
    createdAt: v.createdAt,
  };
}

const templateInvalid = (problems: readonly TemplateProblem[]) =>
  new BulkheadError('template_invalid', `the template is not valid: ${problems.slice(0, 5).map((p) => `${p.path || '/'} ${p.message}`).join('; ')}${problems.length > 5 ? '; …' : ''}`, { details: { problems } });

async function readIntegration(q: Queryable, id: string): Promise<IntegrationView> {
  const row = isId('integration', id) ? (await q.query<IntegrationRow>(`${INTEGRATION_SELECT} WHERE g.id = $1`, [id])).rows[0] : undefined;
  if (!row) throw notFound('integration');
  return integrationView(row);
}

async function listIntegrations(q: Queryable, { cursor, limit }: { cursor?: string | undefined; limit: number }): Promise<Page<IntegrationView>> {
  const after = decodeCursor(cursor, new RegExp(idPattern('integration')));
  const { rows } = await q.query<IntegrationRow>(`${INTEGRATION_SELECT} WHERE ($1::text IS NULL OR g.id > $1) ORDER BY g.id LIMIT $2`, [after ?? null, limit + 1]);
  return toPage(rows, limit, (r) => r.id, integrationView);
}

/** One published version (any caller: the owner, or a workspace transaction). */
export async function readVersion(q: Queryable, integrationId: string, version: string): Promise<IntegrationVersionView> {
  const row = isId('integration', integrationId)
    ? (
        await q.query<VersionRow>(
          'SELECT v.integration_id, g.name, v.version, v.document, v.created_at FROM integration_versions v JOIN integrations g ON g.id = v.integration_id WHERE v.integration_id = $1 AND v.version = $2',
          [integrationId, version],
        )
      ).rows[0]
    : undefined;
  if (!row) throw notFound('integration version');
  return versionView(row);
}

export function createIntegrationService(deps: { withPlatform: WithPlatform; runtime: Runtime; compile: TransformCompiler }) {
  const { withPlatform, runtime } = deps;

  function validate(document: unknown): TemplateDocument {
    const result = validateTemplate(document);
    if (!result.ok) throw templateInvalid(result.problems);
    return result.template;
  }

  /** Step name → the JavaScript to run. Done before any transaction: parsing never holds a connection. */
  async function compileSteps(template: TemplateDocument): Promise<Record<string, string>> {
    const compiled: Record<string, string> = {};
    for (const step of template.steps) {
      if (step.type !== 'transform') continue;
      const result = await deps.compile(step.code, step.language);
      if (!result.ok) {
        const { message, line, column } = result.error;
        throw new BulkheadError('transform_syntax_error', `step "${step.name}": ${message} (line ${String(line)}, column ${String(column)})`, { details: { step: step.name, line, column } });
      }
      compiled[step.name] = result.code;
    }
    return compiled;
  }

  async function insertVersion(tx: PlatformTx, integrationId: string, template: TemplateDocument, compiled: Record<string, string>, now: Date): Promise<void> {
    await tx
      .query('INSERT INTO integration_versions (integration_id, version, document, compiled, created_at) VALUES ($1, $2, $3::jsonb, $4::jsonb, $5)', [
        integrationId,
        template.version,
        JSON.stringify(template),
        JSON.stringify(compiled),
        now,
      ])
      .catch((error: unknown) => {
        if (sqlState(error) === UNIQUE_VIOLATION) throw new BulkheadError('version_exists', `version ${template.version} is already published`);
        throw error;
      });
  }

  return {
    /** Creates an integration with its first version. */
    async create(ctx: ActionContext, document: unknown): Promise<IntegrationView> {
      const template = validate(document);
      const compiled = await compileSteps(template);
      return withPlatform(async (tx) => {
        const id = newId('integration', runtime);
        const now = runtime.now();
        await tx
          .query('INSERT INTO integrations (id, name, description, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)', [id, template.name, template.description ?? null, now])
          .catch(onUniqueViolation('name_taken', `an integration named "${template.name}" already exists`));
        await insertVersion(tx, id, template, compiled, now);
        await platformAudit.append(tx, runtime, { ...ctx, action: 'integration.create', target: { type: 'integration', id }, outcome: 'success', details: { name: template.name, version: template.version } });
        return readIntegration(tx, id);
      });
    },

    /** Publishes a new, strictly newer version. Published versions never change. */
    async publishVersion(ctx: ActionContext, integrationId: string, document: unknown): Promise<IntegrationVersionView> {
      const template = validate(document);
      const compiled = await compileSteps(template);
      return withPlatform(async (tx) => {
        // The row lock serialises publishes of one integration, so "newer than every version" holds.
        const row = isId('integration', integrationId)
          ? (await tx.query<{ name: string }>('SELECT name FROM integrations WHERE id = $1 FOR UPDATE', [integrationId])).rows[0]
          : undefined;
        if (!row) throw notFound('integration');
        if (template.name !== row.name) throw templateInvalid([{ path: '/name', message: `must be "${row.name}", the name of this integration` }]);
        if (!isSemver(template.version)) throw templateInvalid([{ path: '/version', message: 'is not a semantic version' }]);
        const { rows } = await tx.query<{ version: string }>('SELECT version FROM integration_versions WHERE integration_id = $1', [integrationId]);
        const same = rows.find((r) => compareSemver(r.version, template.version) === 0);
        if (same) throw new BulkheadError('version_exists', `version ${template.version} is already published${same.version === template.version ? '' : ` (as ${same.version})`}; published versions are immutable`, { details: { version: same.version } });
        const latest = rows.map((r) => r.version).sort(compareSemver).at(-1);
        if (latest !== undefined && compareSemver(template.version, latest) < 0) {
          throw new BulkheadError('version_not_newer', `version ${template.version} is lower than the latest published version ${latest}`, { details: { latestVersion: latest } });
        }
        const now = runtime.now();
        await insertVersion(tx, integrationId, template, compiled, now);
        await tx.query('UPDATE integrations SET description = $2, updated_at = $3 WHERE id = $1', [integrationId, template.description ?? null, now]);
        await platformAudit.append(tx, runtime, { ...ctx, action: 'integration.publish', target: { type: 'integration', id: integrationId }, outcome: 'success', details: { name: row.name, version: template.version, previousVersion: latest ?? null } });
        return readVersion(tx, integrationId, template.version);
      });
    },

    list: (page: { cursor?: string | undefined; limit: number }) => withPlatform((tx) => listIntegrations(tx, page)),
    get: (id: string) => withPlatform((tx) => readIntegration(tx, id)),
    getVersion: (id: string, version: string) => withPlatform((tx) => readVersion(tx, id, version)),

    /** The published templates as a workspace sees them, read in its own transaction. */
    catalog: {
      list: (tx: WorkspaceTx, page: { cursor?: string | undefined; limit: number }) => listIntegrations(tx, page),
      get: (tx: WorkspaceTx, id: string) => readIntegration(tx, id),
      version: async (tx: WorkspaceTx, id: string, version: string) => manifestOf(await readVersion(tx, id, version)),
    },
  };
}

export type IntegrationService = ReturnType<typeof createIntegrationService>;
