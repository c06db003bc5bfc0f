/**
 * Signed checkpoints: the outside anchor a hash chain needs. A chain can show that an entry was
 * altered, but not that its tail was cut off together with its head (a rollback, a restored
 * backup, a second process overwriting the data folder). A checkpoint is the chain's (seq, hash)
 * at a moment, signed with an Ed25519 key the database does not hold; the platform keeps it
 * outside Bulkhead, and a later verify against it finds what is gone or rewritten.
 *
 * The signed bytes (docs/AUDIT.md gives the same, for verifiers outside Bulkhead) are UTF-8 text,
 * six lines, each ending in a line feed (0x0A), the last one too:
 *
 *     bulkhead.audit.checkpoint.v1
 *     <chain>       `platform` or the workspace id
 *     <seq>         decimal, no sign, no leading zeros
 *     <hash>        64 lower-case hex digits
 *     <at>          ISO 8601 UTC with milliseconds, `2025-01-31T12:00:00.000Z`
 *     <keyId>       16 lower-case hex digits
 *
 * None of the fields can hold a line feed (each is checked against its pattern), so the encoding
 * is unambiguous. `signature` is the standard base64 of the 64-byte Ed25519 signature (RFC 8032,
 * pure Ed25519, no pre-hash) over those bytes.
 */
import { createHash, createPrivateKey, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import type { AuditSigningKey } from '../config.js';
import { BulkheadError } from '../errors.js';
import { parseJson } from '../http/json.js';
import { idPattern } from '../ids.js';
import { PLATFORM_CHAIN } from './chain.js';

export const CHECKPOINT_FORMAT = 'bulkhead.audit.checkpoint.v1';

export interface Checkpoint {
  readonly chain: string;
  readonly seq: number;
  readonly hash: string;
  readonly at: string;
  readonly keyId: string;
  readonly signature: string;
}

export type UnsignedCheckpoint = Omit<Checkpoint, 'signature'>;

/** The exact bytes a checkpoint's signature covers. */
export function checkpointMessage(c: UnsignedCheckpoint): Buffer {
  return Buffer.from([CHECKPOINT_FORMAT, c.chain, String(c.seq), c.hash, c.at, c.keyId].map((line) => `${line}\n`).join(''), 'utf8');
}

// DER prefixes of an Ed25519 key (RFC 8410): PKCS#8 before the 32-byte seed, SPKI before the 32-byte public key.
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

const rawPublicKey = (key: KeyObject): Buffer => key.export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX.length);

/** A key's id: the first 16 hex digits of SHA-256 over its raw 32-byte public key. */
export const keyIdOf = (rawPublic: Buffer): string => createHash('sha256').update(rawPublic).digest('hex').slice(0, 16);

export interface PublicKeyView {
  readonly keyId: string;
  readonly version: number;
  readonly algorithm: 'Ed25519';
  /** Signs new checkpoints (only the highest version does); the others still verify older ones. */
  readonly current: boolean;
  /** SubjectPublicKeyInfo PEM: `openssl pkeyutl -verify -pubin -inkey` takes it as it is. */
  readonly publicKeyPem: string;
  /** Standard base64 of the raw 32-byte public key (libsodium, tweetnacl, Go's ed25519). */
  readonly publicKeyRaw: string;
  readonly jwk: { readonly kty: 'OKP'; readonly crv: 'Ed25519'; readonly x: string };
}

interface LoadedKey {
  readonly view: PublicKeyView;
  readonly publicKey: KeyObject;
  readonly privateKey: KeyObject | undefined;
}

function load(key: AuditSigningKey, current: boolean): LoadedKey {
  const privateKey = key.seed === undefined ? undefined : createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, key.seed]), format: 'der', type: 'pkcs8' });
  const publicKey = privateKey ? createPublicKey(privateKey) : createPublicKey({ key: Buffer.concat([SPKI_PREFIX, key.publicKey ?? Buffer.alloc(0)]), format: 'der', type: 'spki' });
  const raw = rawPublicKey(publicKey);
  return {
    publicKey,
    privateKey,
    view: {
      keyId: keyIdOf(raw),
      version: key.version,
      algorithm: 'Ed25519',
      current,
      publicKeyPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
      publicKeyRaw: raw.toString('base64'),
      jwk: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') },
    },
  };
}

export interface CheckpointSigner {
  /** Signs the chain head `(chain, seq, hash)` as of now, with the current key. */
  sign(head: { readonly chain: string; readonly seq: number; readonly hash: string }): Checkpoint;
  /**
   * Throws `checkpoint_invalid` unless the checkpoint was signed by one of this server's keys
   * and is for `chain` (`details.reason`: `unknown_key`, `bad_signature` or `wrong_chain`).
   */
  check(checkpoint: Checkpoint, chain: string): void;
  /** Every public key, the current one first. */
  publicKeys(): readonly PublicKeyView[];
}

export function createCheckpointSigner(keys: readonly AuditSigningKey[], now: () => Date): CheckpointSigner {
  const sorted = [...keys].sort((a, b) => b.version - a.version);
  const loaded = sorted.map((key, index) => load(key, index === 0));
  const current = loaded[0];
  if (current?.privateKey === undefined) throw new Error('the newest audit signing key has no private seed');
  const signingKey = current.privateKey;
  const byId = new Map(loaded.map((k) => [k.view.keyId, k]));
  if (byId.size !== loaded.length) throw new Error('two audit signing keys share a key id (the same key under two versions)');

  return {
    sign(head) {
      const unsigned: UnsignedCheckpoint = { chain: head.chain, seq: head.seq, hash: head.hash, at: now().toISOString(), keyId: current.view.keyId };
      return { ...unsigned, signature: sign(null, checkpointMessage(unsigned), signingKey).toString('base64') };
    },
    check(checkpoint, chain) {
      const key = byId.get(checkpoint.keyId);
      if (!key) {
        throw new BulkheadError('checkpoint_invalid', `the checkpoint names key ${checkpoint.keyId}, which is not one of this server's audit signing keys (GET /v1/audit-log/checkpoint-key lists them)`, { details: { reason: 'unknown_key', keyId: checkpoint.keyId } });
      }
      const { signature, ...unsigned } = checkpoint;
      if (!verify(null, checkpointMessage(unsigned), key.publicKey, Buffer.from(signature, 'base64'))) {
        throw new BulkheadError('checkpoint_invalid', 'the checkpoint\'s signature does not verify: it was changed after signing, or not signed by this server', { details: { reason: 'bad_signature' } });
      }
      if (checkpoint.chain !== chain) {
        throw new BulkheadError('checkpoint_invalid', `the checkpoint is for chain ${checkpoint.chain}, not this one (${chain})`, { details: { reason: 'wrong_chain', chain: checkpoint.chain } });
      }
    },
    publicKeys: () => loaded.map((k) => k.view),
  };
}

/** Field patterns; each also keeps line feeds out of the signed text. */
const PATTERNS = {
  chain: new RegExp(`^${PLATFORM_CHAIN}$|${idPattern('workspace')}`),
  hash: /^[0-9a-f]{64}$/,
  at: /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/,
  keyId: /^[0-9a-f]{16}$/,
  signature: /^[A-Za-z0-9+/]{86}==$/,
} as const;

/** Longest checkpoint text accepted (a real one is about 250 characters). */
export const MAX_CHECKPOINT_TEXT = 1024;

const invalid = (pointer: string, message: string): BulkheadError =>
  new BulkheadError('validation_failed', `checkpoint ${pointer}: ${message}`, { details: { parameter: 'checkpoint', pointer } });

/**
 * Reads an untrusted checkpoint (the `checkpoint` query parameter, a file given to the CLI):
 * JSON through the guarded parser, then exactly the six fields in their shapes. Throws a 400
 * `BulkheadError`, never anything else. The signature is checked separately (`check`).
 */
export function parseCheckpoint(text: string): Checkpoint {
  if (text.length > MAX_CHECKPOINT_TEXT) throw invalid('/', `longer than ${String(MAX_CHECKPOINT_TEXT)} characters; a checkpoint is about 250`);
  let value: unknown;
  try {
    value = parseJson(text.trim(), { location: 'query', maxDepth: 1 });
  } catch (error) {
    if (error instanceof BulkheadError && error.code !== 'malformed_json') throw error;
    throw new BulkheadError('malformed_json', 'the checkpoint is not valid JSON: pass the object GET …/checkpoint answered, unchanged', { cause: error });
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw invalid('/', 'must be a JSON object');
  const record = value as Record<string, unknown>;
  const known = ['chain', 'seq', 'hash', 'at', 'keyId', 'signature'];
  const extra = Object.keys(record).find((k) => !known.includes(k));
  if (extra !== undefined) throw invalid(`/${extra.replaceAll('~', '~0').replaceAll('/', '~1')}`, 'unknown field; a checkpoint has chain, seq, hash, at, keyId and signature');
  for (const field of known) if (!(field in record)) throw invalid(`/${field}`, 'is missing');
  const seq = record['seq'];
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) throw invalid('/seq', 'must be a whole number, 0 or more');
  const strings: Partial<Record<keyof typeof PATTERNS, string>> = {};
  for (const field of Object.keys(PATTERNS) as (keyof typeof PATTERNS)[]) {
    const v = record[field];
    if (typeof v !== 'string') throw invalid(`/${field}`, 'must be a string');
    if (!PATTERNS[field].test(v)) throw invalid(`/${field}`, `does not have the shape of a checkpoint's ${field}`);
    strings[field] = v;
  }
  const { chain = '', hash = '', at = '', keyId = '', signature = '' } = strings;
  return { chain, seq, hash, at, keyId, signature };
}
