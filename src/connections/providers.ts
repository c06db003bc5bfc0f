/**
 * Providers: the shipped catalog plus the platform's own (custom providers, and OAuth app
 * settings for any OAuth provider). Platform-level data, so it lives in owner-only tables and the
 * OAuth client secret is sealed with the platform key. Definitions (never secrets) are cached
 * briefly because the relay resolves the provider on every call.
 */
import { platformAudit } from '../audit/store.js';
import type { ActionContext } from '../audit/context.js';
import type { PlatformTx, WithPlatform } from '../db/tenant-tx.js';
import { BulkheadError, notFound } from '../errors.js';
import type { Runtime } from '../ids.js';
import type { Vault } from '../vault/vault.js';
import { definitionProblems, type ProviderDefinition } from './provider-schema.js';

export interface OAuthApp {
  readonly clientId: string;
  readonly scopes: string[];
}

export interface Provider extends ProviderDefinition {
  readonly source: 'catalog' | 'custom';
  /** The platform's OAuth client for this provider, when configured (the secret is not here). */
  readonly oauthApp: OAuthApp | undefined;
}

export interface ProviderView extends ProviderDefinition {
  readonly source: 'catalog' | 'custom';
  readonly oauthApp: (OAuthApp & { readonly clientSecretSet: boolean }) | null;
}

export interface CreateProviderInput extends Omit<ProviderDefinition, 'oauth2'> {
  readonly oauth2?: (NonNullable<ProviderDefinition['oauth2']> & { clientId?: string | undefined; clientSecret?: string | undefined }) | undefined;
}

export interface ProviderService {
  list(): Promise<ProviderView[]>;
  view(key: string): Promise<ProviderView>;
  /** The provider by key, or `not_found`. */
  get(key: string): Promise<Provider>;
  create(ctx: ActionContext, input: CreateProviderInput): Promise<ProviderView>;
  configureOAuthApp(ctx: ActionContext, key: string, app: { clientId: string; clientSecret: string; scopes?: readonly string[] | undefined }): Promise<ProviderView>;
  /** The OAuth client secret, opened for a token request. Never leaves the process except to the token endpoint. */
  clientSecret(key: string): Promise<string>;
}

interface Row {
  key: string;
  source: 'catalog' | 'custom';
  definition: ProviderDefinition & { oauthApp?: OAuthApp };
  client_secret: Uint8Array | null;
}

const secretPlace = (key: string) => ({ table: 'providers', rowId: key, column: 'client_secret' });

export function createProviderService(deps: {
  catalog: ReadonlyMap<string, ProviderDefinition>;
  withPlatform: WithPlatform;
  vault: Vault;
  runtime: Runtime;
  allowHttp: boolean;
  cacheTtlMs?: number;
}): ProviderService {
  const { catalog, withPlatform, vault, runtime } = deps;
  const cacheTtlMs = deps.cacheTtlMs ?? 5_000;
  let cache: { at: number; rows: Map<string, Row> } | undefined;

  async function rows(tx?: PlatformTx): Promise<Map<string, Row>> {
    if (!tx && cache && runtime.now().getTime() - cache.at < cacheTtlMs) return cache.rows;
    const read = async (t: PlatformTx) => (await t.query<Row>('SELECT key, source, definition, client_secret FROM providers')).rows;
    const list = tx ? await read(tx) : await withPlatform(read);
    const map = new Map(list.map((r) => [r.key, r]));
    if (!tx) cache = { at: runtime.now().getTime(), rows: map };
    return map;
  }

  function resolve(key: string, stored: Map<string, Row>): Provider | undefined {
    const row = stored.get(key);
    const base = row?.source === 'custom' ? row.definition : catalog.get(key);
    if (!base) return undefined;
    const { oauthApp: _ignored, ...definition } = base as ProviderDefinition & { oauthApp?: OAuthApp };
    return { ...definition, source: row?.source === 'custom' ? 'custom' : 'catalog', oauthApp: row?.definition.oauthApp };
  }

  function toView(provider: Provider, stored: Map<string, Row>): ProviderView {
    const { oauthApp, ...rest } = provider;
    return { ...rest, oauthApp: oauthApp ? { ...oauthApp, clientSecretSet: stored.get(provider.key)?.client_secret != null } : null };
  }

  const invalidate = () => {
    cache = undefined;
  };

  return {
    async list() {
      const stored = await rows();
      const keys = [...new Set([...catalog.keys(), ...stored.keys()])].sort();
      return keys.flatMap((key) => {
        const provider = resolve(key, stored);
        return provider ? [toView(provider, stored)] : [];
      });
    },

    async view(key) {
      const stored = await rows();
      const provider = resolve(key, stored);
      if (!provider) throw notFound('provider');
      return toView(provider, stored);
    },

    async get(key) {
      const provider = resolve(key, await rows());
      if (!provider) throw notFound('provider');
      return provider;
    },

    async create(ctx, input) {
      const { oauth2, ...rest } = input;
      const clientId = oauth2?.clientId;
      const clientSecret = oauth2?.clientSecret;
      const definition: ProviderDefinition = { ...rest, ...(oauth2 ? { oauth2: stripClient(oauth2) } : {}) };
      const problems = definitionProblems(definition, { allowHttp: deps.allowHttp });
      if ((clientId === undefined) !== (clientSecret === undefined)) problems.push('oauth2.clientId and oauth2.clientSecret go together');
      if (problems.length > 0) throw new BulkheadError('provider_invalid', problems.join('; '), { details: { problems } });
      if (catalog.has(definition.key)) throw new BulkheadError('provider_key_taken', `"${definition.key}" is a catalog provider; configure its OAuth app instead`);
      try {
        return await withPlatform(async (tx) => {
          const now = runtime.now();
          const stored = { ...definition, ...(clientId ? { oauthApp: { clientId, scopes: definition.oauth2?.scopes ?? [] } } : {}) };
          const inserted = await tx.query(
            `INSERT INTO providers (key, source, definition, created_at, updated_at) VALUES ($1, 'custom', $2::jsonb, $3, $3) ON CONFLICT (key) DO NOTHING`,
            [definition.key, JSON.stringify(stored), now],
          );
          if (inserted.rowCount === 0) throw new BulkheadError('provider_key_taken', `a provider with key "${definition.key}" already exists`);
          if (clientSecret !== undefined) {
            const sealed = await vault.platform(tx).seal(secretPlace(definition.key), clientSecret);
            await tx.query('UPDATE providers SET client_secret = $2 WHERE key = $1', [definition.key, sealed]);
          }
          await platformAudit.append(tx, runtime, { ...ctx, action: 'provider.create', target: { type: 'provider', id: definition.key }, outcome: 'success', details: { authType: definition.authType, oauthApp: clientId !== undefined } });
          return toView(resolve(definition.key, await rows(tx)) as Provider, await rows(tx));
        });
      } finally {
        invalidate();
      }
    },

    async configureOAuthApp(ctx, key, app) {
      try {
        return await withPlatform(async (tx) => {
          const stored = await rows(tx);
          const provider = resolve(key, stored);
          if (!provider) throw notFound('provider');
          if (!provider.oauth2) throw new BulkheadError('provider_invalid', `provider ${key} does not use OAuth`);
          const { oauthApp: _old, ...definition } = provider;
          const body = { ...stripSource(definition), oauthApp: { clientId: app.clientId, scopes: [...(app.scopes ?? provider.oauth2.scopes)] } };
          const now = runtime.now();
          await tx.query(
            `INSERT INTO providers (key, source, definition, created_at, updated_at) VALUES ($1, $2, $3::jsonb, $4, $4)
             ON CONFLICT (key) DO UPDATE SET definition = EXCLUDED.definition, updated_at = EXCLUDED.updated_at`,
            [key, provider.source, JSON.stringify(body), now],
          );
          const sealed = await vault.platform(tx).seal(secretPlace(key), app.clientSecret);
          await tx.query('UPDATE providers SET client_secret = $2 WHERE key = $1', [key, sealed]);
          await platformAudit.append(tx, runtime, { ...ctx, action: 'provider.oauth_app.configure', target: { type: 'provider', id: key }, outcome: 'success', details: { clientId: app.clientId } });
          const after = await rows(tx);
          return toView(resolve(key, after) as Provider, after);
        });
      } finally {
        invalidate();
      }
    },

    clientSecret: (key) =>
      withPlatform(async (tx) => {
        const row = (await tx.query<{ client_secret: Uint8Array | null }>('SELECT client_secret FROM providers WHERE key = $1', [key])).rows[0];
        if (!row?.client_secret) throw new BulkheadError('provider_not_configured', `provider ${key} has no OAuth app configured (PUT /v1/providers/${key}/oauth-app)`);
        return vault.platform(tx).openText(secretPlace(key), row.client_secret);
      }),
  };
}

function stripClient(oauth2: NonNullable<CreateProviderInput['oauth2']>): NonNullable<ProviderDefinition['oauth2']> {
  const { clientId: _id, clientSecret: _secret, ...settings } = oauth2;
  return settings;
}

function stripSource(provider: Omit<Provider, 'oauthApp'>): ProviderDefinition {
  const { source: _source, ...definition } = provider;
  return definition;
}
