/**
 * What a provider is: how to authenticate to it and where requests may go. One schema serves the
 * shipped catalog (checked at start-up), `POST /v1/providers` and the OpenAPI document.
 */
import { type Static, Type } from 'typebox';

export const authTypes = ['api_key', 'basic', 'oauth2_code', 'oauth2_client_credentials'] as const;
export type AuthType = (typeof authTypes)[number];

const HttpUrl = Type.String({ minLength: 8, maxLength: 2048, pattern: '^https?://' });

export const ApiKeyPlacement = Type.Object(
  {
    in: Type.Union([Type.Literal('header'), Type.Literal('query')]),
    name: Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9!#$%&\'*+.^_`|~-]+$' }),
    prefix: Type.Optional(Type.String({ maxLength: 50, pattern: '^[\\x20-\\x7e]*$' })),
  },
  { additionalProperties: false },
);

export const OAuth2Settings = Type.Object(
  {
    authorizeUrl: Type.Optional(HttpUrl),
    tokenUrl: HttpUrl,
    revokeUrl: Type.Optional(HttpUrl),
    scopes: Type.Array(Type.String({ minLength: 1, maxLength: 200 }), { maxItems: 100 }),
    /** Extra query parameters on the authorization URL (e.g. Google's access_type=offline). */
    authorizeParams: Type.Optional(Type.Record(Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' }), Type.String({ maxLength: 500 }))),
    /** How the client authenticates at the token endpoint (RFC 6749 §2.3.1). */
    tokenAuth: Type.Optional(Type.Union([Type.Literal('client_secret_basic'), Type.Literal('client_secret_post')])),
  },
  { additionalProperties: false },
);

export const ProviderDefinition = Type.Object(
  {
    key: Type.String({ pattern: '^[a-z0-9][a-z0-9_-]{0,62}$' }),
    name: Type.String({ minLength: 1, maxLength: 200 }),
    authType: Type.Union(authTypes.map((t) => Type.Literal(t))),
    baseUrls: Type.Array(HttpUrl, { minItems: 1, maxItems: 20 }),
    apiKey: Type.Optional(ApiKeyPlacement),
    oauth2: Type.Optional(OAuth2Settings),
  },
  { additionalProperties: false },
);
export type ProviderDefinition = Static<typeof ProviderDefinition>;

/**
 * Rules the schema cannot say: the settings block matches the auth type, and base URLs are plain
 * origins with an optional path (no credentials, query or fragment), https unless `allowHttp`.
 * Returns every problem, not the first.
 */
export function definitionProblems(def: ProviderDefinition, options: { allowHttp: boolean }): string[] {
  const problems: string[] = [];
  const checkUrl = (label: string, raw: string) => {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      problems.push(`${label} is not a URL`);
      return;
    }
    if (url.protocol !== 'https:' && !(options.allowHttp && url.protocol === 'http:')) problems.push(`${label} must use https`);
    if (url.username !== '' || url.password !== '') problems.push(`${label} must not carry credentials`);
    if (url.hash !== '') problems.push(`${label} must not have a fragment`);
    return url;
  };
  def.baseUrls.forEach((raw, i) => {
    const url = checkUrl(`baseUrls[${i}]`, raw);
    if (url && url.search !== '') problems.push(`baseUrls[${i}] must not have a query`);
  });
  if (def.authType === 'api_key' && !def.apiKey) problems.push('authType api_key needs apiKey { in, name, prefix? }');
  if (def.authType !== 'api_key' && def.apiKey) problems.push(`apiKey is only for authType api_key`);
  const oauth = def.authType === 'oauth2_code' || def.authType === 'oauth2_client_credentials';
  if (oauth && !def.oauth2) problems.push(`authType ${String(def.authType)} needs oauth2 settings`);
  if (!oauth && def.oauth2) problems.push(`oauth2 is only for the oauth2 auth types`);
  if (def.authType === 'oauth2_code' && def.oauth2 && !def.oauth2.authorizeUrl) problems.push('oauth2_code needs oauth2.authorizeUrl');
  if (def.oauth2) {
    checkUrl('oauth2.tokenUrl', def.oauth2.tokenUrl);
    if (def.oauth2.authorizeUrl) checkUrl('oauth2.authorizeUrl', def.oauth2.authorizeUrl);
    if (def.oauth2.revokeUrl) checkUrl('oauth2.revokeUrl', def.oauth2.revokeUrl);
  }
  return problems;
}
