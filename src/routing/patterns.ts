/**
 * Event types and the patterns rules match them with.
 *
 * A type is dot-separated segments of `[a-z0-9_-]` (e.g. `invoice.paid`), at most 200 characters.
 * A pattern is the same with `*` allowed as a whole segment: inside a pattern it matches exactly
 * one segment (`invoice.*.failed`); as the last segment it matches one or more (`invoice.*`
 * matches `invoice.paid` and `invoice.payment.failed`, not `invoice`); `*` alone matches every type.
 *
 * `bulkhead.` is Bulkhead's own namespace (operational events such as `bulkhead.delivery.failing`):
 * the platform cannot emit such types, and only a pattern that names it (`bulkhead.*`,
 * `bulkhead.delivery.failing`) matches them — a catch-all `*` rule does not quietly start
 * receiving alerts about its own destinations.
 */
export const EVENT_TYPE = /^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/;
export const EVENT_TYPE_PATTERN = /^(\*|[a-z0-9_-]+)(\.(\*|[a-z0-9_-]+))*$/;
export const MAX_TYPE_LENGTH = 200;

export const RESERVED_NAMESPACE = 'bulkhead';

export function isEventType(value: string): boolean {
  return value.length <= MAX_TYPE_LENGTH && EVENT_TYPE.test(value);
}

export const isReservedType = (type: string): boolean => type.split('.')[0] === RESERVED_NAMESPACE;

export function matchesPattern(pattern: string, type: string): boolean {
  const p = pattern.split('.');
  const t = type.split('.');
  if (t[0] === RESERVED_NAMESPACE && p[0] !== RESERVED_NAMESPACE) return false;
  for (let i = 0; i < p.length; i++) {
    const segment = p[i];
    if (segment === '*' && i === p.length - 1) return t.length >= p.length;
    if (i >= t.length) return false;
    if (segment !== '*' && segment !== t[i]) return false;
  }
  return p.length === t.length;
}

export const matchesAny = (patterns: readonly string[], type: string): boolean => patterns.some((p) => matchesPattern(p, type));
