/**
 * Which addresses outbound requests may reach: globally routable unicast only. ipaddr.js knows
 * the special-purpose registries (RFC 6890 and successors); `process()` first unwraps IPv4-mapped
 * and IPv4-compatible IPv6 forms (`::ffff:127.0.0.1`, `::127.0.0.1`) so they are judged as the
 * IPv4 address they are. IPv6 forms that embed an IPv4 address for translation or tunnelling
 * (NAT64 64:ff9b::/96, 6to4 2002::/16, Teredo 2001::/32) are refused outright: whatever they
 * embed, a server has no business calling through them. Anything not plain global unicast is
 * refused unless an operator allow-listed its range (local development and tests).
 */
import ipaddr from 'ipaddr.js';

export interface AddressVerdict {
  readonly allowed: boolean;
  /** The ipaddr.js range name (`loopback`, `private`, `rfc6052`, `unicast`, ...), or `invalid`. */
  readonly range: string;
  /** The address as judged (IPv4-mapped forms unwrapped). */
  readonly address: string;
}

/**
 * Ranges ipaddr.js calls unicast that a server must still never call: IPv4-compatible IPv6
 * (::/96, deprecated by RFC 4291, and how `[::127.0.0.1]` arrives once a URL parser normalised it).
 */
const ALSO_REFUSED: readonly [string, [ipaddr.IPv4 | ipaddr.IPv6, number]][] = [['ipv4Compatible', ipaddr.parseCIDR('::/96')]];

export type AllowList = readonly [ipaddr.IPv4 | ipaddr.IPv6, number][];

export function parseAllowList(cidrs: readonly string[]): AllowList {
  return cidrs.map((cidr) => {
    if (!ipaddr.isValidCIDR(cidr)) throw new Error(`"${cidr}" is not a CIDR range`);
    return ipaddr.parseCIDR(cidr);
  });
}

export function classifyAddress(raw: string, allow: AllowList = []): AddressVerdict {
  const literal = raw.startsWith('[') && raw.endsWith(']') ? raw.slice(1, -1) : raw;
  // Zone ids (fe80::1%eth0) name an interface: never a public destination.
  if (!ipaddr.isValid(literal) || literal.includes('%')) return { allowed: false, range: 'invalid', address: literal };
  const address = ipaddr.process(literal);
  const named = address.range();
  const extra = named === 'unicast' ? ALSO_REFUSED.find(([, [network, bits]]) => network.kind() === address.kind() && address.match(network, bits)) : undefined;
  const range = extra ? extra[0] : named;
  const allowListed = allow.some(([network, bits]) => network.kind() === address.kind() && address.match(network, bits));
  return { allowed: range === 'unicast' || allowListed, range, address: address.toString() };
}
