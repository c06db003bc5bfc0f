/**
 * Slack (signing secret, version v0): `X-Slack-Signature: v0=<hex HMAC-SHA256 of
 * "v0:${X-Slack-Request-Timestamp}:${body}">` keyed with the app's signing secret.
 */
import { anyMatch, checkTolerance, decodeHex, digest, header, invalid, mac, missing, parseTimestamp, type SignedRequest, type Verified, type VerifyContext } from './common.js';

export function verifySlack(request: SignedRequest, context: VerifyContext): Verified {
  const timestampText = header(request.headers, 'x-slack-request-timestamp');
  const value = header(request.headers, 'x-slack-signature');
  if (timestampText === undefined || value === undefined) throw missing('X-Slack-Request-Timestamp and X-Slack-Signature headers');
  const timestamp = parseTimestamp(timestampText, 'X-Slack-Request-Timestamp');
  if (!value.startsWith('v0=')) throw invalid('the X-Slack-Signature header does not start with v0=');
  const signed = `v0:${timestampText}:`;
  if (!anyMatch(context.secrets, (secret) => mac('sha256', secret, signed, request.body), [decodeHex(value.slice(3))])) throw invalid();
  checkTolerance(timestamp, context.nowSeconds, context.toleranceSeconds);
  return { signedDigest: digest(signed, request.body), timestamp };
}
