/**
 * The OAuth 2.0 client side Bulkhead speaks to authorization servers: code exchange with PKCE
 * (RFC 6749 §4.1, RFC 7636), refresh (§6), client credentials (§4.4) and revocation (RFC 7009).
 * Every request goes through the egress client, so token endpoints get the same SSRF policy as
 * everything else.
 */
import { BulkheadError } from '../../errors.js';
import type { OutboundHttp, OutboundResponse } from '../outbound.js';
import type { Provider } from '../providers.js';

export interface TokenSet {
  readonly accessToken: string;
  readonly refreshToken: string | undefined;
  readonly tokenType: string | undefined;
  readonly expiresAt: string | undefined;
  readonly scope: string | undefined;
}

export interface OAuthClientSecret {
  readonly clientId: string;
  readonly clientSecret: string;
}

/** `permanent`: the grant is gone (invalid_grant, revoked consent); re-authorisation is needed. */
export class OAuthError extends Error {
  constructor(
    readonly kind: 'permanent' | 'transient',
    readonly oauthError: string | undefined,
    message: string,
  ) {
    super(message);
    this.name = 'OAuthError';
  }
}

const PERMANENT = new Set(['invalid_grant', 'invalid_client', 'unauthorized_client', 'access_denied', 'invalid_scope']);
const MAX_TOKEN_RESPONSE = 64 * 1024;

export function createTokenClient(deps: { http: OutboundHttp; now: () => Date }) {
  async function post(provider: Provider, url: string, client: OAuthClientSecret, params: Record<string, string>): Promise<OutboundResponse> {
    const body = new URLSearchParams(params);
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
    if (provider.oauth2?.tokenAuth === 'client_secret_post') {
      body.set('client_id', client.clientId);
      body.set('client_secret', client.clientSecret);
    } else {
      // RFC 6749 §2.3.1: form-encode each part before joining them for Basic.
      const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
      headers['authorization'] = `Basic ${Buffer.from(`${enc(client.clientId)}:${enc(client.clientSecret)}`).toString('base64')}`;
    }
    try {
      return await deps.http.request(url, { method: 'POST', headers, body: body.toString(), maxResponseBytes: MAX_TOKEN_RESPONSE });
    } catch (error) {
      if (error instanceof BulkheadError && error.code === 'egress_blocked') throw error;
      throw new OAuthError('transient', undefined, `token endpoint unreachable: ${(error as Error).message}`);
    }
  }

  function parseTokens(response: OutboundResponse, previous?: { refreshToken: string | undefined }): TokenSet {
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(response.body.toString('utf8')) as Record<string, unknown>;
    } catch {
      json = Object.fromEntries(new URLSearchParams(response.body.toString('utf8')));
    }
    if (response.status >= 500 || response.status === 429) throw new OAuthError('transient', undefined, `token endpoint answered ${response.status}`);
    const error = typeof json['error'] === 'string' ? json['error'] : undefined;
    if (response.status !== 200 || error !== undefined) {
      // Only the error code travels on: descriptions can echo what was sent.
      throw new OAuthError(error !== undefined && PERMANENT.has(error) ? 'permanent' : response.status === 400 || response.status === 401 ? 'permanent' : 'transient', error, `token endpoint refused: ${error ?? `HTTP ${response.status}`}`);
    }
    const accessToken = json['access_token'];
    if (typeof accessToken !== 'string' || accessToken === '') throw new OAuthError('transient', undefined, 'token response without access_token');
    const expiresIn = Number(json['expires_in']);
    const refreshToken = typeof json['refresh_token'] === 'string' && json['refresh_token'] !== '' ? json['refresh_token'] : previous?.refreshToken;
    return {
      accessToken,
      // Providers that do not rotate refresh tokens return none: keep the one we have.
      refreshToken,
      tokenType: typeof json['token_type'] === 'string' ? json['token_type'] : undefined,
      expiresAt: Number.isFinite(expiresIn) && expiresIn > 0 ? new Date(deps.now().getTime() + expiresIn * 1000).toISOString() : undefined,
      scope: typeof json['scope'] === 'string' ? json['scope'] : undefined,
    };
  }

  const tokenUrl = (provider: Provider) => {
    if (!provider.oauth2) throw new BulkheadError('provider_invalid', `provider ${provider.key} does not use OAuth`);
    return provider.oauth2.tokenUrl;
  };

  return {
    async exchangeCode(provider: Provider, client: OAuthClientSecret, input: { code: string; redirectUri: string; codeVerifier: string }): Promise<TokenSet> {
      const response = await post(provider, tokenUrl(provider), client, {
        grant_type: 'authorization_code',
        code: input.code,
        redirect_uri: input.redirectUri,
        code_verifier: input.codeVerifier,
        client_id: client.clientId,
      });
      return parseTokens(response);
    },

    async refresh(provider: Provider, client: OAuthClientSecret, refreshToken: string): Promise<TokenSet> {
      const response = await post(provider, tokenUrl(provider), client, { grant_type: 'refresh_token', refresh_token: refreshToken });
      return parseTokens(response, { refreshToken });
    },

    async clientCredentials(provider: Provider, client: OAuthClientSecret, scopes: readonly string[]): Promise<TokenSet> {
      const params: Record<string, string> = { grant_type: 'client_credentials' };
      if (scopes.length > 0) params['scope'] = scopes.join(' ');
      return parseTokens(await post(provider, tokenUrl(provider), client, params));
    },

    /** RFC 7009. Best effort: a provider that fails here must not keep a deletion from happening. */
    async revoke(provider: Provider, client: OAuthClientSecret, token: string, hint: 'refresh_token' | 'access_token'): Promise<boolean> {
      const url = provider.oauth2?.revokeUrl;
      if (!url) return false;
      try {
        const response = await post(provider, url, client, { token, token_type_hint: hint });
        return response.status === 200;
      } catch {
        return false;
      }
    },
  };
}

export type TokenClient = ReturnType<typeof createTokenClient>;
