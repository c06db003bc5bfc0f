import { describe, expect, it } from 'vitest';
import { secureRandomBytes } from './random.js';

describe('secureRandomBytes', () => {
  it('hands out each pooled byte once, as copies, across refills', () => {
    const draws = Array.from({ length: 2000 }, () => secureRandomBytes(10));
    // 20,000 bytes: several refills of the 4 KB pool. 80-bit draws never repeat by chance.
    expect(new Set(draws.map((d) => d.toString('hex'))).size).toBe(draws.length);
    const first = Buffer.from(draws[0] ?? Buffer.alloc(0));
    secureRandomBytes(4000);
    expect(draws[0]).toEqual(first); // a copy: later draws do not change it
    expect(draws.every((d) => d.length === 10)).toBe(true);
  });

  it('is not all zeros and covers the byte range', () => {
    const bytes = Buffer.concat(Array.from({ length: 400 }, () => secureRandomBytes(16)));
    expect(new Set(bytes).size).toBeGreaterThan(200);
    expect(secureRandomBytes(5000)).toHaveLength(5000);
  });
});
