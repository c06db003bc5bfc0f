/**
 * Structured logs (pino). Secrets never reach a log line: the authorization header is redacted by
 * path, and any field whose *name* looks secret is redacted wherever it appears, however deep.
 */
import { pino, type Logger } from 'pino';

const SECRET_NAME = /(pass(word)?|secret|token|api[-_]?key|authorization|cookie|credential|pepper|private[-_]?key|^key$)/i;
const REDACTED = '[redacted]';

function scrub(value: unknown, depth: number): unknown {
  if (depth > 8 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => scrub(v, depth + 1));
  // Only plain objects are rewritten; requests, errors and the like go to their serializers as they are.
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = SECRET_NAME.test(k) ? REDACTED : scrub(v, depth + 1);
  return out;
}

/**
 * Request URLs are logged without their query string (which can carry OAuth codes and states) and
 * with connect-session tokens cut out of the path.
 */
export function loggableUrl(url: string): string {
  const path = url.split('?')[0] ?? '';
  return path.replace(/^\/connect\/[^/]+/, '/connect/[redacted]');
}

interface RawRequestLike {
  method?: string;
  url?: string;
  hostname?: string;
  ip?: string;
  socket?: { remotePort?: number };
}

const requestSerializer = (req: RawRequestLike) => ({
  method: req.method,
  url: loggableUrl(req.url ?? ''),
  host: req.hostname,
  remoteAddress: req.ip,
  remotePort: req.socket?.remotePort,
});

export function createLogger(options: { level: string; destination?: pino.DestinationStream }): Logger {
  return pino(
    {
      level: options.level,
      redact: { paths: ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization'], censor: REDACTED },
      formatters: { log: (object) => scrub(object, 0) as Record<string, unknown> },
      serializers: { req: requestSerializer },
    },
    options.destination,
  );
}

export type { Logger };
