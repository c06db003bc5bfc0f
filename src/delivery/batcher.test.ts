import { describe, expect, it } from 'vitest';
import { createBatcher } from './batcher.js';

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('the group-commit batcher', () => {
  it('sends what arrived in one turn together, and what arrives during a flush in the next one', async () => {
    const flushed: string[][] = [];
    let release: () => void = () => undefined;
    const batcher = createBatcher<string>(async (_key, items) => {
      flushed.push([...items]);
      if (flushed.length === 1) await new Promise<void>((resolve) => (release = resolve));
    }, 100);
    const first = [batcher.add('ws', 'a'), batcher.add('ws', 'b')];
    await tick();
    expect(flushed).toEqual([['a', 'b']]);
    const second = [batcher.add('ws', 'c'), batcher.add('ws', 'd'), batcher.add('ws', 'e')];
    await tick();
    expect(flushed).toHaveLength(1); // one flush per key at a time: c, d, e wait
    release();
    await Promise.all([...first, ...second]);
    expect(flushed).toEqual([['a', 'b'], ['c', 'd', 'e']]);
    expect(batcher.size()).toBe(0);
  });

  it('caps a batch, runs keys independently, allows maxConcurrent flushes per key, and rejects a failed batch\'s items only', async () => {
    const flushed: { key: string; items: number[] }[] = [];
    const concurrent = new Map<string, number>();
    const most = new Map<string, number>();
    const batcher = createBatcher<number>(async (key, items) => {
      concurrent.set(key, (concurrent.get(key) ?? 0) + 1);
      most.set(key, Math.max(most.get(key) ?? 0, concurrent.get(key) ?? 0));
      flushed.push({ key, items: [...items] });
      await tick();
      concurrent.set(key, (concurrent.get(key) ?? 1) - 1);
      if (items.includes(13)) throw new Error('boom');
    }, 3, 2);
    const results = await Promise.allSettled([...Array.from({ length: 7 }, (_, i) => batcher.add('a', i)), batcher.add('b', 13)]);
    expect(flushed.filter((f) => f.key === 'a').map((f) => f.items)).toEqual([[0, 1, 2], [3, 4, 5], [6]]);
    expect(Object.fromEntries(most)).toEqual({ a: 2, b: 1 }); // two of a's batches at once, never three
    expect(results.slice(0, 7).every((r) => r.status === 'fulfilled')).toBe(true);
    expect(results[7]).toMatchObject({ status: 'rejected', reason: new Error('boom') });
  });
});
