/**
 * Stripe: `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…][,v0=…]`, each v1 an
 * HMAC-SHA256 of `${t}.${body}` keyed with the whole endpoint secret (`whsec_…`, prefix included).
 * Several v1 entries appear while Stripe rolls the secret; v0 (test-mode legacy) is ignored.
 */
import { anyMatch, checkTolerance, decodeHex, digest, header, invalid, mac, MAX_SIGNATURES, missing, parseTimestamp, type SignedRequest, type Verified, type VerifyContext } from './common.js';

export function verifyStripe(request: SignedRequest, context: VerifyContext): Verified {
  const value = header(request.headers, 'stripe-signature');
  if (value === undefined) throw missing('Stripe-Signature header');
  let timestampText: string | undefined;
  const v1: string[] = [];
  for (const item of value.split(',')) {
    const eq = item.indexOf('=');
    if (eq < 0) continue;
    const key = item.slice(0, eq).trim();
    const text = item.slice(eq + 1).trim();
    if (key === 't') {
      if (timestampText !== undefined) throw invalid('the Stripe-Signature header has more than one timestamp');
      timestampText = text;
    } else if (key === 'v1') v1.push(text);
  }
  if (timestampText === undefined || v1.length === 0) throw invalid('the Stripe-Signature header needs t= and at least one v1=');
  const timestamp = parseTimestamp(timestampText, 'Stripe-Signature t');
  const signed = `${timestampText}.`;
  if (!anyMatch(context.secrets, (secret) => mac('sha256', secret, signed, request.body), v1.slice(0, MAX_SIGNATURES).map(decodeHex))) throw invalid();
  checkTolerance(timestamp, context.nowSeconds, context.toleranceSeconds);
  return { signedDigest: digest(signed, request.body), timestamp };
}
