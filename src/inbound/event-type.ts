/**
 * The type an inbound request's event gets: a template of literal type text and up to two
 * placeholders, `{header:<name>}` (a request header) and `{body:<dot.path>}` (a string or number in
 * a JSON body), e.g. `github.{header:x-github-event}` → `github.push`, `stripe.{body:type}` →
 * `stripe.invoice.paid`.
 *
 * Substituted values come from the sender, so they are normalised into type syntax: lower-cased,
 * every run of other characters replaced by `_`, empty segments dropped, cut to 48 characters;
 * a missing value becomes `unknown`. The first segment must be literal, so a sender can never
 * choose the namespace (and never reach Bulkhead's own `bulkhead.` one).
 */
import type { IncomingHttpHeaders } from 'node:http';
import { isEventType } from '../routing/patterns.js';
import type { Scheme } from './schemes/index.js';

const PLACEHOLDER = /\{(header|body):([^{}]*)\}/g;
const HEADER_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]{1,100}$/;
const BODY_PATH = /^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,7}$/;
const MAX_VALUE = 48;
const MAX_PLACEHOLDERS = 2;
export const MAX_TEMPLATE_LENGTH = 100;
// Bulkhead's own operational events live here; inbound events may not.
const RESERVED_NAMESPACE = 'bulkhead';

export const defaultEventTypes: Record<Scheme, string> = {
  'standard-webhooks': 'webhook.{body:type}',
  github: 'github.{header:x-github-event}',
  stripe: 'stripe.{body:type}',
  slack: 'slack.{body:event.type}',
  hmac: 'webhook.received',
};

/** Why a template is unusable (empty when it is fine). */
export function templateProblems(template: string): string[] {
  const problems: string[] = [];
  if (template.length > MAX_TEMPLATE_LENGTH) problems.push(`eventType is longer than ${String(MAX_TEMPLATE_LENGTH)} characters`);
  const placeholders = [...template.matchAll(PLACEHOLDER)];
  if (placeholders.length > MAX_PLACEHOLDERS) problems.push(`eventType has more than ${String(MAX_PLACEHOLDERS)} placeholders`);
  for (const [text, kind, argument = ''] of placeholders) {
    if (kind === 'header' && !HEADER_NAME.test(argument)) problems.push(`${text}: a header placeholder names a lower-case header`);
    if (kind === 'body' && !BODY_PATH.test(argument)) problems.push(`${text}: a body placeholder is a dot path of letters, digits, _ and -`);
  }
  const sample = template.replace(PLACEHOLDER, 'x');
  if (!isEventType(sample)) problems.push('eventType must be dot-separated segments of a-z, 0-9, _ and -, with {header:…} or {body:…} placeholders');
  const first = template.split('.')[0] ?? '';
  if (first.includes('{')) problems.push('the first segment of eventType must be literal text (the namespace), not a placeholder');
  if (first === RESERVED_NAMESPACE) problems.push(`the ${RESERVED_NAMESPACE}. namespace is reserved for Bulkhead's operational events`);
  return problems;
}

function normalise(value: unknown): string {
  if (typeof value !== 'string' && typeof value !== 'number') return 'unknown';
  const text = String(value)
    .toLowerCase()
    .replace(/[^a-z0-9_.-]+/g, '_')
    .split('.')
    .filter((segment) => segment.length > 0)
    .join('.')
    .slice(0, MAX_VALUE)
    .replace(/\.+$/, '');
  return text.length > 0 ? text : 'unknown';
}

function atPath(json: unknown, path: string): unknown {
  let here: unknown = json;
  for (const key of path.split('.')) {
    if (here === null || typeof here !== 'object' || Array.isArray(here) || !Object.hasOwn(here, key)) return undefined;
    here = (here as Record<string, unknown>)[key];
  }
  return here;
}

/** The template with its placeholders filled in from the request (`json` is undefined unless the body was JSON). */
export function renderEventType(template: string, source: { headers: IncomingHttpHeaders; json: unknown }): string {
  return template.replace(PLACEHOLDER, (_text, kind: string, argument: string) => {
    if (kind === 'header') {
      const value = source.headers[argument];
      return normalise(Array.isArray(value) ? value[0] : value);
    }
    return normalise(source.json === undefined ? undefined : atPath(source.json, argument));
  });
}
