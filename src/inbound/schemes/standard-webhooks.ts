/**
 * Standard Webhooks (https://www.standardwebhooks.com), also what Svix sends: HMAC-SHA256 with
 * the base64-decoded part of a `whsec_` secret over `${webhook-id}.${webhook-timestamp}.${body}`;
 * `webhook-signature` holds space-separated `v1,<base64>` entries (several during the sender's
 * secret rotation; other versions are ignored). The `svix-*` header names are accepted as a set
 * when the `webhook-*` ones are absent.
 */
import { anyMatch, checkTolerance, decodeBase64, digest, header, invalid, mac, MAX_SIGNATURES, missing, parseTimestamp, type SignedRequest, type Verified, type VerifyContext } from './common.js';

export function standardWebhooksKey(secret: string): Buffer {
  return Buffer.from(secret.slice('whsec_'.length), 'base64');
}

export function verifyStandardWebhooks(request: SignedRequest, context: VerifyContext): Verified {
  const family = request.headers['webhook-id'] !== undefined ? 'webhook' : request.headers['svix-id'] !== undefined ? 'svix' : 'webhook';
  const id = header(request.headers, `${family}-id`);
  const timestampText = header(request.headers, `${family}-timestamp`);
  const signatures = header(request.headers, `${family}-signature`);
  if (id === undefined || timestampText === undefined || signatures === undefined) throw missing(`${family}-id, ${family}-timestamp and ${family}-signature headers`);
  if (!/^[\x21-\x7e]{1,256}$/.test(id)) throw invalid(`the ${family}-id header is not a printable token of at most 256 characters`);
  const timestamp = parseTimestamp(timestampText, `${family}-timestamp`);

  const presented = signatures
    .split(' ')
    .filter((entry) => entry.startsWith('v1,'))
    .slice(0, MAX_SIGNATURES)
    .map((entry) => decodeBase64(entry.slice(3)));
  if (presented.length === 0) throw invalid(`the ${family}-signature header has no v1 signature`);
  const signed = `${id}.${timestampText}.`;
  if (!anyMatch(context.secrets, (secret) => mac('sha256', standardWebhooksKey(secret), signed, request.body), presented)) throw invalid();
  checkTolerance(timestamp, context.nowSeconds, context.toleranceSeconds);
  return { signedDigest: digest(signed, request.body), timestamp, messageId: id };
}
