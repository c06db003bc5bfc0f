/** One verifier per scheme. Each throws `signature_missing`, `signature_invalid` or `signature_expired`. */
import { type Scheme, type SignedRequest, type Verified, type VerifyContext } from './common.js';
import { verifyGenericHmac } from './generic-hmac.js';
import { verifyGithub } from './github.js';
import { verifySlack } from './slack.js';
import { verifyStandardWebhooks } from './standard-webhooks.js';
import { verifyStripe } from './stripe.js';

export * from './common.js';

const verifiers: Record<Scheme, (request: SignedRequest, context: VerifyContext) => Verified> = {
  'standard-webhooks': verifyStandardWebhooks,
  github: verifyGithub,
  stripe: verifyStripe,
  slack: verifySlack,
  hmac: verifyGenericHmac,
};

export function verifySignature(scheme: Scheme, request: SignedRequest, context: VerifyContext): Verified {
  if (context.secrets.length === 0) throw new Error('a source without a secret');
  return verifiers[scheme](request, context);
}
