import { createPublicKey, verify as edVerify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseAuditSigningKeys, parseConfig } from '../config.js';
import { BulkheadError } from '../errors.js';
import { type Checkpoint, createCheckpointSigner, keyIdOf, parseCheckpoint } from './checkpoint.js';

const WS = 'ws_0000000000000000000000000a';
const HASH = 'ab'.repeat(32);
const seed = (byte: number) => Buffer.alloc(32, byte);
const fixedNow = () => new Date('2025-01-31T12:00:00.000Z');

const codeOf = (fn: () => unknown): { code: string; details: unknown } => {
  try {
    fn();
  } catch (error) {
    if (error instanceof BulkheadError) return { code: error.code, details: error.details };
    throw error;
  }
  throw new Error('did not throw');
};

/**
 * The bytes docs/AUDIT.md says are signed, built here from the documentation alone (not from
 * checkpoint.ts), so a change to either shows up as a failure.
 */
const documentedMessage = (c: Checkpoint): Buffer =>
  Buffer.from(`bulkhead.audit.checkpoint.v1\n${c.chain}\n${String(c.seq)}\n${c.hash}\n${c.at}\n${c.keyId}\n`, 'utf8');

describe('audit checkpoints', () => {
  it('verify with node:crypto and nothing but the published public key (PEM, JWK or raw) and the documented bytes', () => {
    const signer = createCheckpointSigner([{ version: 1, seed: seed(1) }], fixedNow);
    const checkpoint = signer.sign({ chain: WS, seq: 42, hash: HASH });
    expect(checkpoint).toMatchObject({ chain: WS, seq: 42, hash: HASH, at: '2025-01-31T12:00:00.000Z' });
    const [published] = signer.publicKeys();
    if (!published) throw new Error('no key');
    expect(checkpoint.keyId).toBe(published.keyId);
    const signature = Buffer.from(checkpoint.signature, 'base64');
    expect(signature).toHaveLength(64);
    const fromPem = createPublicKey(published.publicKeyPem);
    const fromJwk = createPublicKey({ key: published.jwk, format: 'jwk' });
    const fromRaw = createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), Buffer.from(published.publicKeyRaw, 'base64')]), format: 'der', type: 'spki' });
    for (const key of [fromPem, fromJwk, fromRaw]) {
      expect(edVerify(null, documentedMessage(checkpoint), key, signature)).toBe(true);
      // Every signed field counts: the same signature over another seq does not verify.
      expect(edVerify(null, documentedMessage({ ...checkpoint, seq: 41 }), key, signature)).toBe(false);
    }
    // The key id is the documented fingerprint of the raw public key.
    expect(published.keyId).toBe(keyIdOf(Buffer.from(published.publicKeyRaw, 'base64')));
    expect(published.keyId).toMatch(/^[0-9a-f]{16}$/);
  });

  it('check refuses a changed field, a forged signature, an unknown key and another chain, each with its reason', () => {
    const signer = createCheckpointSigner([{ version: 1, seed: seed(1) }], fixedNow);
    const good = signer.sign({ chain: WS, seq: 7, hash: HASH });
    expect(() => { signer.check(good, WS); }).not.toThrow();
    for (const changed of [{ seq: 8 }, { hash: 'cd'.repeat(32) }, { at: '2025-02-01T00:00:00.000Z' }, { chain: 'ws_0000000000000000000000000b' }]) {
      const c = { ...good, ...changed };
      expect(codeOf(() => { signer.check(c, c.chain); })).toEqual({ code: 'checkpoint_invalid', details: { reason: 'bad_signature' } });
    }
    const otherServer = createCheckpointSigner([{ version: 1, seed: seed(2) }], fixedNow);
    const foreign = otherServer.sign({ chain: WS, seq: 7, hash: HASH });
    expect(codeOf(() => { signer.check(foreign, WS); })).toMatchObject({ code: 'checkpoint_invalid', details: { reason: 'unknown_key' } });
    // A foreign signature under our key id: the signature, not the id, decides.
    expect(codeOf(() => { signer.check({ ...foreign, keyId: good.keyId }, WS); })).toMatchObject({ details: { reason: 'bad_signature' } });
    // The chain id is signed: a genuine checkpoint of one chain does not vouch for another.
    expect(codeOf(() => { signer.check(good, 'platform'); })).toMatchObject({ code: 'checkpoint_invalid', details: { reason: 'wrong_chain', chain: WS } });
  });

  it('after a rotation new checkpoints carry the new key id, and those of the retired key (public half only) still verify', () => {
    const before = createCheckpointSigner([{ version: 1, seed: seed(1) }], fixedNow);
    const old = before.sign({ chain: WS, seq: 3, hash: HASH });
    const [oldKey] = before.publicKeys();
    if (!oldKey) throw new Error('no key');
    const keys = parseAuditSigningKeys(`1:public:${oldKey.publicKeyRaw},2:${seed(2).toString('base64')}`);
    const after = createCheckpointSigner(keys, fixedNow);
    expect(() => { after.check(old, WS); }).not.toThrow();
    const fresh = after.sign({ chain: WS, seq: 4, hash: HASH });
    expect(fresh.keyId).not.toBe(old.keyId);
    expect(after.publicKeys().map((k) => [k.version, k.current, k.keyId])).toEqual([[2, true, fresh.keyId], [1, false, old.keyId]]);
  });

  it('signing keys come from a versioned setting whose newest version must be able to sign; production requires it', () => {
    const k = (b: number) => seed(b).toString('base64');
    expect(parseAuditSigningKeys(`2:${k(2)},1:${k(1)}`).map((key) => key.version)).toEqual([1, 2]);
    expect(() => parseAuditSigningKeys(`1:${k(1)},2:public:${k(2)}`)).toThrow(/highest version signs/);
    expect(() => parseAuditSigningKeys('1:c2hvcnQ=')).toThrow(/32 bytes/);
    expect(() => parseAuditSigningKeys(`1:${k(1)},1:${k(2)}`)).toThrow(/unique/);
    expect(() => parseConfig({ BULKHEAD_ENV: 'production' })).toThrow(/BULKHEAD_AUDIT_SIGNING_KEYS is required/);
  });

  describe('parseCheckpoint refuses what is not a checkpoint, with a 400 code and a pointer', () => {
    const signer = createCheckpointSigner([{ version: 1, seed: seed(1) }], fixedNow);
    const good = signer.sign({ chain: WS, seq: 7, hash: HASH });
    const text = JSON.stringify(good);

    it('reads its own output back, surrounding white space and a trailing newline included', () => {
      expect(parseCheckpoint(`${text}\n`)).toEqual(good);
      expect(parseCheckpoint(JSON.stringify(signer.sign({ chain: 'platform', seq: 0, hash: HASH }))).chain).toBe('platform');
    });

    const cases: [string, string, string, string | undefined][] = [
      ['malformed JSON', '{"chain":', 'malformed_json', undefined],
      ['not JSON at all', 'checkpoint', 'malformed_json', undefined],
      ['an array', '[1,2]', 'validation_failed', '/'],
      ['an array of checkpoints', `[${text}]`, 'json_too_deep', undefined],
      ['a string', JSON.stringify(text), 'validation_failed', '/'],
      ['null', 'null', 'validation_failed', '/'],
      ['nested values', JSON.stringify({ ...good, seq: { $gt: 0 } }), 'json_too_deep', undefined],
      ['oversized', JSON.stringify({ ...good, pad: 'x'.repeat(2000) }), 'validation_failed', '/'],
      ['a missing field', JSON.stringify({ ...good, signature: undefined }), 'validation_failed', '/signature'],
      ['an unknown field', JSON.stringify({ ...good, note: 'x' }), 'validation_failed', '/note'],
      ['seq as a string', JSON.stringify({ ...good, seq: '7' }), 'validation_failed', '/seq'],
      ['a negative seq', JSON.stringify({ ...good, seq: -1 }), 'validation_failed', '/seq'],
      ['a fractional seq', JSON.stringify({ ...good, seq: 1.5 }), 'validation_failed', '/seq'],
      ['an unsafe seq', text.replace('"seq":7', '"seq":9007199254740993'), 'number_out_of_range', undefined],
      ['hash as a number', JSON.stringify({ ...good, hash: 1 }), 'validation_failed', '/hash'],
      ['a short hash', JSON.stringify({ ...good, hash: 'ab' }), 'validation_failed', '/hash'],
      ['a chain that is no chain id', JSON.stringify({ ...good, chain: 'ws_x\nplatform' }), 'validation_failed', '/chain'],
      ['a date not as the server writes it', JSON.stringify({ ...good, at: '2025-01-31' }), 'validation_failed', '/at'],
      ['a key id of another shape', JSON.stringify({ ...good, keyId: 'k1' }), 'validation_failed', '/keyId'],
      ['a signature that is not 64 bytes of base64', JSON.stringify({ ...good, signature: 'AAAA' }), 'validation_failed', '/signature'],
      ['NUL in a string', JSON.stringify({ ...good, chain: 'platform\u0000' }), 'text_invalid', undefined],
      ['prototype poisoning', text.replace('{', '{"__proto__":1,'), 'malformed_json', undefined],
    ];
    it.each(cases)('%s', (_name, input, code, pointer) => {
      const { code: got, details } = codeOf(() => parseCheckpoint(input));
      expect(got).toBe(code);
      if (pointer !== undefined) expect(details).toEqual({ parameter: 'checkpoint', pointer });
    });
  });
});
