import { describe, expect, it } from 'vitest';
import { type Finished, summarise } from './health.js';
import type { AttemptOutcome } from './outcome.js';

const timing = { startedAt: new Date(0), durationMs: 1 };
const ok: AttemptOutcome = { kind: 'success', status: 200, body: Buffer.alloc(0), ...timing };
const fail: AttemptOutcome = { kind: 'failure', status: 500, body: Buffer.alloc(0), retryAfter: undefined, ...timing };
const gone: AttemptOutcome = { kind: 'gone', status: 410, body: Buffer.alloc(0), ...timing };
const f = (deliveryId: string, destinationId: string, outcome: AttemptOutcome): Finished => ({ deliveryId, destinationId, eventType: 'x', outcome });

describe('a batch of outcomes per destination, as the sequential rules read it', () => {
  it('counts the failures after the last success, keeps the last success, and sorts destinations by id', () => {
    const [a, b] = summarise([f('d1', 'dst_b', fail), f('d2', 'dst_a', ok), f('d3', 'dst_b', ok), f('d4', 'dst_b', fail), f('d5', 'dst_b', fail)]);
    expect(a).toMatchObject({ destinationId: 'dst_a', success: { deliveryId: 'd2' }, trailing: [], gone: false });
    expect(b?.destinationId).toBe('dst_b');
    expect(b?.success?.deliveryId).toBe('d3');
    expect(b?.trailing.map((x) => x.deliveryId)).toEqual(['d4', 'd5']);
    expect(b?.last.deliveryId).toBe('d5');
  });

  it('has no success when all failed, and a 410 anywhere in the batch stays (a later success does not undo it)', () => {
    const [only] = summarise([f('d1', 'dst', fail), f('d2', 'dst', gone)]);
    expect(only).toMatchObject({ success: undefined, gone: true });
    expect(only?.trailing).toHaveLength(2);
    const [healed] = summarise([f('d1', 'dst', gone), f('d2', 'dst', ok)]);
    expect(healed).toMatchObject({ success: { deliveryId: 'd2' }, trailing: [], gone: true });
  });
});
