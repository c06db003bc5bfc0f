/**
 * An egress refusal a setting can lift says which one (`BULKHEAD_EGRESS_ALLOW_CIDRS`), in its
 * detail and a `hint`, without revealing what a name resolved to.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import { checkTarget } from './target.js';
import { resolveJudged, type Resolver } from './resolve.js';
import type { EgressError } from './errors.js';

const caught = async (run: () => unknown): Promise<EgressError> => {
  try {
    await run();
  } catch (error) {
    return error as EgressError;
  }
  throw new Error('expected a refusal');
};

describe('egress refusal hints', () => {
  it('an IP literal names the setting and the range to add', async () => {
    const error = await caught(() => checkTarget('http://127.0.0.1:8080/hook', { httpsOnly: false, allow: [] }));
    expect(error.message).toBe('127.0.0.1 is a loopback address; for local development, allow it with BULKHEAD_EGRESS_ALLOW_CIDRS (e.g. 127.0.0.1/32)');
    expect(error.details).toMatchObject({ reason: 'address', range: 'loopback', address: '127.0.0.1', setting: 'BULKHEAD_EGRESS_ALLOW_CIDRS' });
    expect(error.details?.hint).toContain('BULKHEAD_EGRESS_ALLOW_CIDRS=127.0.0.1/32');
    const v6 = await caught(() => checkTarget('http://[fd00::1]/', { httpsOnly: false, allow: [] }));
    expect(v6.message).toContain('(e.g. fd00::1/128)');
  });

  it('a name gets the setting, never the address it resolved to', async () => {
    const resolver: Resolver = () => Promise.resolve([{ address: '10.1.2.3', family: 4 }]);
    const error = await caught(() => resolveJudged('internal.test', resolver, []));
    expect(error.message).toContain('BULKHEAD_EGRESS_ALLOW_CIDRS');
    expect(error.details?.hint).toContain('BULKHEAD_EGRESS_ALLOW_CIDRS');
    expect(JSON.stringify({ message: error.message, details: error.details })).not.toContain('10.1.2.3');
  });

  it('refusals no setting lifts carry no hint', async () => {
    const scheme = await caught(() => checkTarget('ftp://example.com/', { httpsOnly: false, allow: [] }));
    expect(scheme.details?.hint).toBeUndefined();
    const resolver: Resolver = () => Promise.resolve([{ address: 'not-an-address', family: 4 }]);
    expect((await caught(() => resolveJudged('bad.test', resolver, []))).details?.hint).toBeUndefined();
  });
});

describe.each(backends)('egress refusal hints over HTTP on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startTestApp(backend);
    });
    afterAll(async () => t.close());

    it('a destination on loopback is refused with the setting that allows it in detail and hint', async () => {
      const w = await t.workspaceWithKey(['*']);
      const res = await t.request({ method: 'POST', url: '/v1/destinations', token: w.key, json: { url: 'http://127.0.0.1:9/hook' } });
      expect(res.statusCode, res.body).toBe(422);
      const problem = res.json<{ code: string; detail: string; hint: string; setting: string }>();
      expect(problem).toMatchObject({ code: 'egress_blocked', setting: 'BULKHEAD_EGRESS_ALLOW_CIDRS' });
      expect(problem.detail).toContain('BULKHEAD_EGRESS_ALLOW_CIDRS');
      expect(problem.hint).toContain('BULKHEAD_EGRESS_ALLOW_CIDRS=127.0.0.1/32');
    });
  });
});
