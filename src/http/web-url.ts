/**
 * URLs a browser is sent to or loads on Bulkhead's behalf (a connect session's `returnUrl`, a
 * tenant's logo). The check runs on what the URL parser makes of the input and the caller keeps
 * the parser's `href`, so what was checked is exactly what is used: backslashes, tabs and case
 * tricks are normalised away before the scheme and host are judged, never after.
 */
export interface WebUrlPolicy {
  /** Hosts (lower-case names or IP literals, IPv6 in brackets) that may use plain http. */
  readonly httpHosts: readonly string[];
}

const MAX_LENGTH = 2000;

/** The normalised URL, or the reason it is refused. */
export function checkWebUrl(raw: string, policy: WebUrlPolicy): { ok: true; url: URL } | { ok: false; reason: string } {
  if (raw.length > MAX_LENGTH) return { ok: false, reason: `longer than ${MAX_LENGTH} characters` };
  // Control characters and spaces are silently stripped or re-encoded by parsers; refuse them instead.
  // eslint-disable-next-line no-control-regex -- refusing control characters is the point
  if (/[\u0000-\u0020\u007f-\u009f\\]/.test(raw)) return { ok: false, reason: 'contains spaces, control characters or backslashes' };
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, reason: 'not an absolute URL' };
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return { ok: false, reason: `scheme ${url.protocol} is not allowed; use https` };
  if (url.username !== '' || url.password !== '' || /^[a-z]+:\/\/[^/?#]*@/i.test(raw)) return { ok: false, reason: 'must not carry credentials (user@host)' };
  if (raw.includes('#')) return { ok: false, reason: 'must not have a fragment' };
  if (url.hostname === '') return { ok: false, reason: 'has no host' };
  if (url.protocol === 'http:' && !policy.httpHosts.includes(url.hostname)) {
    return { ok: false, reason: `http is allowed only for hosts in BULKHEAD_CONNECT_HTTP_RETURN_HOSTS (${url.hostname} is not); use https` };
  }
  return { ok: true, url };
}
