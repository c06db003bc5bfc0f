/**
 * The checks a URL must pass before anything is sent to it: an absolute http(s) URL without user
 * info, and, when its host is an IP literal, an address the policy allows. Host names are judged
 * later, at connect time, by the pinned lookup (`resolve.ts`): Node skips `lookup` for IP-literal
 * hosts, which is why literals are judged here.
 */
import { isIP } from 'node:net';
import { type AllowList, classifyAddress } from './address-policy.js';
import { addressBlocked, blocked } from './errors.js';

export interface TargetPolicy {
  readonly httpsOnly: boolean;
  readonly allow: AllowList;
}

/** The URL's host as a socket sees it: IPv6 literals without their brackets. */
export const hostOf = (url: URL): string => (url.hostname.startsWith('[') && url.hostname.endsWith(']') ? url.hostname.slice(1, -1) : url.hostname);

export const isIpLiteral = (url: URL): boolean => isIP(hostOf(url)) !== 0;

/** Parses `raw` (relative to `base`, for redirect locations) and applies the checks; throws `egress_blocked`. */
export function checkTarget(raw: string | URL, policy: TargetPolicy, base?: URL): URL {
  let url: URL;
  try {
    url = new URL(raw, base);
  } catch {
    throw blocked('scheme', 'not a valid absolute URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw blocked('scheme', `scheme ${url.protocol} is not allowed`);
  if (url.protocol === 'http:' && policy.httpsOnly) throw blocked('scheme', 'only https URLs are allowed');
  // Credentials in URLs end up in logs, and `http://trusted@evil/` is a classic reviewer trap.
  if (url.username !== '' || url.password !== '') throw blocked('scheme', 'URLs with user info are not allowed');
  // The WHATWG parser has already rewritten 2130706433, 0x7f.1, 0177.0.0.1, 127.1 and friends to
  // dotted decimal, and IPv6 to canonical hex, so what is judged here is what a socket would use.
  const host = hostOf(url);
  if (isIP(host) !== 0) {
    const verdict = classifyAddress(host, policy.allow);
    if (!verdict.allowed) throw addressBlocked(verdict.range, { address: verdict.address });
  }
  return url;
}
