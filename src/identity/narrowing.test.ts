import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cidrsWithin } from '../testing/cidr-oracle.js';
import { type Grant, type GrantRequest, narrow, refusalError } from './narrowing.js';
import { allScopes, hasScope } from './scopes.js';

const T0 = Date.UTC(2030, 0, 1);
const grant = (scopes: string[], allowedCidrs: string[] = [], expiresAt: Date | null = null): Grant => ({ scopes, allowedCidrs, expiresAt });

// Small address spaces, so that random CIDRs often contain one another.
const v4 = fc.tuple(fc.constantFrom(10, 11), fc.nat(1), fc.nat(1), fc.nat(3)).map((o) => o.join('.'));
const v6 = fc.tuple(fc.nat(1), fc.nat(3)).map(([a, b]) => `2001:db8:${a}::${b}`);
const withPrefix = (address: fc.Arbitrary<string>, prefixes: fc.Arbitrary<number>) =>
  fc.oneof(fc.tuple(address, prefixes).map(([a, p]) => `${a}/${p}`), address);
const cidr = fc.oneof(
  withPrefix(v4, fc.oneof(fc.constantFrom(0, 7, 8, 15, 16, 24, 30, 31, 32), fc.integer({ min: 0, max: 32 }))),
  withPrefix(v6, fc.oneof(fc.constantFrom(0, 16, 32, 47, 48, 64, 126, 128), fc.integer({ min: 0, max: 128 }))),
  withPrefix(v4.map((a) => `::ffff:${a}`), fc.integer({ min: 80, max: 128 })),
  withPrefix(v4.map((a) => `::${a}`), fc.integer({ min: 80, max: 128 })),
);
const cidrs = fc.uniqueArray(cidr, { maxLength: 3 });
const expiry = fc.oneof(fc.constant(null), fc.nat(4).map((k) => new Date(T0 + k * 1000)));
const scopes = fc.subarray([...allScopes]);
const grants = fc.record({ scopes, allowedCidrs: cidrs, expiresAt: expiry });
const requests: fc.Arbitrary<GrantRequest> = fc.record(
  { scopes, allowedCidrs: fc.option(cidrs, { nil: undefined }), expiresAt: fc.option(expiry, { nil: undefined }) },
  { requiredKeys: ['scopes'] },
);

/** The rule restated without the implementation's arithmetic (CIDRs: see cidr-oracle.ts). */
function oracle(parent: Grant, request: GrantRequest): { ok: true; grant: Grant } | { ok: false; field: string } {
  const beyond = request.scopes.filter((s) => (s === '*' ? !parent.scopes.includes('*') : !hasScope(parent.scopes, s as (typeof allScopes)[number])));
  if (beyond.length > 0) return { ok: false, field: 'scopes' };
  const allowedCidrs = request.allowedCidrs ?? parent.allowedCidrs;
  if (!cidrsWithin(allowedCidrs, parent.allowedCidrs)) return { ok: false, field: 'allowedCidrs' };
  const expiresAt = request.expiresAt === undefined ? parent.expiresAt : request.expiresAt;
  if (parent.expiresAt !== null && (expiresAt === null || expiresAt > parent.expiresAt)) return { ok: false, field: 'expiresAt' };
  return { ok: true, grant: { scopes: request.scopes, allowedCidrs, expiresAt } };
}

describe('delegation only narrows', () => {
  it('grants exactly what is within the parent, inheriting omitted restrictions, and names the first wider field otherwise', () => {
    fc.assert(
      fc.property(grants, requests, (parent, request) => {
        const result = narrow(parent, request);
        const expected = oracle(parent, request);
        expect(result.ok ? { ok: true, grant: result.grant } : { ok: false, field: result.refusal.field }).toEqual(expected);
      }),
      { numRuns: 3000 },
    );
  });

  it('never widens along a chain, and a grant always narrows to itself', () => {
    fc.assert(
      fc.property(grants, requests, requests, (root, first, second) => {
        expect(narrow(root, root)).toEqual({ ok: true, grant: root });
        const child = narrow(root, first);
        if (!child.ok) return;
        const grandchild = narrow(child.grant, second);
        if (!grandchild.ok) return;
        // Explicit, so nothing is inherited: the grandchild must fit the root on its own.
        expect(narrow(root, grandchild.grant).ok).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('treats IPv4 and its IPv4-mapped IPv6 form as one address space, as the CIDR matcher does', () => {
    const within = (parent: string[], child: string[]) => narrow(grant(['*'], parent), { scopes: [], allowedCidrs: child }).ok;
    expect(within(['10.0.0.0/8'], ['::ffff:10.1.0.0/112'])).toBe(true);
    expect(within(['::ffff:10.0.0.0/104'], ['10.1.2.3'])).toBe(true);
    expect(within(['::/0'], ['10.0.0.0/8', '2001:db8::/32'])).toBe(true);
    expect(within(['0.0.0.0/0'], ['2001:db8::/32'])).toBe(false);
    expect(within(['0.0.0.0/0'], ['::ffff:0:0/96'])).toBe(true);
    expect(within(['::ffff:0:0/96'], ['::/0'])).toBe(false);
    // `::a.b.c.d` is IPv4-compatible, not IPv4: neither contains the other.
    expect(within(['10.0.0.0/8'], ['::10.1.2.3/128'])).toBe(false);
    expect(within(['::10.0.0.0/104'], ['10.1.2.3/32'])).toBe(false);
    // The address part need not be the network address: 10.9.9.9/8 is 10.0.0.0/8.
    expect(within(['10.9.9.9/8'], ['10.200.0.0/16'])).toBe(true);
    // Containment in the union of two parent CIDRs is not recognised (refused, never over-granted).
    expect(within(['10.0.0.0/25', '10.0.0.128/25'], ['10.0.0.0/24'])).toBe(false);
  });

  it('inherits omitted restrictions, refuses explicitly unrestricted ones under a restricted parent', () => {
    const parent = grant(['keys:manage', 'events:write'], ['127.0.0.18/32'], new Date(T0));
    expect(narrow(parent, { scopes: ['events:read'] })).toEqual({ ok: true, grant: { scopes: ['events:read'], allowedCidrs: ['127.0.0.18/32'], expiresAt: new Date(T0) } });
    const refused = (request: GrantRequest) => {
      const result = narrow(parent, request);
      if (result.ok) throw new Error('expected a refusal');
      const error = refusalError(result.refusal);
      return { code: error.code, status: error.status, details: error.details };
    };
    expect(refused({ scopes: ['*'] })).toEqual({ code: 'insufficient_scope', status: 403, details: { scopes: ['*'] } });
    expect(refused({ scopes: ['events:read'], allowedCidrs: [] })).toEqual({
      code: 'restriction_exceeds_parent', status: 403, details: { field: 'allowedCidrs', beyond: [], parent: ['127.0.0.18/32'] },
    });
    expect(refused({ scopes: [], allowedCidrs: ['127.0.0.18/32', '127.0.0.0/8'] })).toMatchObject({ details: { field: 'allowedCidrs', beyond: ['127.0.0.0/8'] } });
    expect(refused({ scopes: [], expiresAt: null })).toEqual({
      code: 'restriction_exceeds_parent', status: 403, details: { field: 'expiresAt', requested: null, parent: new Date(T0).toISOString() },
    });
    expect(refused({ scopes: [], expiresAt: new Date(T0 + 1) })).toMatchObject({ details: { field: 'expiresAt', requested: new Date(T0 + 1).toISOString() } });
  });
});
