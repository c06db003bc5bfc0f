/**
 * A generic HMAC of the raw body in a header of the source's choosing: SHA-256 or SHA-512,
 * hex or base64, after an optional fixed prefix (e.g. `sha256=`), keyed with the secret's UTF-8
 * bytes. No timestamp: replays are bounded by the replay memory alone.
 */
import { anyMatch, decodeBase64, decodeHex, digest, header, invalid, mac, missing, type SignedRequest, type Verified, type VerifyContext } from './common.js';

export function verifyGenericHmac(request: SignedRequest, context: VerifyContext): Verified {
  const options = context.hmac;
  if (!options) throw new Error('an hmac source without hmac options');
  const value = header(request.headers, options.header);
  if (value === undefined) throw missing(`${options.header} header`);
  if (!value.startsWith(options.prefix)) throw invalid(`the ${options.header} header does not start with the expected prefix`);
  const encoded = value.slice(options.prefix.length).trim();
  const presented = options.encoding === 'hex' ? decodeHex(encoded) : decodeBase64(encoded);
  if (!anyMatch(context.secrets, (secret) => mac(options.algorithm, secret, '', request.body), [presented])) throw invalid();
  return { signedDigest: digest('', request.body), timestamp: null };
}
