/**
 * GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` with the webhook's
 * secret. The signature covers the body only — no timestamp, no delivery id — so replays are
 * bounded by the replay memory alone (see receive.ts). The legacy SHA-1 `X-Hub-Signature` is not
 * accepted.
 */
import { anyMatch, decodeHex, digest, header, invalid, mac, missing, type SignedRequest, type Verified, type VerifyContext } from './common.js';

export function verifyGithub(request: SignedRequest, context: VerifyContext): Verified {
  const value = header(request.headers, 'x-hub-signature-256');
  if (value === undefined) throw missing('X-Hub-Signature-256 header');
  if (!value.startsWith('sha256=')) throw invalid('the X-Hub-Signature-256 header does not start with sha256=');
  const presented = decodeHex(value.slice('sha256='.length));
  if (!anyMatch(context.secrets, (secret) => mac('sha256', secret, '', request.body), [presented])) throw invalid();
  return { signedDigest: digest('', request.body), timestamp: null };
}
