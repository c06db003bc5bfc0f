import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../config.js';
import { formatApiKey } from '../identity/api-key-format.js';
import { startTestApp, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';

const problemsOf = (env: Record<string, string>): readonly string[] => {
  try {
    parseConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
};

describe('BULKHEAD_TRUST_PROXY', () => {
  it('takes false, a number of proxies in front, or a list of proxy addresses and ranges (IPv4 and IPv6)', () => {
    expect(parseConfig({}).trustProxy).toBe(false);
    expect(parseConfig({ BULKHEAD_TRUST_PROXY: 'false' }).trustProxy).toBe(false);
    expect(parseConfig({ BULKHEAD_TRUST_PROXY: '0' }).trustProxy).toBe(false);
    expect(parseConfig({ BULKHEAD_TRUST_PROXY: '1' }).trustProxy).toBe(1);
    expect(parseConfig({ BULKHEAD_TRUST_PROXY: '2' }).trustProxy).toBe(2);
    expect(parseConfig({ BULKHEAD_TRUST_PROXY: '10.0.0.5, 10.1.0.0/16,fd00::/8 , ::1' }).trustProxy).toEqual(['10.0.0.5', '10.1.0.0/16', 'fd00::/8', '::1']);
  });

  it('refuses true with the reason and the two choices, listed with every other problem', () => {
    const problems = problemsOf({ BULKHEAD_TRUST_PROXY: 'true', PORT: 'x' });
    expect(problems).toHaveLength(2);
    const trust = problems.find((p) => p.startsWith('BULKHEAD_TRUST_PROXY'));
    expect(trust).toMatch(/client writes/);
    expect(trust).toMatch(/number of proxies/);
    expect(trust).toMatch(/addresses/);
    expect(problems.some((p) => p.startsWith('PORT'))).toBe(true);
  });

  it('refuses entries that are not addresses or CIDR ranges, naming each, and ranges that trust every address', () => {
    const [bad] = problemsOf({ BULKHEAD_TRUST_PROXY: '10.0.0.5,proxy.internal,10.0.0.0/33,127.1,10.0.0.0/255.0.0.0' });
    expect(bad).toMatch(/"proxy\.internal"/);
    expect(bad).toMatch(/"10\.0\.0\.0\/33"/);
    expect(bad).toMatch(/"127\.1"/);
    expect(bad).toMatch(/"10\.0\.0\.0\/255\.0\.0\.0"/);
    expect(bad).not.toMatch(/"10\.0\.0\.5"/);
    for (const everyone of ['0.0.0.0/0', '::/0']) expect(problemsOf({ BULKHEAD_TRUST_PROXY: everyone })[0]).toMatch(/every address/);
    expect(problemsOf({ BULKHEAD_TRUST_PROXY: '-1' })).toHaveLength(1);
    expect(problemsOf({ BULKHEAD_TRUST_PROXY: ' , ' })).toHaveLength(1);
  });
});

// The proxy in front of Bulkhead in these tests: 10.0.0.5 (or fd00::7 over IPv6). The spoofing
// client from the issue connects from 127.0.0.1, which is not a trusted proxy.
const PROXY = '10.0.0.5';
const PROXY_V6 = 'fd00::7';
const settings: readonly (readonly [string, string])[] = [
  ['one proxy in front (hops = 1)', '1'],
  ['a list of proxy addresses', `${PROXY},fd00::/16`],
];

describe.each(backends)('the client address behind a proxy on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    describe.each(settings)('trusting %s', (_label, setting) => {
      let t: TestApp;
      beforeAll(async () => {
        t = await startTestApp(backend, { config: { trustProxy: parseConfig({ BULKHEAD_TRUST_PROXY: setting }).trustProxy } });
      });
      afterAll(async () => t.close());

      const list = (key: string, remoteAddress: string, forwardedFor?: string) =>
        t.request({ method: 'GET', url: '/v1/api-keys', token: key, remoteAddress, ...(forwardedFor === undefined ? {} : { headers: { 'x-forwarded-for': forwardedFor } }) });
      const outcome = (res: { statusCode: number; json: () => unknown }) => (res.statusCode === 200 ? 200 : [res.statusCode, (res.json() as { code: string }).code]);

      it('refuses a client that writes the allowed address into X-Forwarded-For itself (ip_not_allowed)', async () => {
        const { key } = await t.workspaceWithKey(['keys:manage'], { allowedCidrs: ['10.1.2.3/32'] });
        expect(outcome(await list(key, '127.0.0.1', '10.1.2.3, 127.0.0.1'))).toEqual([403, 'ip_not_allowed']);
        // Through the proxy, whatever the client wrote is left of the address the proxy saw.
        expect(outcome(await list(key, PROXY, '10.1.2.3, 192.0.2.9'))).toEqual([403, 'ip_not_allowed']);
      });

      it('takes the address the trusted proxy saw, over IPv4, IPv6 and IPv4-mapped sockets', async () => {
        const { key } = await t.workspaceWithKey(['keys:manage'], { allowedCidrs: ['10.1.2.3/32', '2001:db8::/32'] });
        expect(outcome(await list(key, PROXY, '10.1.2.3'))).toBe(200);
        expect(outcome(await list(key, PROXY, '198.51.100.1, 10.1.2.3'))).toBe(200);
        expect(outcome(await list(key, `::ffff:${PROXY}`, '10.1.2.3'))).toBe(200);
        expect(outcome(await list(key, PROXY_V6, '2001:db8::5'))).toBe(200);
        // Without the header the proxy's own address is the client's, and it is not allowed.
        expect(outcome(await list(key, PROXY))).toEqual([403, 'ip_not_allowed']);
      });

      it('cannot be made to forget failed authentications by rotating X-Forwarded-For (150 unknown keys)', async () => {
        const attacker = '203.0.113.77';
        const statuses: number[] = [];
        for (let i = 0; i < 150; i++) {
          const unknown = formatApiKey('live', randomBytes(32));
          const spoofed = `198.51.${String(i % 256)}.${String((i * 7) % 256)}`;
          statuses.push((await list(unknown, PROXY, `${spoofed}, ${attacker}`)).statusCode);
        }
        expect(statuses.filter((s) => s === 401)).toHaveLength(t.config.authFailuresPerMinute);
        expect(statuses.filter((s) => s === 429)).toHaveLength(150 - t.config.authFailuresPerMinute);
      });
    });
  });
});
