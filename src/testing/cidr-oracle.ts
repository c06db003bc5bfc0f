/**
 * An independent answer to "is CIDR `child` inside CIDR `parent`?" for tests of the narrowing rule:
 * a prefix range is inside another exactly when its first and last addresses are, and "inside" is
 * asked of `cidrMatcher` (Node's BlockList), the code that admits requests, not of the arithmetic
 * under test.
 */
import ipaddr from 'ipaddr.js';
import { cidrMatcher } from '../identity/cidr.js';

/** First and last address of a CIDR (a bare address is /32 or /128). */
export function cidrEnds(text: string): [string, string] {
  const [address = '', prefix] = text.split('/');
  const v6 = address.includes(':');
  // ipaddr.js reads `::a.b.c.d` as IPv4-mapped; the WHATWG serializer writes it as the socket reads it.
  const canonical = v6 ? new URL(`http://[${address}]/`).hostname.slice(1, -1) : address;
  const full = `${canonical}/${prefix ?? (v6 ? 128 : 32)}`;
  const kind = v6 ? ipaddr.IPv6 : ipaddr.IPv4;
  return [kind.networkAddressFromCIDR(full).toString(), kind.broadcastAddressFromCIDR(full).toString()];
}

export const cidrInside = (child: string, parent: string): boolean => cidrEnds(child).every(cidrMatcher([parent]));

/** Whether a key with `child` CIDRs is usable from no address its parent's `parent` CIDRs refuse (single-CIDR containment). */
export const cidrsWithin = (child: readonly string[], parent: readonly string[]): boolean =>
  parent.length === 0 || (child.length > 0 && child.every((c) => parent.some((p) => cidrInside(c, p))));
