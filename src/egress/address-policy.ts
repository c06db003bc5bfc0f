/**
 * Which addresses outbound requests may reach: global unicast only. Pure: no I/O, no state.
 *
 * ipaddr.js knows the special-purpose registries (RFC 6890 and successors) and names the range an
 * address falls in; anything it does not call `unicast` is refused. On top of that:
 *
 *  - IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is judged as the IPv4 address it is, so the allow-list
 *    and the IPv4 ranges apply to it (a dual-stack socket to it reaches that IPv4 host);
 *  - IPv6 forms that carry an IPv4 address for compatibility, translation or tunnelling are
 *    refused outright, whatever they embed: IPv4-compatible ::/96 (deprecated), NAT64
 *    64:ff9b::/96 and 64:ff9b:1::/48, 6to4 2002::/16, Teredo 2001::/32, SIIT ::ffff:0:0/96. A
 *    server has no business calling through them, and judging "the embedded address" would make
 *    us depend on how a translator or relay we do not control interprets it;
 *  - IPv6 outside 2000::/3 (the only block IANA allocates as global unicast) is refused: ipaddr.js
 *    calls e.g. 4000::1 `unicast` only because it has no other name for it.
 *
 * Addresses are canonicalised before ipaddr.js sees them, so the address judged is the address the
 * socket will use: ipaddr.js reads `::a.b.c.d` as IPv4-mapped (a compatibility quirk), while the
 * operating system reads it as IPv4-compatible ::a.b.c.d — and resolvers do answer in that form
 * (c-ares prints ::7f00:1 as ::127.0.0.1).
 */
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

type Address = ipaddr.IPv4 | ipaddr.IPv6;
type Cidr = readonly [Address, number];

/** Parsed allow-list ranges (see `parseAllowList`). */
export type AllowList = readonly Cidr[];

export interface AddressVerdict {
  readonly allowed: boolean;
  /** Why it was refused: the range name (absent when allowed). */
  readonly reason?: string;
  /** The ipaddr.js range name (`unicast`, `loopback`, `private`, `rfc6052`, ...), or `invalid`. */
  readonly range: string;
  /** The address as judged, canonical (IPv4-mapped forms unwrapped): what a socket should connect to. */
  readonly address: string;
  readonly family: 4 | 6;
}

const GLOBAL_UNICAST_V6 = ipaddr.parseCIDR('2000::/3');
const IPV4_COMPATIBLE = ipaddr.parseCIDR('::/96');

/** Parses CIDR strings (`127.0.0.1/32`, `fd00::/8`); throws on the first invalid one, naming it. */
export function parseAllowList(cidrs: readonly string[]): AllowList {
  return cidrs.map((cidr): Cidr => {
    const trimmed = cidr.trim();
    if (!ipaddr.isValidCIDR(trimmed)) throw new Error(`egress allow-list: "${cidr}" is not a CIDR range such as 127.0.0.1/32 or ::1/128`);
    return ipaddr.parseCIDR(trimmed);
  });
}

const inRange = (address: Address, [network, bits]: Cidr): boolean => network.kind() === address.kind() && address.match(network, bits);

/**
 * The canonical form of an IP literal, or undefined when it is not one in the strict notation
 * sockets accept (`net.isIP`: dotted-decimal IPv4 without leading zeros, IPv6 without zone id).
 * Odd IPv4 notations in URLs (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`) never get here as
 * such: the WHATWG URL parser already rewrote them to dotted decimal.
 */
function canonical(raw: string): string | undefined {
  const literal = raw.startsWith('[') && raw.endsWith(']') ? raw.slice(1, -1) : raw;
  // A zone id (fe80::1%eth0) names a local interface: never a public destination.
  if (literal.includes('%')) return undefined;
  const family = isIP(literal);
  if (family === 4) return literal;
  if (family !== 6) return undefined;
  // The WHATWG IPv6 serializer: pure hexadecimal groups, so the dotted-quad quirk above cannot
  // apply. isIP() has accepted the literal, so this cannot throw.
  return new URL(`http://[${literal}]/`).hostname.slice(1, -1);
}

function rangeOf(address: Address): string {
  const named = address.range();
  if (named !== 'unicast' || address.kind() === 'ipv4') return named;
  if (inRange(address, IPV4_COMPATIBLE)) return 'ipv4Compatible';
  if (!inRange(address, GLOBAL_UNICAST_V6)) return 'reserved';
  return named;
}

/**
 * Judges one address (IPv4, IPv6, or a bracketed IPv6 URL host). `allow` (CIDR strings or a
 * parsed list) can permit ranges that are otherwise refused; it is matched against the judged
 * address, so `127.0.0.1/32` also covers `::ffff:127.0.0.1` but never `64:ff9b::7f00:1`.
 */
export function classifyAddress(ip: string, allow: AllowList | readonly string[] = []): AddressVerdict {
  const text = canonical(ip);
  if (text === undefined) return { allowed: false, reason: 'invalid', range: 'invalid', address: ip, family: ip.includes(':') ? 6 : 4 };
  const parsed = ipaddr.parse(text);
  const address = parsed instanceof ipaddr.IPv6 && parsed.isIPv4MappedAddress() ? parsed.toIPv4Address() : parsed;
  const family = address.kind() === 'ipv4' ? 4 : 6;
  const range = rangeOf(address);
  const ranges = allow.map((entry) => (typeof entry === 'string' ? (parseAllowList([entry])[0] as Cidr) : entry));
  if (range === 'unicast' || ranges.some((cidr) => inRange(address, cidr))) return { allowed: true, range, address: address.toString(), family };
  return { allowed: false, reason: range, range, address: address.toString(), family };
}
