/**
 * Name resolution for outbound connections, and the socket `lookup` that pins a connection to
 * the addresses that were judged.
 *
 * Node calls a socket's `lookup` once per connection attempt and connects to what it is handed.
 * Ours resolves the name once, judges every answer, refuses the lot if any one is refused (an
 * attacker controlling DNS must not be able to smuggle a private answer next to a public one and
 * hope we pick well), and hands the socket exactly the judged addresses. There is no second
 * resolution between check and use, so a DNS answer that changes in between (rebinding) cannot
 * move the connection.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import type { LookupFunction } from 'node:net';
import { type AllowList, classifyAddress } from './address-policy.js';
import { addressBlocked, blocked, type EgressError } from './errors.js';

export interface ResolvedAddress {
  readonly address: string;
  readonly family: 4 | 6;
}

/** Every address a name resolves to (rejects, or returns none, when it does not resolve). */
export type Resolver = (hostname: string) => Promise<readonly ResolvedAddress[]>;

/** The operating system's resolver, as sockets would use it (honours /etc/hosts), all answers in its order. */
export const systemResolver: Resolver = async (hostname) =>
  (await dnsLookup(hostname, { all: true, verbatim: true })).map((answer) => ({ address: answer.address, family: answer.family === 6 ? 6 : 4 }));

/**
 * Resolves `hostname` once and judges every answer. Returns the judged addresses in canonical
 * form (what the socket will connect to); throws an `egress_blocked` error otherwise. The
 * resolved addresses are deliberately not in the error: the caller may be a tenant.
 */
export async function resolveJudged(hostname: string, resolve: Resolver, allow: AllowList): Promise<readonly ResolvedAddress[]> {
  let answers: readonly ResolvedAddress[];
  try {
    answers = await resolve(hostname);
  } catch (error) {
    throw blocked('resolution_failed', `${hostname} did not resolve`, { host: hostname }, error);
  }
  if (answers.length === 0) throw blocked('resolution_failed', `${hostname} did not resolve`, { host: hostname });
  return answers.map((answer) => {
    const verdict = classifyAddress(answer.address, allow);
    if (!verdict.allowed) throw addressBlocked(verdict.range, { host: hostname });
    return { address: verdict.address, family: verdict.family };
  });
}

/**
 * A `net`/`tls` `lookup` that connects only to judged addresses. `judge` is `resolveJudged` bound
 * to the client's resolver and allow-list (and its refusal counter).
 */
export function pinnedLookup(judge: (hostname: string) => Promise<readonly ResolvedAddress[]>): LookupFunction {
  return (hostname, options, callback) => {
    judge(hostname).then(
      (addresses) => {
        // Honour a family the socket asked for when we have one; otherwise offer what we have
        // (every one of them judged) and let the connect fail on its own if it cannot use it.
        const wanted = options.family === 4 || options.family === 6 ? addresses.filter((a) => a.family === options.family) : addresses;
        const usable = wanted.length > 0 ? wanted : addresses;
        const first = usable[0] as ResolvedAddress;
        if (options.all) callback(null, usable.map(({ address, family }) => ({ address, family })));
        else callback(null, first.address, first.family);
      },
      (error: unknown) => {
        callback(error as EgressError, '', 4);
      },
    );
  };
}
