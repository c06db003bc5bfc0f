/**
 * What a verified request's body becomes as an event payload:
 *  - a JSON content type (`application/json`, `…+json`) that parses: the parsed value;
 *  - `application/x-www-form-urlencoded` (Slack slash commands, some legacy senders): an object of
 *    the fields (a repeated field becomes an array of its values);
 *  - anything else, or JSON that does not parse or that the guarded parser refuses (too deep, NUL
 *    or unpaired surrogates, numbers a double cannot carry; see http/json.ts): `{ contentType,
 *    text }` when the body is UTF-8, else `{ contentType, base64 }`. The signed bytes are kept
 *    exactly, never rewritten into a value that differs from them.
 * Only verified bodies get here; a rejected body is never parsed or stored.
 */
import { parseJson } from '../http/json.js';

export interface InboundPayload {
  readonly payload: unknown;
  /** The parsed JSON body (or form fields), for `{body:…}` placeholders; undefined for other bodies. */
  readonly json: unknown;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

function text(body: Buffer): string | undefined {
  try {
    return utf8.decode(body);
  } catch {
    return undefined;
  }
}

export function toPayload(body: Buffer, contentType: string | undefined): InboundPayload {
  const type = mediaType(contentType);
  const asText = text(body);
  if ((type === 'application/json' || /^application\/[a-z0-9.+-]+\+json$/.test(type)) && asText !== undefined) {
    try {
      const json = parseJson(asText);
      return { payload: json, json };
    } catch {
      // A signed body that is not the JSON it claims to be is still what the sender signed: keep it as text.
    }
  }
  if (type === 'application/x-www-form-urlencoded' && asText !== undefined) {
    // A Map, then fromEntries (which defines own properties): a field named __proto__ stays a field.
    const fields = new Map<string, string | string[]>();
    for (const [name, value] of new URLSearchParams(asText)) {
      const existing = fields.get(name);
      fields.set(name, existing === undefined ? value : Array.isArray(existing) ? [...existing, value] : [existing, value]);
    }
    const object = Object.fromEntries(fields);
    return { payload: object, json: object };
  }
  const declared = contentType === undefined || contentType === '' ? null : contentType.slice(0, 200);
  return { payload: asText === undefined ? { contentType: declared, base64: body.toString('base64') } : { contentType: declared, text: asText }, json: undefined };
}
