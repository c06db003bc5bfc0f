/**
 * Credential shapes, their validation, the masked hint responses may show, and how each is
 * injected into an outgoing request. The credential itself only exists sealed at rest and in
 * memory for the duration of a call; nothing here logs or returns it.
 */
import { BulkheadError } from '../errors.js';
import type { Provider } from './providers.js';

export type Credential =
  | { readonly type: 'api_key'; readonly apiKey: string }
  | { readonly type: 'basic'; readonly username: string; readonly password: string }
  | {
      readonly type: 'oauth2';
      readonly accessToken: string;
      readonly refreshToken?: string | undefined;
      readonly tokenType?: string | undefined;
      /** ISO time the access token expires, when the provider said. */
      readonly expiresAt?: string | undefined;
      readonly scope?: string | undefined;
    };

const MAX_SECRET = 8192;
const printable = (value: unknown, field: string, max = MAX_SECRET): string => {
  // Header injection guard: a credential goes into a header value, so no control characters.
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused here
  if (typeof value !== 'string' || value.length === 0 || value.length > max || /[\0-\x1f\x7f]/.test(value)) {
    throw new BulkheadError('credentials_invalid', `${field} must be a non-empty string of printable characters (at most ${max})`);
  }
  return value;
};

/** Turns `POST /v1/connections` credentials into a Credential for the provider's auth type. */
export function credentialFromInput(provider: Provider, input: Readonly<Record<string, unknown>> | undefined): Credential | undefined {
  const given = input ?? {};
  const allowed = (...keys: string[]) => {
    const extra = Object.keys(given).filter((k) => !keys.includes(k));
    if (extra.length > 0) throw new BulkheadError('credentials_invalid', `unexpected credential fields for ${String(provider.authType)}: ${extra.join(', ')}`);
  };
  switch (provider.authType) {
    case 'api_key':
      allowed('apiKey');
      return { type: 'api_key', apiKey: printable(given['apiKey'], 'credentials.apiKey') };
    case 'basic':
      allowed('username', 'password');
      return { type: 'basic', username: printable(given['username'], 'credentials.username', 500), password: printable(given['password'], 'credentials.password') };
    case 'oauth2_client_credentials':
      allowed();
      return undefined; // obtained from the token endpoint with the platform's OAuth app
    case 'oauth2_code': {
      // Importing tokens obtained elsewhere (a migration); the normal path is a connect session.
      allowed('accessToken', 'refreshToken', 'expiresAt');
      if (given['accessToken'] === undefined) {
        throw new BulkheadError('credentials_invalid', 'OAuth connections are made through a connect session (POST /v1/connect-sessions), or by importing { accessToken, refreshToken?, expiresAt? }');
      }
      const expiresAt = given['expiresAt'];
      if (expiresAt !== undefined && (typeof expiresAt !== 'string' || Number.isNaN(Date.parse(expiresAt)))) {
        throw new BulkheadError('credentials_invalid', 'credentials.expiresAt must be an ISO date-time');
      }
      return {
        type: 'oauth2',
        accessToken: printable(given['accessToken'], 'credentials.accessToken'),
        refreshToken: given['refreshToken'] === undefined ? undefined : printable(given['refreshToken'], 'credentials.refreshToken'),
        expiresAt: expiresAt === undefined ? undefined : new Date(expiresAt).toISOString(),
      };
    }
  }
}

/** What a response may show about a credential: never enough to use it. */
export function hintFor(credential: Credential | undefined): string | null {
  if (!credential) return null;
  switch (credential.type) {
    case 'api_key':
      return credential.apiKey.length >= 16 ? `…${credential.apiKey.slice(-4)}` : '…';
    case 'basic':
      return credential.password.length >= 16 ? `${credential.username.slice(0, 40)}:…${credential.password.slice(-4)}` : `${credential.username.slice(0, 40)}:…`;
    case 'oauth2':
      return null;
  }
}

/** Every string in the credential that must never appear in a response, log or error. */
export function secretStrings(credential: Credential | undefined): string[] {
  if (!credential) return [];
  switch (credential.type) {
    case 'api_key':
      return [credential.apiKey];
    case 'basic':
      return [credential.password, Buffer.from(`${credential.username}:${credential.password}`).toString('base64')];
    case 'oauth2':
      return [credential.accessToken, ...(credential.refreshToken ? [credential.refreshToken] : [])];
  }
}

export interface Injection {
  readonly headers: Record<string, string>;
  readonly query: Record<string, string>;
}

/** Headers and query parameters that carry the credential, per the provider's definition. */
export function injectionFor(provider: Provider, credential: Credential): Injection {
  switch (credential.type) {
    case 'api_key': {
      const placement = provider.apiKey ?? { in: 'header' as const, name: 'Authorization', prefix: 'Bearer ' };
      const value = `${placement.prefix ?? ''}${credential.apiKey}`;
      return placement.in === 'header' ? { headers: { [placement.name.toLowerCase()]: value }, query: {} } : { headers: {}, query: { [placement.name]: value } };
    }
    case 'basic':
      return { headers: { authorization: `Basic ${Buffer.from(`${credential.username}:${credential.password}`).toString('base64')}` }, query: {} };
    case 'oauth2':
      return { headers: { authorization: `Bearer ${credential.accessToken}` }, query: {} };
  }
}
