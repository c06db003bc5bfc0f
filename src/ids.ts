/**
 * Prefixed, time-ordered ids (`ws_01jq...`): 48 bits of milliseconds then 80 random bits, in
 * lower-case Crockford base32. Sorting by id is sorting by creation time, which is what cursor
 * pagination walks; the prefix tells a reader (and a secret scanner) what an id names.
 */
const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';

export const idPrefixes = {
  tenant: 'ten',
  workspace: 'ws',
  apiKey: 'key',
  audit: 'aud',
  connection: 'con',
  connectSession: 'csn',
  relayCall: 'rly',
  operationalEvent: 'evt',
  event: 'evt',
  destination: 'dst',
  destinationSecret: 'dss',
  rule: 'rul',
  delivery: 'dlv',
  deliveryAttempt: 'att',
  inboundSource: 'inb',
  inboundSecret: 'ins',
  integration: 'itg',
  instance: 'ist',
  execution: 'exe',
} as const;

export type IdKind = keyof typeof idPrefixes;

export interface Runtime {
  /** The clock; tests pass a controllable one. */
  now(): Date;
  randomBytes(size: number): Buffer;
}

function encodeTime(ms: number): string {
  let out = '';
  let rest = ms;
  for (let i = 0; i < 10; i++) {
    out = ALPHABET.charAt(rest % 32) + out;
    rest = Math.floor(rest / 32);
  }
  return out;
}

function encodeRandom(bytes: Buffer): string {
  // 10 bytes = 80 bits = 16 base32 characters.
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET.charAt((value >>> (bits - 5)) & 31);
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  return out;
}

export function newId(kind: IdKind, runtime: Runtime): string {
  return `${idPrefixes[kind]}_${encodeTime(runtime.now().getTime())}${encodeRandom(runtime.randomBytes(10))}`;
}

/**
 * The smallest id of `kind` made at `at`: every id made earlier sorts below it, so "older than"
 * is a range of a primary key (retention walks the relay and operational logs this way).
 */
export function idBefore(kind: IdKind, at: Date): string {
  return `${idPrefixes[kind]}_${encodeTime(Math.max(0, at.getTime()))}`;
}

export function idPattern(kind: IdKind): string {
  return `^${idPrefixes[kind]}_[0-9a-z]{26}$`;
}

export function isId(kind: IdKind, value: string): boolean {
  return new RegExp(idPattern(kind)).test(value);
}
