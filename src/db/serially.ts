/**
 * `Promise.all(items.map(fn))` for work that uses a transaction: a connection runs one query at a
 * time (node-postgres queues concurrent ones and is deprecating that), and opening or sealing a
 * value may query the workspace key through the same transaction.
 */
export async function mapSerially<T, R>(items: readonly T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (const item of items) out.push(await fn(item));
  return out;
}
