/** Allowed-CIDR checks for API keys, IPv4 and IPv6, on Node's own BlockList. */
import { BlockList, isIP } from 'node:net';
import { BulkheadError } from '../errors.js';

interface Cidr {
  readonly address: string;
  readonly prefix: number;
  readonly family: 'ipv4' | 'ipv6';
}

export function parseCidr(text: string): Cidr {
  const [address = '', prefixText, extra] = text.split('/');
  const version = isIP(address);
  const max = version === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (version === 0 || extra !== undefined || !(prefix >= 0 && prefix <= max)) {
    throw new BulkheadError('validation_failed', `"${text}" is not a CIDR such as 203.0.113.0/24 or 2001:db8::/32`);
  }
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

/** A client address as the socket reports it; IPv4-mapped IPv6 (`::ffff:a.b.c.d`) becomes IPv4. */
export function normaliseClientIp(ip: string): { address: string; family: 'ipv4' | 'ipv6' } | undefined {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(ip);
  const address = mapped?.[1] ?? ip;
  const version = isIP(address);
  if (version === 0) return undefined;
  return { address, family: version === 4 ? 'ipv4' : 'ipv6' };
}

/** Returns a predicate; an empty list allows every address. */
export function cidrMatcher(cidrs: readonly string[]): (ip: string) => boolean {
  if (cidrs.length === 0) return () => true;
  const list = new BlockList();
  for (const text of cidrs) {
    const cidr = parseCidr(text);
    list.addSubnet(cidr.address, cidr.prefix, cidr.family);
  }
  return (ip) => {
    const client = normaliseClientIp(ip);
    return client !== undefined && list.check(client.address, client.family);
  };
}
