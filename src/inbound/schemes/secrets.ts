/**
 * Verification secrets per scheme. Bulkhead generates one when the sender lets the receiver choose
 * (Standard Webhooks, GitHub, generic HMAC); Stripe and Slack issue their own, which the platform
 * pastes in. Pasted secrets are checked for the shape the scheme needs, so a secret that could
 * never verify is refused when saved rather than at the first webhook.
 */
import type { Runtime } from '../../ids.js';
import type { Scheme } from './common.js';
import { standardWebhooksKey } from './standard-webhooks.js';

export const schemesGeneratingSecrets: ReadonlySet<Scheme> = new Set(['standard-webhooks', 'github', 'hmac']);

export function generateSecret(scheme: Scheme, runtime: Runtime): string {
  if (scheme === 'standard-webhooks') return `whsec_${runtime.randomBytes(32).toString('base64')}`;
  return runtime.randomBytes(32).toString('base64url');
}

const PRINTABLE = /^[\x21-\x7e]{16,512}$/;

/** Why a secret cannot be used with a scheme (empty when it can). */
export function secretProblems(scheme: Scheme, secret: string): string[] {
  if (!PRINTABLE.test(secret)) return ['secret must be 16 to 512 printable ASCII characters without spaces'];
  if (scheme === 'standard-webhooks') {
    const base64 = secret.slice('whsec_'.length);
    const bytes = standardWebhooksKey(secret).length;
    if (!secret.startsWith('whsec_') || !/^[A-Za-z0-9+/]+={0,2}$/.test(base64) || bytes < 24 || bytes > 64) return ['a Standard Webhooks secret is whsec_ followed by the base64 of 24 to 64 bytes'];
  }
  if (scheme === 'stripe' && !secret.startsWith('whsec_')) return ['a Stripe endpoint secret starts with whsec_ (copy it whole from the Stripe dashboard or CLI)'];
  return [];
}
