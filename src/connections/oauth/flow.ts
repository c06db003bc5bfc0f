/**
 * The authorization code flow with PKCE (S256), run by Bulkhead on the end user's behalf.
 *
 *   start     a fresh code verifier (sealed into the session row) and a signed, expiring `state`
 *             (HS256 JWT naming the session, workspace, provider and a single-use nonce), then a
 *             redirect to the provider's authorize URL.
 *   callback  verifies the state's signature and expiry, consumes the nonce in the session row
 *             (a replayed callback finds it gone), exchanges the code through the egress client,
 *             and seals the tokens into a new (or re-authorised) connection.
 */
import { createHash, hkdfSync, randomBytes } from 'node:crypto';
import { jwtVerify, SignJWT } from 'jose';
import type { WithWorkspace } from '../../db/tenant-tx.js';
import { BulkheadError } from '../../errors.js';
import type { Runtime } from '../../ids.js';
import type { Vault } from '../../vault/vault.js';
import type { ConnectionService } from '../connections.js';
import type { ConnectionView } from '../connection-store.js';
import type { Provider, ProviderService } from '../providers.js';
import type { ConnectSessionRow, ConnectSessions, FailureReason } from '../connect/sessions.js';
import { OAuthError, type TokenClient } from './token-client.js';

const STATE_TTL_SECONDS = 600;

/** A callback's outcome, with the session it was for (known once the state verified). */
export type CallbackResult =
  | { readonly ok: true; readonly connection: ConnectionView; readonly session: { readonly workspaceId: string; readonly id: string } }
  | { readonly ok: false; readonly error: BulkheadError; readonly session: { readonly workspaceId: string; readonly id: string }; readonly failed: boolean };
const verifierPlace = (sessionId: string) => ({ table: 'connect_sessions', rowId: sessionId, column: 'pkce_verifier' });

export function createOAuthFlow(deps: {
  withWorkspace: WithWorkspace;
  vault: Vault;
  sessions: ConnectSessions;
  providers: ProviderService;
  connections: ConnectionService;
  tokens: TokenClient;
  runtime: Runtime;
  /** Secret material the state-signing key is derived from (never used directly). */
  stateSecret: string;
  publicUrl: () => string;
  maxConnections: (workspaceId: string) => Promise<number>;
}) {
  const stateKey = new Uint8Array(hkdfSync('sha256', deps.stateSecret, 'bulkhead', 'oauth-state/v1', 32));
  const redirectUri = () => `${deps.publicUrl()}/oauth/callback`;

  return {
    redirectUri,

    async start(session: ConnectSessionRow, provider: Provider): Promise<string> {
      if (provider.authType !== 'oauth2_code' || !provider.oauth2?.authorizeUrl) throw new BulkheadError('provider_invalid', `${provider.key} does not use the authorization code flow`);
      if (!provider.oauthApp) throw new BulkheadError('provider_not_configured', `${provider.key} has no OAuth app configured`);
      const verifier = randomBytes(32).toString('base64url');
      const challenge = createHash('sha256').update(verifier).digest('base64url');
      const nonce = randomBytes(16).toString('base64url');
      await deps.withWorkspace(session.workspace_id, async (tx) => {
        const row = deps.sessions.check(await deps.sessions.find(tx, session.id, true));
        const sealed = await deps.vault.workspace(tx).seal(verifierPlace(row.id), verifier);
        await tx.query('UPDATE connect_sessions SET pkce_verifier = $2, oauth_provider = $3, state_nonce = $4 WHERE id = $1', [row.id, sealed, provider.key, nonce]);
      });
      const state = await new SignJWT({ ws: session.workspace_id, sid: session.id, p: provider.key, n: nonce })
        .setProtectedHeader({ alg: 'HS256' })
        .setIssuedAt(Math.floor(deps.runtime.now().getTime() / 1000))
        .setExpirationTime(Math.floor(deps.runtime.now().getTime() / 1000) + STATE_TTL_SECONDS)
        .setAudience('bulkhead:oauth-callback')
        .sign(stateKey);
      const url = new URL(provider.oauth2.authorizeUrl);
      for (const [name, value] of Object.entries(provider.oauth2.authorizeParams ?? {})) url.searchParams.set(name, value);
      url.searchParams.set('response_type', 'code');
      url.searchParams.set('client_id', provider.oauthApp.clientId);
      url.searchParams.set('redirect_uri', redirectUri());
      if (provider.oauthApp.scopes.length > 0) url.searchParams.set('scope', provider.oauthApp.scopes.join(' '));
      url.searchParams.set('state', state);
      url.searchParams.set('code_challenge', challenge);
      url.searchParams.set('code_challenge_method', 'S256');
      return url.toString();
    },

    /**
     * Completes the flow. Once the state is verified the session is known, so every failure after
     * that point moves the session to `failed` (sessions.ts decides whether it still can) and is
     * returned with the session, for the page to send the end user back to the platform.
     */
    async callback(query: { code?: string | undefined; state?: string | undefined; error?: string | undefined }): Promise<CallbackResult> {
      if (query.state === undefined) throw new BulkheadError('oauth_state_invalid', 'the callback carries no state');
      let claims: { ws: string; sid: string; p: string; n: string };
      try {
        const verified = await jwtVerify(query.state, stateKey, {
          algorithms: ['HS256'],
          audience: 'bulkhead:oauth-callback',
          currentDate: deps.runtime.now(),
        });
        claims = verified.payload as unknown as typeof claims;
      } catch (error) {
        // A forged or expired state names no session we can trust: nothing to mark failed.
        throw new BulkheadError('oauth_state_invalid', 'the state is forged, altered or expired', { cause: error });
      }
      const session = { workspaceId: claims.ws, id: claims.sid };
      const failed = async (reason: FailureReason, error: BulkheadError): Promise<CallbackResult> => {
        const moved = await deps.sessions.fail(claims.ws, claims.sid, { reason, detail: error.message, provider: claims.p });
        return { ok: false, error, session, failed: moved };
      };
      // Consume the nonce first: whatever happens next, this state cannot be used again.
      let consumed: { row: ConnectSessionRow; verifier: string };
      try {
        consumed = await deps.withWorkspace(claims.ws, async (tx) => {
          const row = deps.sessions.check(await deps.sessions.find(tx, claims.sid, true));
          if (row.state_nonce === null || row.state_nonce !== claims.n || row.oauth_provider !== claims.p || !row.pkce_verifier) {
            throw new BulkheadError('oauth_state_invalid', 'this authorization was already completed or superseded');
          }
          const verifier = await deps.vault.workspace(tx).openText(verifierPlace(row.id), row.pkce_verifier);
          await tx.query('UPDATE connect_sessions SET state_nonce = NULL, pkce_verifier = NULL WHERE id = $1', [row.id]);
          return { row, verifier };
        });
      } catch (error) {
        // A replay after the outcome, or an expired session, keeps its state (fail() refuses).
        if (error instanceof BulkheadError && error.code === 'oauth_state_invalid') return failed('state_mismatch', error);
        throw error;
      }
      if (query.error !== undefined || query.code === undefined) {
        return failed('provider_error', new BulkheadError('oauth_exchange_failed', `the provider returned no code (${(query.error ?? 'no code').slice(0, 64)})`));
      }
      const provider = await deps.providers.get(claims.p);
      if (!provider.oauthApp) return failed('token_exchange_failed', new BulkheadError('provider_not_configured', `${provider.key} has no OAuth app configured`));
      let tokens;
      try {
        tokens = await deps.tokens.exchangeCode(provider, { clientId: provider.oauthApp.clientId, clientSecret: await deps.providers.clientSecret(provider.key) }, {
          code: query.code,
          redirectUri: redirectUri(),
          codeVerifier: consumed.verifier,
        });
      } catch (error) {
        if (error instanceof OAuthError) return failed('token_exchange_failed', new BulkheadError('oauth_exchange_failed', `the provider refused the code exchange (${error.oauthError ?? 'error'})`));
        if (error instanceof BulkheadError) return failed('token_exchange_failed', error);
        throw error;
      }
      const maxConnections = await deps.maxConnections(claims.ws);
      try {
        const connection = await deps.withWorkspace(claims.ws, async (tx) => {
          const row = deps.sessions.check(await deps.sessions.find(tx, claims.sid, true));
          const saved = await deps.connections.saveOAuth(
            tx,
            { actor: { type: 'connect_session', id: row.id } },
            { provider, name: row.connection_name ?? `${provider.key}-${row.id.slice(-6)}`, tokens, existingId: row.connection_id ?? undefined },
            { maxConnections },
          );
          await deps.sessions.complete(tx, row.id, { connectionId: saved.id, provider: provider.key, reauthorized: row.connection_id !== null });
          return saved;
        });
        return { ok: true, connection, session };
      } catch (error) {
        if (error instanceof BulkheadError && error.code !== 'connect_session_expired' && error.code !== 'connect_session_invalid') return failed('connection_rejected', error);
        throw error;
      }
    },
  };
}

export type OAuthFlow = ReturnType<typeof createOAuthFlow>;
