import { describe, expect, it } from 'vitest';
import { cidrMatcher, normaliseClientIp, parseCidr } from './cidr.js';

describe('allowed CIDRs', () => {
  it('match IPv4 and IPv6 clients, including IPv4-mapped IPv6 socket addresses', () => {
    const allows = cidrMatcher(['10.1.0.0/16', '2001:db8:abcd::/48', '192.0.2.7']);
    expect(['10.1.2.3', '::ffff:10.1.200.9', '2001:db8:abcd:12::1', '192.0.2.7'].map(allows)).toEqual([true, true, true, true]);
    expect(['10.2.0.1', '::ffff:10.2.0.1', '2001:db8:abce::1', '192.0.2.8', 'not-an-ip', ''].map(allows)).toEqual([false, false, false, false, false, false]);
  });

  it('allow every address when the list is empty', () => {
    expect(cidrMatcher([])('198.51.100.1')).toBe(true);
  });

  it('refuse malformed CIDRs with validation_failed', () => {
    for (const bad of ['10.0.0.0/33', '2001:db8::/129', '10.0.0/8', '10.0.0.0/8/1', 'example.com/24', '0x0a.0.0.1/8', '']) {
      expect(() => parseCidr(bad)).toThrow(expect.objectContaining({ code: 'validation_failed' }) as Error);
    }
  });

  it('normalise mapped addresses to IPv4', () => {
    expect(normaliseClientIp('::ffff:127.0.0.1')).toEqual({ address: '127.0.0.1', family: 'ipv4' });
    expect(normaliseClientIp('::1')).toEqual({ address: '::1', family: 'ipv6' });
  });
});
