import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type AuditEntry, canonicalJson, ChainVerifier, entryHash, genesisHash, type VerifyResult } from './chain.js';

const CHAIN = 'ws_0000000000000000000000000a';

/** Builds a valid chain from arbitrary actions and details. */
function buildChain(items: { action: string; details: Record<string, unknown> }[]): AuditEntry[] {
  const entries: AuditEntry[] = [];
  let prevHash = genesisHash(CHAIN);
  items.forEach((item, index) => {
    const unsigned = {
      chain: CHAIN,
      seq: index + 1,
      id: `aud_${String(index).padStart(26, '0')}`,
      occurredAt: new Date(1_700_000_000_000 + index * 1000),
      actorType: 'api_key',
      actorId: 'key_x',
      action: item.action,
      targetType: null,
      targetId: null,
      outcome: 'success',
      requestId: null,
      ip: null,
      details: item.details,
      prevHash,
    };
    const entry = { ...unsigned, hash: entryHash(unsigned) };
    entries.push(entry);
    prevHash = entry.hash;
  });
  return entries;
}

function verify(entries: AuditEntry[], head: { seq: number; hash: string } | null): VerifyResult {
  const verifier = new ChainVerifier(CHAIN);
  for (const entry of entries) verifier.push(entry);
  return verifier.finish(head);
}

const headOf = (entries: AuditEntry[]) => {
  const last = entries.at(-1);
  return last ? { seq: last.seq, hash: last.hash } : null;
};

const items = fc.array(
  fc.record({ action: fc.stringMatching(/^[a-z_.]{1,20}$/), details: fc.dictionary(fc.string({ maxLength: 8 }), fc.oneof(fc.integer(), fc.string(), fc.boolean())) }),
  { minLength: 2, maxLength: 12 },
);

describe('the audit hash chain', () => {
  it('encodes objects canonically whatever their key order', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), (value) => {
        const reversed = Object.fromEntries(Object.entries(value).reverse());
        expect(canonicalJson(reversed)).toBe(canonicalJson(value));
      }),
    );
  });

  it('verifies an untouched chain', () => {
    fc.assert(fc.property(items, (list) => {
      const chain = buildChain(list);
      expect(verify(chain, headOf(chain))).toMatchObject({ valid: true, checked: chain.length, firstInvalid: null });
    }));
  });

  it('detects a change to any field of any entry at exactly that entry', () => {
    const fields = ['id', 'action', 'actorId', 'outcome', 'details', 'occurredAt', 'prevHash'] as const;
    fc.assert(
      fc.property(items, fc.nat(), fc.constantFrom(...fields), (list, at, field) => {
        const chain = buildChain(list);
        const index = at % chain.length;
        const original = chain[index] as AuditEntry;
        const changed: Record<(typeof fields)[number], unknown> = {
          id: `${original.id}x`,
          action: `${original.action}x`,
          actorId: 'key_attacker',
          outcome: 'failure',
          details: { ...original.details, injected: true },
          occurredAt: new Date(original.occurredAt.getTime() + 1),
          prevHash: '0'.repeat(64),
        };
        chain[index] = { ...original, [field]: changed[field] };
        expect(verify(chain, headOf(buildChain(list))).firstInvalid?.seq).toBe(index + 1);
      }),
    );
  });

  it('detects a removed entry at the next one, or as truncation when it was the last', () => {
    fc.assert(
      fc.property(items, fc.nat(), (list, at) => {
        const chain = buildChain(list);
        const head = headOf(chain);
        const index = at % chain.length;
        chain.splice(index, 1);
        const result = verify(chain, head);
        if (index === list.length - 1) expect(result.firstInvalid).toMatchObject({ seq: index + 1, reason: 'truncated' });
        else expect(result.firstInvalid).toMatchObject({ seq: index + 2, reason: 'missing_entries' });
      }),
    );
  });

  it('detects two swapped entries at the first of them', () => {
    fc.assert(
      fc.property(items, fc.nat(), fc.nat(), (list, x, y) => {
        const chain = buildChain(list);
        const head = headOf(chain);
        const [i, j] = [x % chain.length, y % chain.length].sort((a, b) => a - b) as [number, number];
        fc.pre(i !== j);
        // Storage orders by seq, so a reordering shows up as entries trading places under their seq numbers.
        const [first, second] = [chain[i] as AuditEntry, chain[j] as AuditEntry];
        chain[i] = { ...second, seq: first.seq };
        chain[j] = { ...first, seq: second.seq };
        expect(verify(chain, head).firstInvalid?.seq).toBe(i + 1);
      }),
    );
  });

  it('binds a chain to its owner: a chain moved to another workspace fails at its first entry', () => {
    const chain = buildChain([{ action: 'a', details: {} }, { action: 'b', details: {} }]);
    const verifier = new ChainVerifier('ws_0000000000000000000000000b');
    for (const entry of chain) verifier.push(entry);
    expect(verifier.finish(headOf(chain)).firstInvalid).toMatchObject({ seq: 1 });
  });
});
