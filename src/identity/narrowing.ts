/**
 * Delegation only narrows: a credential made by another credential (a key minted or rotated by a
 * key; later, an agent token exchanged for a narrower one) can do at most what its parent can.
 * Pure: no I/O, no clock.
 *
 * - Scopes: each requested scope must be covered by the parent's (`hasScope`: `r:write` covers
 *   `r:read`, `*` covers everything), and only `*` covers `*`.
 * - Allowed CIDRs (empty = every address): under a parent with CIDRs, each requested CIDR must lie
 *   inside one of the parent's. Containment in a union of several parent CIDRs is not recognised
 *   (refused, never wrongly allowed). An explicitly empty list under a bound parent is wider, so
 *   refused; an omitted list inherits the parent's.
 * - Expiry (null = never): no later than the parent's; an omitted expiry inherits the parent's.
 *
 * Addresses are compared the way `cidrMatcher` (Node's BlockList) matches them: one address space
 * in which IPv4 `a.b.c.d` is the IPv4-mapped `::ffff:a.b.c.d`, so `10.0.0.0/8` and
 * `::ffff:10.0.0.0/104` are the same range and `::/0` covers every IPv4 address. The
 * IPv4-compatible form `::a.b.c.d` is `::0a0b:0c0d`, not an IPv4 address (as BlockList reads it).
 */
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import { BulkheadError } from '../errors.js';
import { allScopes, hasScope } from './scopes.js';

/** What a credential may do. Shaped to grow (tools, audience, delegation depth) field by field. */
export interface Grant {
  readonly scopes: readonly string[];
  /** Empty: usable from every address. */
  readonly allowedCidrs: readonly string[];
  /** null: never expires. */
  readonly expiresAt: Date | null;
}

/** The grant of the admin token and the CLI: the root every key descends from. */
export const unrestricted: Grant = Object.freeze({ scopes: Object.freeze(['*']), allowedCidrs: Object.freeze([]), expiresAt: null });

/** What a delegate asks for. An omitted (undefined) restriction is inherited from the parent. */
export interface GrantRequest {
  readonly scopes: readonly string[];
  readonly allowedCidrs?: readonly string[] | undefined;
  readonly expiresAt?: Date | null | undefined;
}

/** The first field in which the request is wider than the parent. */
export type Refusal =
  | { readonly field: 'scopes'; readonly beyond: readonly string[] }
  | { readonly field: 'allowedCidrs'; readonly requested: readonly string[]; readonly beyond: readonly string[]; readonly parent: readonly string[] }
  | { readonly field: 'expiresAt'; readonly requested: Date | null; readonly parent: Date };

export type Narrowing = { readonly ok: true; readonly grant: Grant } | { readonly ok: false; readonly refusal: Refusal };

/** Every known scope the holder of `scopes` may hand out (and so may see on other keys). */
export function coveredScopes(scopes: readonly string[]): string[] {
  return allScopes.filter((s) => (s === '*' ? scopes.includes('*') : hasScope(scopes, s)));
}

export function narrow(parent: Grant, request: GrantRequest): Narrowing {
  const covered = new Set(coveredScopes(parent.scopes));
  const beyondScopes = request.scopes.filter((s) => !covered.has(s));
  if (beyondScopes.length > 0) return { ok: false, refusal: { field: 'scopes', beyond: beyondScopes } };

  const allowedCidrs = request.allowedCidrs ?? parent.allowedCidrs;
  if (parent.allowedCidrs.length > 0) {
    const ranges = parent.allowedCidrs.map(toRange);
    const beyond = allowedCidrs.filter((text) => {
      const child = toRange(text);
      return !ranges.some((range) => contains(range, child));
    });
    if (allowedCidrs.length === 0 || beyond.length > 0) {
      return { ok: false, refusal: { field: 'allowedCidrs', requested: allowedCidrs, beyond, parent: parent.allowedCidrs } };
    }
  }

  const expiresAt = request.expiresAt === undefined ? parent.expiresAt : request.expiresAt;
  if (parent.expiresAt !== null && (expiresAt === null || expiresAt > parent.expiresAt)) {
    return { ok: false, refusal: { field: 'expiresAt', requested: expiresAt, parent: parent.expiresAt } };
  }

  return { ok: true, grant: { scopes: request.scopes, allowedCidrs, expiresAt } };
}

/** The error a refusal is answered with: `insufficient_scope` or `restriction_exceeds_parent`. */
export function refusalError(refusal: Refusal): BulkheadError {
  switch (refusal.field) {
    case 'scopes':
      return new BulkheadError('insufficient_scope', 'a key cannot grant scopes it does not hold', { details: { scopes: refusal.beyond } });
    case 'allowedCidrs':
      return new BulkheadError(
        'restriction_exceeds_parent',
        refusal.requested.length === 0 ? 'a key bound to CIDRs cannot grant a key usable from every address' : 'each allowed CIDR must lie inside one of the granting key\'s',
        { details: { field: refusal.field, beyond: refusal.beyond, parent: refusal.parent } },
      );
    case 'expiresAt':
      return new BulkheadError('restriction_exceeds_parent', 'a key cannot grant a key that outlives it', {
        details: { field: refusal.field, requested: refusal.requested?.toISOString() ?? null, parent: refusal.parent.toISOString() },
      });
  }
}

/** A CIDR in the one 128-bit address space; undefined when unparseable (contains and is contained by nothing). */
type Range = { readonly network: ipaddr.IPv6; readonly prefix: number } | undefined;

function toRange(text: string): Range {
  const [address = '', prefixText, extra] = text.split('/');
  if (extra !== undefined || address.includes('%')) return undefined;
  const family = isIP(address);
  if (family === 0) return undefined;
  const bits = family === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? bits : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (!(prefix >= 0 && prefix <= bits)) return undefined;
  if (family === 4) return { network: ipaddr.IPv4.parse(address).toIPv4MappedAddress(), prefix: prefix + 96 };
  // ipaddr.js reads the dotted tail of `::a.b.c.d` as IPv4-mapped; the WHATWG serializer gives
  // pure hexadecimal groups, as the socket and BlockList read them.
  return { network: ipaddr.IPv6.parse(new URL(`http://[${address}]/`).hostname.slice(1, -1)), prefix };
}

function contains(outer: Range, inner: Range): boolean {
  return outer !== undefined && inner !== undefined && outer.prefix <= inner.prefix && inner.network.match(outer.network, outer.prefix);
}
