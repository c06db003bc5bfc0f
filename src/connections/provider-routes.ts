/**
 * Provider catalog routes. The platform admin changes the catalog; a workspace key with
 * `connections:read` may read it (what it can connect to), but not the platform's OAuth app
 * settings: it sees whether an app is configured, never which. The OAuth client secret goes in
 * and never comes out, to anyone.
 */
import { Type } from 'typebox';
import type { FastifyRequest } from 'fastify';
import { adminContext } from '../http/auth.js';
import { named } from '../http/schemas.js';
import type { HttpServer } from '../http/server.js';
import { ApiKeyPlacement, OAuth2Settings, ProviderDefinition, authTypes } from './provider-schema.js';
import type { ProviderService, ProviderView as ProviderViewData } from './providers.js';

const ProviderView = named('Provider', Type.Object({
  ...ProviderDefinition.properties,
  source: Type.Union([Type.Literal('catalog'), Type.Literal('custom')]),
  oauthConfigured: Type.Boolean({ description: 'The platform has an OAuth app (client id and secret) for this provider, so connections can use the OAuth flow' }),
  oauthApp: Type.Optional(
    Type.Union([
      Type.Object({ clientId: Type.String(), scopes: Type.Array(Type.String()), clientSecretSet: Type.Boolean() }),
      Type.Null(),
    ], { description: 'The platform OAuth app settings; with the admin token only' }),
  ),
}));

/** What the credential may see: the admin token all of it, a workspace key no platform settings. */
function seenBy(request: FastifyRequest) {
  return (view: ProviderViewData) => {
    const oauthConfigured = view.oauthApp?.clientSecretSet === true;
    if (request.principal === undefined) return { ...view, oauthConfigured };
    const { oauthApp: _platformOnly, ...shared } = view;
    return { ...shared, oauthConfigured };
  };
}

const CreateProvider = Type.Object(
  {
    key: ProviderDefinition.properties.key,
    name: ProviderDefinition.properties.name,
    authType: Type.Union(authTypes.map((t) => Type.Literal(t))),
    baseUrls: ProviderDefinition.properties.baseUrls,
    apiKey: Type.Optional(ApiKeyPlacement),
    oauth2: Type.Optional(
      Type.Object(
        {
          ...OAuth2Settings.properties,
          clientId: Type.Optional(Type.String({ minLength: 1, maxLength: 500 })),
          clientSecret: Type.Optional(Type.String({ minLength: 1, maxLength: 2000, description: 'Sealed with the platform key; never returned' })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

const OAuthApp = Type.Object(
  {
    clientId: Type.String({ minLength: 1, maxLength: 500 }),
    clientSecret: Type.String({ minLength: 1, maxLength: 2000 }),
    scopes: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 200 }), { maxItems: 100 })),
  },
  { additionalProperties: false },
);

const KeyParams = Type.Object({ key: Type.String({ maxLength: 64 }) }, { additionalProperties: false });

export function registerProviderRoutes(app: HttpServer, providers: ProviderService): void {
  const admin = { config: { auth: 'admin' as const } };
  const reader = { config: { auth: { scope: 'connections:read' as const, alsoAdmin: true as const } } };

  app.get('/v1/providers', { ...reader, schema: { operationId: 'listProviders', summary: 'List providers', description: 'Lists the catalog\'s providers and the custom ones, each with whether an OAuth app is configured. The admin token also sees the OAuth app settings (never the client secret); a workspace key sees no platform settings.', tags: ['providers'], response: { 200: Type.Object({ data: Type.Array(ProviderView), nextCursor: Type.Null() }) } } }, async (request) => ({
    data: (await providers.list()).map(seenBy(request)),
    nextCursor: null,
  }));
  app.get('/v1/providers/:key', { ...reader, schema: { operationId: 'getProvider', summary: 'Read a provider', description: 'Returns one provider by key. The admin token also sees its OAuth app settings minus the client secret; a workspace key sees no platform settings.', tags: ['providers'], params: KeyParams, response: { 200: ProviderView } } }, async (request) =>
    seenBy(request)(await providers.view(request.params.key)),
  );
  app.post('/v1/providers', { ...admin, schema: { operationId: 'createProvider', summary: 'Register a custom provider', description: 'Adds a provider outside the built-in catalog. An OAuth client secret sent here is sealed with the platform key and never returned.', tags: ['providers'], errors: ['provider_key_taken', 'provider_invalid', 'ciphertext_invalid', 'key_version_retired', 'root_key_missing'], body: CreateProvider, response: { 201: ProviderView } } }, async (request, reply) => {
    return reply.status(201).send(seenBy(request)(await providers.create(adminContext(request), request.body)));
  });
  app.put('/v1/providers/:key/oauth-app', { ...admin, schema: { operationId: 'configureProviderOAuthApp', summary: 'Configure a provider\'s OAuth app', description: 'Sets (or replaces) the OAuth client id, secret and default scopes of an OAuth provider. The secret is sealed and never returned.', tags: ['providers'], errors: ['provider_invalid', 'ciphertext_invalid', 'key_version_retired', 'root_key_missing'], params: KeyParams, body: OAuthApp, response: { 200: ProviderView } } }, (request) =>
    providers.configureOAuthApp(adminContext(request), request.params.key, request.body).then(seenBy(request)),
  );
}
