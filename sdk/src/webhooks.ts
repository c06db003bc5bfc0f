/**
 * Verifying Bulkhead's deliveries in a receiver (Standard Webhooks, https://www.standardwebhooks.com):
 * HMAC-SHA256 over `${webhook-id}.${webhook-timestamp}.${body}` keyed with the base64 part of the
 * destination's `whsec_` secret, compared against each `v1,<base64>` entry of `webhook-signature`
 * (a secret rotation sends one entry per active secret). WebCrypto only, so it runs in Node, Deno,
 * Bun, workers and browsers; `crypto.subtle.verify` compares in constant time.
 */

export type WebhookHeaders = Headers | Readonly<Record<string, string | readonly string[] | undefined>>;

export type WebhookFailure = 'missing_headers' | 'invalid_secret' | 'timestamp_out_of_tolerance' | 'signature_invalid';

export class WebhookVerificationError extends Error {
  override readonly name = 'WebhookVerificationError';
  constructor(readonly reason: WebhookFailure, message: string) {
    super(message);
  }
}

export interface VerifyOptions {
  /** How far `webhook-timestamp` may be from now, either way (replay window). Default 300. */
  readonly toleranceSeconds?: number;
  /** The receiver's clock, for tests. */
  readonly now?: () => Date;
}

/** What the engine sends: the event's type, when it was accepted, and its payload. */
export interface WebhookEvent<T = unknown> {
  readonly type: string;
  readonly timestamp: string;
  readonly data: T;
}

function header(headers: WebhookHeaders, name: string): string | undefined {
  if (typeof (headers as Headers).get === 'function') return (headers as Headers).get(name) ?? undefined;
  const record = headers as Readonly<Record<string, string | readonly string[] | undefined>>;
  const key = Object.keys(record).find((k) => k.toLowerCase() === name);
  const value = key === undefined ? undefined : record[key];
  return typeof value === 'string' ? value : value?.[0];
}

function fromBase64(text: string): Uint8Array<ArrayBuffer> | undefined {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) return undefined;
  const binary = atob(text);
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

/**
 * Checks a delivery and returns its parsed body; throws `WebhookVerificationError` otherwise.
 * Pass the body exactly as received (the raw string or bytes), not a re-serialised object.
 */
export async function verifyWebhook<T = unknown>(secret: string, headers: WebhookHeaders, body: string | Uint8Array, options: VerifyOptions = {}): Promise<WebhookEvent<T>> {
  const id = header(headers, 'webhook-id');
  const timestamp = header(headers, 'webhook-timestamp');
  const signatures = header(headers, 'webhook-signature');
  if (!id || !timestamp || !signatures) throw new WebhookVerificationError('missing_headers', 'webhook-id, webhook-timestamp and webhook-signature are required');

  const key = fromBase64(secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret);
  if (key === undefined || key.length === 0) throw new WebhookVerificationError('invalid_secret', 'the secret is not whsec_ followed by base64');

  const now = Math.floor((options.now?.() ?? new Date()).getTime() / 1000);
  const tolerance = options.toleranceSeconds ?? 300;
  const sent = /^\d{1,12}$/.test(timestamp) ? Number(timestamp) : Number.NaN;
  if (!(Math.abs(now - sent) <= tolerance)) throw new WebhookVerificationError('timestamp_out_of_tolerance', `webhook-timestamp ${timestamp} is not within ${String(tolerance)}s of now`);

  const bytes = typeof body === 'string' ? new TextEncoder().encode(body) : body;
  const prefix = new TextEncoder().encode(`${id}.${timestamp}.`);
  const signed = new Uint8Array(prefix.length + bytes.length);
  signed.set(prefix);
  signed.set(bytes, prefix.length);

  const hmac = await crypto.subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['verify']);
  for (const entry of signatures.split(' ')) {
    const [version, value] = entry.split(',', 2);
    if (version !== 'v1' || value === undefined) continue; // v1a (asymmetric) and unknown versions: not ours
    const mac = fromBase64(value);
    if (mac !== undefined && (await crypto.subtle.verify('HMAC', hmac, mac, signed))) {
      return JSON.parse(typeof body === 'string' ? body : new TextDecoder().decode(body)) as WebhookEvent<T>;
    }
  }
  throw new WebhookVerificationError('signature_invalid', 'no v1 signature matches');
}
