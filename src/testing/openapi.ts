/** The OpenAPI document with its local `$ref`s replaced by what they point at, for tests that walk it. */
export function dereference<T>(doc: T): T {
  const root = doc as unknown;
  const at = (ref: string): unknown => {
    if (!ref.startsWith('#/')) throw new Error(`not a local reference: ${ref}`);
    return ref
      .slice(2)
      .split('/')
      .map((part) => part.replaceAll('~1', '/').replaceAll('~0', '~'))
      .reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], root);
  };
  const resolve = (node: unknown, depth: number): unknown => {
    if (depth > 64) throw new Error('reference cycle in the OpenAPI document');
    if (Array.isArray(node)) return node.map((item) => resolve(item, depth + 1));
    if (typeof node !== 'object' || node === null) return node;
    const ref = (node as { $ref?: unknown }).$ref;
    if (typeof ref === 'string') {
      const target = at(ref);
      if (target === undefined) throw new Error(`unresolvable reference ${ref}`);
      return resolve(target, depth + 1);
    }
    return Object.fromEntries(Object.entries(node).map(([key, value]) => [key, resolve(value, depth + 1)]));
  };
  return resolve(root, 0) as T;
}
