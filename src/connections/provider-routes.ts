/** Provider catalog routes (platform admin). The OAuth client secret goes in and never comes out. */
import { Type } from 'typebox';
import { adminContext } from '../http/auth.js';
import { errorResponses } from '../http/schemas.js';
import type { HttpServer } from '../http/server.js';
import { ApiKeyPlacement, OAuth2Settings, ProviderDefinition, authTypes } from './provider-schema.js';
import type { ProviderService } from './providers.js';

const ProviderView = Type.Object({
  ...ProviderDefinition.properties,
  source: Type.Union([Type.Literal('catalog'), Type.Literal('custom')]),
  oauthApp: Type.Union([
    Type.Object({ clientId: Type.String(), scopes: Type.Array(Type.String()), clientSecretSet: Type.Boolean() }),
    Type.Null(),
  ]),
});

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
  const security = [{ adminToken: [] }];
  const tags = ['providers'];

  app.get('/v1/providers', { ...admin, schema: { tags, security, response: { 200: Type.Object({ data: Type.Array(ProviderView), nextCursor: Type.Null() }), ...errorResponses } } }, async () => ({
    data: await providers.list(),
    nextCursor: null,
  }));

  app.get('/v1/providers/:key', { ...admin, schema: { tags, security, params: KeyParams, response: { 200: ProviderView, ...errorResponses } } }, (request) => providers.view(request.params.key));

  app.post('/v1/providers', { ...admin, schema: { tags, security, body: CreateProvider, response: { 201: ProviderView, ...errorResponses } } }, async (request, reply) => {
    return reply.status(201).send(await providers.create(adminContext(request), request.body));
  });

  app.put('/v1/providers/:key/oauth-app', { ...admin, schema: { tags, security, params: KeyParams, body: OAuthApp, response: { 200: ProviderView, ...errorResponses } } }, (request) =>
    providers.configureOAuthApp(adminContext(request), request.params.key, request.body),
  );
}
