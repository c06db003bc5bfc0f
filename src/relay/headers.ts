/**
 * Which headers cross the relay. Requests: an allow-list (content negotiation, conditionals,
 * idempotency, and the caller's own `x-` headers) — never the caller's Authorization (that is the
 * Bulkhead API key), cookies, forwarding headers or anything hop-by-hop. Responses: everything
 * except hop-by-hop and credential-bearing headers, and any header that echoes the secret.
 */
const FORWARDED_REQUEST_HEADERS = new Set([
  'accept',
  'accept-language',
  'content-type',
  // The body streams through unchanged, so its encoding label must travel with it.
  'content-encoding',
  'content-language',
  'if-match',
  'if-none-match',
  'if-modified-since',
  'if-unmodified-since',
  'idempotency-key',
  'prefer',
  'user-agent',
]);

const BLOCKED_X_HEADERS = /^x-(forwarded-|real-ip|bulkhead-|amz-security-token|api-key$|auth)/i;

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
const CREDENTIAL_BEARING = new Set(['set-cookie', 'set-cookie2', 'authorization', 'www-authenticate', 'proxy-authenticate-info', 'authentication-info']);

export function forwardedRequestHeaders(incoming: Readonly<Record<string, string | string[] | undefined>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [rawName, value] of Object.entries(incoming)) {
    const name = rawName.toLowerCase();
    if (value === undefined) continue;
    if (FORWARDED_REQUEST_HEADERS.has(name) || (name.startsWith('x-') && !BLOCKED_X_HEADERS.test(name))) {
      out[name] = Array.isArray(value) ? value.join(', ') : value;
    }
  }
  // Ask for an uncompressed body: the response is scrubbed of echoed secrets, which needs the bytes.
  out['accept-encoding'] = 'identity';
  return out;
}

export function returnedResponseHeaders(upstream: Readonly<Record<string, string | string[] | undefined>>, secrets: readonly string[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [rawName, value] of Object.entries(upstream)) {
    const name = rawName.toLowerCase();
    if (value === undefined || HOP_BY_HOP.has(name) || CREDENTIAL_BEARING.has(name)) continue;
    // The body may shrink when scrubbed, so its length is no longer known.
    if (name === 'content-length') continue;
    const values = Array.isArray(value) ? value : [value];
    if (values.some((v) => secrets.some((s) => s.length >= 6 && v.includes(s)))) continue;
    out[name] = value;
  }
  return out;
}
