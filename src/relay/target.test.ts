import { describe, expect, it } from 'vitest';
import { pathTemplate, relayTarget } from './target.js';

const bases = ['https://api.example.com/v2', 'https://eu.api.example.com'];

describe('relay target', () => {
  it('joins the path to the first base URL, or to the one Base-Url names', () => {
    expect(relayTarget(bases, { path: 'users/1', query: '?a=1' }).toString()).toBe('https://api.example.com/v2/users/1?a=1');
    expect(relayTarget(bases, { path: 'users', query: '', baseUrl: 'https://eu.api.example.com/' }).toString()).toBe('https://eu.api.example.com/users');
  });

  it.each([
    ['../admin'],
    ['users/../../admin'],
    ['./x'],
    ['/etc/passwd'],
    ['//evil.example/x'],
    ['https://evil.example/x'],
    ['javascript:alert(1)'],
    ['users%2F..%2Fadmin'],
    ['users%2e%2e/admin'],
    ['a\\..\\b'],
    ['a\r\nHost: evil'],
    ['x%00y'],
  ])('refuses %j', (path) => {
    expect(() => relayTarget(bases, { path, query: '' })).toThrow(expect.objectContaining({ code: 'relay_target_not_allowed' }) as Error);
  });

  it('refuses a Base-Url outside the provider\'s list', () => {
    for (const baseUrl of ['https://evil.example', 'https://api.example.com', 'https://api.example.com/v2/../', 'http://api.example.com/v2']) {
      expect(() => relayTarget(bases, { path: 'x', query: '', baseUrl })).toThrow(expect.objectContaining({ code: 'relay_target_not_allowed' }) as Error);
    }
  });

  it('keeps path shapes, not identifiers, for the log', () => {
    expect(pathTemplate('/v2/users/12345/repos/3f2a9c1e-4b5d-4e6f-8a9b-0c1d2e3f4a5b')).toBe('/v2/users/:id/repos/:id');
    expect(pathTemplate('/v1/customers/cus_9s8d7f6g5h4j')).toBe('/v1/customers/:id');
    expect(pathTemplate('/v1/customers')).toBe('/v1/customers');
  });
});
