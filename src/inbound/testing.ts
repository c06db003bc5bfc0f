/** Test helpers: signing requests the way each provider documents it, independently of the verifiers. */
import { createHmac, randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import type { Scheme } from './schemes/index.js';

export interface SignOptions {
  readonly id?: string;
}

const hex = (key: string, content: string) => createHmac('sha256', key).update(content, 'utf8').digest('hex');
const seconds = (now: Date) => String(Math.floor(now.getTime() / 1000));

/** Headers a provider would send for `body` signed with `secret` at `now`. */
export const signers: Record<Scheme, (secret: string, body: string, now: Date, options?: SignOptions) => Record<string, string>> = {
  // The official Standard Webhooks library signs (SPEC: use the real thing).
  'standard-webhooks': (secret, body, now, options) => {
    const id = options?.id ?? `msg_${randomBytes(8).toString('hex')}`;
    return { 'webhook-id': id, 'webhook-timestamp': seconds(now), 'webhook-signature': new Webhook(secret).sign(id, now, body) };
  },
  // GitHub: sha256= + hex HMAC of the raw body.
  github: (secret, body, _now, options) => ({ 'x-github-event': 'push', 'x-github-delivery': options?.id ?? randomBytes(16).toString('hex'), 'x-hub-signature-256': `sha256=${hex(secret, body)}` }),
  // Stripe: t=<ts>,v1=<hex HMAC of `${t}.${body}`> keyed with the whole whsec_ secret.
  stripe: (secret, body, now) => ({ 'stripe-signature': `t=${seconds(now)},v1=${hex(secret, `${seconds(now)}.${body}`)}` }),
  // Slack: v0= + hex HMAC of `v0:${ts}:${body}`.
  slack: (secret, body, now) => ({ 'x-slack-request-timestamp': seconds(now), 'x-slack-signature': `v0=${hex(secret, `v0:${seconds(now)}:${body}`)}` }),
  // The generic source the tests configure: base64 SHA-256 in X-Acme-Signature after "sha256=".
  hmac: (secret, body) => ({ 'x-acme-signature': `sha256=${createHmac('sha256', secret).update(body, 'utf8').digest('base64')}` }),
};

export const acmeHmac = { header: 'X-Acme-Signature', algorithm: 'sha256', encoding: 'base64', prefix: 'sha256=' } as const;
