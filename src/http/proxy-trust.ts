/**
 * Which peers may tell us the client's address (`X-Forwarded-For`). The client writes that header
 * too, so trust is given to proxies, never to the header: every entry is read right to left, each
 * trusted proxy vouches for the entry before it, and the client address is the first entry (from
 * the right) that no trusted proxy added. The walk itself is Fastify's (@fastify/proxy-addr); this
 * module only decides what "trusted" means.
 *
 *  - `false`: nobody; the client address is the socket's peer.
 *  - a number N: the N peers nearest to us are proxies, whoever they are. Only sound when Bulkhead
 *    cannot be reached except through those proxies: a client that connects directly is taken for
 *    the first proxy and may name any address it likes.
 *  - addresses and CIDR ranges: peers inside them are proxies, anything else is a client, so a
 *    client that connects directly is seen at its own address.
 *
 * "Trust everything" (`true`) is refused: it takes the left-most entry, which the client wrote.
 */
import type { FastifyServerOptions } from 'fastify';
import { parseCidr } from '../identity/cidr.js';

export type ProxyTrust = false | number | readonly string[];

const MAX_HOPS = 32;

/** Parses BULKHEAD_TRUST_PROXY; the message lists every bad entry at once. */
export function parseProxyTrust(raw: string): ProxyTrust {
  const text = raw.trim();
  if (text === 'false' || text === '0') return false;
  if (text === 'true') {
    throw new Error(
      'may no longer be true: that trusts every X-Forwarded-For entry, and the left-most one is whatever the client writes. ' +
        `Set the number of proxies in front of Bulkhead (e.g. 1, when it cannot be reached except through them) or their addresses and ranges (e.g. 10.0.0.5,fd00::/8)`,
    );
  }
  if (/^\d+$/.test(text)) {
    const hops = Number(text);
    if (hops > MAX_HOPS) throw new Error(`must be at most ${String(MAX_HOPS)} proxies, got ${text}`);
    return hops;
  }
  const entries = text.split(',').map((entry) => entry.trim()).filter((entry) => entry !== '');
  if (entries.length === 0) throw new Error('must be false, a number of proxies, or a comma-separated list of proxy addresses or CIDR ranges');
  const malformed: string[] = [];
  const everyone: string[] = [];
  for (const entry of entries) {
    let prefix: number;
    try {
      prefix = parseCidr(entry).prefix;
    } catch {
      malformed.push(`"${entry}"`);
      continue;
    }
    if (prefix === 0) everyone.push(`"${entry}"`);
  }
  const problems = [
    ...(malformed.length > 0 ? [`${malformed.join(', ')} ${malformed.length === 1 ? 'is not an address or CIDR range' : 'are not addresses or CIDR ranges'} (such as 10.0.0.5, 10.0.0.0/8 or fd00::/8)`] : []),
    ...(everyone.length > 0 ? [`${everyone.join(', ')} would trust every address, like true`] : []),
  ];
  if (problems.length > 0) throw new Error(`must be false, a number of proxies, or proxy addresses and CIDR ranges: ${problems.join('; ')}`);
  return Object.freeze(entries);
}

/**
 * The Fastify `trustProxy` option. A hop count is passed as a predicate on the position: Fastify
 * 5.12's own numeric `trustProxy` trusts nobody (a deliberate fail-closed choice of theirs), which
 * would silently make every request come from the proxy.
 */
export function fastifyTrustProxy(trust: ProxyTrust): NonNullable<FastifyServerOptions['trustProxy']> {
  if (trust === false) return false;
  if (typeof trust === 'number') {
    const hops = trust;
    return hops > 0 ? (_address: string, position: number) => position < hops : false;
  }
  return [...trust];
}
