/**
 * Where a relay call may go: the provider's base URL (the first, or the one a `Base-Url` header
 * names from the provider's list) joined with the caller's path. Anything that would leave that
 * base — dot segments, a scheme-relative or absolute path, a backslash, an encoded slash or dot
 * that a server might decode later — is refused before any connection is made.
 */
import { BulkheadError } from '../errors.js';

const refuse = (detail: string): never => {
  throw new BulkheadError('relay_target_not_allowed', detail);
};

export function relayTarget(baseUrls: readonly string[], requested: { path: string; query: string; baseUrl?: string | undefined }): URL {
  const first = baseUrls[0];
  if (first === undefined) return refuse('the provider has no base URL');
  let base = first;
  if (requested.baseUrl !== undefined) {
    const wanted = requested.baseUrl.replace(/\/+$/, '');
    const match = baseUrls.find((b) => b.replace(/\/+$/, '') === wanted);
    if (match === undefined) return refuse('Base-Url is not one of the provider\'s allowed base URLs');
    base = match;
  }
  const path = requested.path;
  if (path.length > 4096) refuse('path too long');
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused here
  if (/[\\\0-\x1f\x7f]/.test(path) || /%(2f|5c|00|2e)/i.test(path)) refuse('path contains a backslash, control character or encoded separator');
  if (path.startsWith('/') || /^[a-z][a-z0-9+.-]*:/i.test(path)) refuse('path must be relative to the provider\'s base URL');
  const segments = path.split('/');
  if (segments.some((s) => s === '.' || s === '..')) refuse('path must not contain dot segments');
  if (requested.query.length > 8192) refuse('query too long');

  const baseUrl = new URL(base);
  const basePath = baseUrl.pathname.replace(/\/+$/, '');
  const target = new URL(baseUrl.origin);
  target.pathname = `${basePath}/${path}`;
  target.search = requested.query;
  // Belt and braces: whatever URL parsing did, the result must still sit under the base.
  if (target.origin !== baseUrl.origin || !(target.pathname === basePath || target.pathname.startsWith(`${basePath}/`))) {
    refuse('the path would leave the provider\'s base URL');
  }
  return target;
}

/** `/v1/users/12345/repos` → `/v1/users/:id/repos`: the relay log keeps shapes, not identifiers. */
export function pathTemplate(pathname: string): string {
  return pathname
    .split('/')
    .map((segment) => (/^\d+$/.test(segment) || /^[0-9a-f-]{16,}$/i.test(segment) || (segment.length >= 12 && /\d/.test(segment) && /^[A-Za-z0-9_-]+$/.test(segment)) ? ':id' : segment))
    .join('/')
    .slice(0, 300);
}
