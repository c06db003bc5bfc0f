import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkApiKey, formatApiKey } from './api-key-format.js';

const random = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((bytes) => Buffer.from(bytes));
const mode = fc.constantFrom('live' as const, 'test' as const);
const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

describe('API key format', () => {
  it('every generated key parses, with its prefix and 256 bits of body', () => {
    fc.assert(
      fc.property(mode, random, (m, bytes) => {
        const key = formatApiKey(m, bytes);
        expect(key).toMatch(new RegExp(`^bk_${m}_[0-9A-Za-z]{49}$`));
        expect(checkApiKey(key)).toEqual({ mode: m, displayPrefix: key.slice(0, 12) });
      }),
    );
  });

  it('different randomness gives different keys', () => {
    fc.assert(fc.property(random, random, (a, b) => {
      fc.pre(!a.equals(b));
      expect(formatApiKey('live', a)).not.toBe(formatApiKey('live', b));
    }));
  });

  it('any single-character change is refused before a lookup', () => {
    fc.assert(
      fc.property(mode, random, fc.nat(), fc.constantFrom(...Array.from(BASE62)), (m, bytes, at, replacement) => {
        const key = formatApiKey(m, bytes);
        const index = at % key.length;
        fc.pre(key[index] !== replacement);
        const typo = key.slice(0, index) + replacement + key.slice(index + 1);
        expect(() => checkApiKey(typo)).toThrow(expect.objectContaining({ code: expect.stringMatching(/^api_key_(checksum_invalid|malformed)$/) as unknown }) as Error);
      }),
      { numRuns: 500 },
    );
  });

  it('refuses short randomness and foreign formats', () => {
    expect(() => formatApiKey('live', Buffer.alloc(16))).toThrow(RangeError);
    for (const bad of ['', 'bk_live_', 'sk_live_abc', `bk_prod_${'a'.repeat(49)}`, `bk_live_${'a'.repeat(48)}`]) {
      expect(() => checkApiKey(bad)).toThrow(expect.objectContaining({ code: 'api_key_malformed' }) as Error);
    }
  });
});
