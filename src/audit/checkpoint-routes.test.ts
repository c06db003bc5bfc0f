import { createPublicKey, verify as edVerify } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../testing/app.js';
import { backends } from '../testing/databases.js';
import { type AuditEntry, entryHash } from './chain.js';

interface Checkpoint { chain: string; seq: number; hash: string; at: string; keyId: string; signature: string }
interface Verify {
  valid: boolean;
  checked: number;
  firstInvalid: { seq: number; id: string | null; reason: string } | null;
  head: { seq: number; hash: string };
  checkpoint?: { seq: number; hash: string; matched: boolean; foundHash: string | null };
}
interface Row {
  seq: number; id: string; occurred_at: Date; actor_type: string; actor_id: string; action: string; target_type: string | null; target_id: string | null;
  outcome: string; request_id: string | null; ip: string | null; details: Record<string, unknown>; prev_hash: string; hash: string;
}

describe.each(backends)('audit checkpoints on $name', (backend) => {
  describe.skipIf(backend.unavailable !== null)(`(${backend.unavailable ?? 'available'})`, () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startTestApp(backend);
    });
    afterAll(async () => t.close());

    /** A workspace whose chain holds `n` entries, with helpers to checkpoint, verify and tamper as the database owner. */
    async function chainOf(n: number) {
      const ws = await t.workspaceWithKey(['*']);
      const append = async (count: number) => {
        for (let i = 0; i < count; i++) {
          const res = await t.request({ method: 'POST', url: '/v1/api-keys', token: ws.key, json: { name: `k${String(i)}`, scopes: ['events:read'] } });
          expect(res.statusCode).toBe(201);
        }
      };
      await append(n - 1);
      const checkpoint = async () => {
        const res = await t.request({ method: 'GET', url: '/v1/audit-log/checkpoint', token: ws.key });
        expect(res.statusCode).toBe(200);
        return res.json<Checkpoint>();
      };
      const verifyRaw = (cp?: unknown) =>
        t.request({ method: 'GET', url: `/v1/audit-log/verify${cp === undefined ? '' : `?checkpoint=${encodeURIComponent(typeof cp === 'string' ? cp : JSON.stringify(cp))}`}`, token: ws.key });
      const verify = async (cp?: unknown) => {
        const res = await verifyRaw(cp);
        expect(res.statusCode).toBe(200);
        return res.json<Verify>();
      };
      const owner = (sql: string, params: unknown[] = []) => t.database.db.owner.query<Row>(sql, [ws.workspaceId, ...params]);
      /** What a restored backup or an overwriting second process leaves: the tail gone, and the head moved back with it. */
      const rollBackTo = async (seq: number) => {
        await owner('DELETE FROM audit_log WHERE workspace_id = $1 AND seq > $2', [seq]);
        await owner('UPDATE audit_chain_heads SET seq = $2, hash = (SELECT hash FROM audit_log WHERE workspace_id = $1 AND seq = $2) WHERE workspace_id = $1', [seq]);
      };
      /** A consistent rewrite: entry `seq` changed and every hash from there on (and the head) recomputed, as anyone who read chain.ts can. */
      const rewrite = async (seq: number) => {
        const { rows } = await owner('SELECT * FROM audit_log WHERE workspace_id = $1 AND seq >= $2 ORDER BY seq', [seq]);
        let prevHash = (await owner('SELECT * FROM audit_log WHERE workspace_id = $1 AND seq = $2', [seq - 1])).rows[0]?.hash;
        if (prevHash === undefined) throw new Error('rewrite needs an entry before it');
        for (const r of rows) {
          const details = r.seq === seq ? { ...r.details, rewritten: true } : r.details;
          const unsigned: Omit<AuditEntry, 'hash'> = {
            chain: ws.workspaceId, seq: r.seq, id: r.id, occurredAt: r.occurred_at, actorType: r.actor_type, actorId: r.actor_id, action: r.action,
            targetType: r.target_type, targetId: r.target_id, outcome: r.outcome, requestId: r.request_id, ip: r.ip, details, prevHash,
          };
          const hash = entryHash(unsigned);
          await owner('UPDATE audit_log SET details = $3::jsonb, prev_hash = $4, hash = $5 WHERE workspace_id = $1 AND seq = $2', [r.seq, JSON.stringify(details), prevHash, hash]);
          prevHash = hash;
        }
        await owner('UPDATE audit_chain_heads SET hash = $2 WHERE workspace_id = $1', [prevHash]);
      };
      return { ...ws, append, checkpoint, verify, verifyRaw, owner, rollBackTo, rewrite };
    }

    it('a checkpoint signs the current head; entries appended after it still verify against it', async () => {
      const c = await chainOf(4);
      const cp = await c.checkpoint();
      expect(cp).toMatchObject({ chain: c.workspaceId, seq: 4 });
      expect(cp.hash).toBe((await c.verify()).head.hash);
      await c.append(3);
      const result = await c.verify(cp);
      expect(result).toMatchObject({ valid: true, checked: 7, firstInvalid: null, checkpoint: { seq: 4, hash: cp.hash, matched: true, foundHash: cp.hash } });
    });

    it('its signature verifies with node:crypto against the published key alone', async () => {
      const c = await chainOf(2);
      const cp = await c.checkpoint();
      const keys = await t.request({ method: 'GET', url: '/v1/audit-log/checkpoint-key' });
      expect(keys.statusCode).toBe(200);
      const body = keys.json<{ algorithm: string; keyId: string; publicKey: string; keys: { keyId: string; current: boolean }[] }>();
      expect(body).toMatchObject({ algorithm: 'Ed25519', keyId: cp.keyId, keys: [{ keyId: cp.keyId, current: true }] });
      const message = Buffer.from(`bulkhead.audit.checkpoint.v1\n${cp.chain}\n${String(cp.seq)}\n${cp.hash}\n${cp.at}\n${cp.keyId}\n`, 'utf8');
      expect(edVerify(null, message, createPublicKey(body.publicKey), Buffer.from(cp.signature, 'base64'))).toBe(true);
    });

    it('a rolled-back tail (entries and head together) passes a plain verify, and is checkpoint_mismatch at the first missing entry', async () => {
      const c = await chainOf(6);
      const cp = await c.checkpoint();
      await c.rollBackTo(3);
      // The defect: the chain alone is blind to it.
      expect(await c.verify()).toMatchObject({ valid: true, checked: 3, firstInvalid: null, head: { seq: 3 } });
      expect(await c.verify(cp)).toMatchObject({
        valid: false,
        firstInvalid: { seq: 4, id: null, reason: 'checkpoint_mismatch' },
        checkpoint: { seq: 6, matched: false, foundHash: null },
      });
    });

    it('a rolled-back tail written over by new entries is checkpoint_mismatch at the checkpoint, naming the entry found there', async () => {
      const c = await chainOf(5);
      const cp = await c.checkpoint();
      await c.rollBackTo(2);
      await c.append(4);
      const plain = await c.verify();
      expect(plain).toMatchObject({ valid: true, checked: 6 });
      const { rows } = await c.owner('SELECT * FROM audit_log WHERE workspace_id = $1 AND seq = 5');
      const result = await c.verify(cp);
      expect(result).toMatchObject({ valid: false, firstInvalid: { seq: 5, id: rows[0]?.id, reason: 'checkpoint_mismatch' }, checkpoint: { matched: false, foundHash: rows[0]?.hash } });
    });

    it('an entry rewritten at or before the checkpoint, with every later hash recomputed, is checkpoint_mismatch', async () => {
      for (const at of [2, 4]) {
        const c = await chainOf(4);
        const cp = await c.checkpoint();
        await c.append(2);
        await c.rewrite(at);
        expect(await c.verify()).toMatchObject({ valid: true, checked: 6 });
        expect((await c.verify(cp)).firstInvalid).toMatchObject({ seq: 4, reason: 'checkpoint_mismatch' });
      }
    });

    it('a rewrite after the checkpoint is outside what it vouches for', async () => {
      const c = await chainOf(3);
      const cp = await c.checkpoint();
      await c.append(2);
      await c.rewrite(4);
      expect(await c.verify(cp)).toMatchObject({ valid: true, checkpoint: { matched: true } });
    });

    it('a tampered entry before the checkpoint is reported where the chain breaks, and the checkpoint still compared', async () => {
      const c = await chainOf(5);
      const cp = await c.checkpoint();
      await c.owner("UPDATE audit_log SET details = '{\"name\":\"evil\"}'::jsonb WHERE workspace_id = $1 AND seq = 2");
      expect(await c.verify(cp)).toMatchObject({ valid: false, firstInvalid: { seq: 2, reason: 'altered' }, checkpoint: { matched: true } });
    });

    it('a forged signature, an unknown key and another chain\'s checkpoint are refused as checkpoint_invalid', async () => {
      const a = await chainOf(3);
      const b = await chainOf(3);
      const cp = await a.checkpoint();
      const refused = async (value: unknown) => {
        const res = await a.verifyRaw(value);
        expect([res.statusCode, res.headers['content-type']]).toEqual([422, 'application/problem+json; charset=utf-8']);
        return res.json<{ code: string; reason: string }>();
      };
      const sig = Buffer.from(cp.signature, 'base64');
      sig[0] = (sig[0] ?? 0) ^ 1;
      expect(await refused({ ...cp, signature: sig.toString('base64') })).toMatchObject({ code: 'checkpoint_invalid', reason: 'bad_signature' });
      expect(await refused({ ...cp, seq: 2 })).toMatchObject({ code: 'checkpoint_invalid', reason: 'bad_signature' });
      expect(await refused({ ...cp, keyId: '0123456789abcdef' })).toMatchObject({ code: 'checkpoint_invalid', reason: 'unknown_key' });
      // B's genuine checkpoint at A: the chain id is signed, so neither as it is nor relabelled does it pass.
      const ofB = await b.checkpoint();
      expect(await refused(ofB)).toMatchObject({ code: 'checkpoint_invalid', reason: 'wrong_chain' });
      expect(await refused({ ...ofB, chain: a.workspaceId })).toMatchObject({ code: 'checkpoint_invalid', reason: 'bad_signature' });
      const platform = (await t.admin('GET', '/v1/platform/audit-log/checkpoint')).json<Checkpoint>();
      expect(await refused(platform)).toMatchObject({ code: 'checkpoint_invalid', reason: 'wrong_chain' });
    });

    it('the checkpoint parameter refuses malformed, oversized, repeated and ill-typed input with 400 problem+json', async () => {
      const c = await chainOf(2);
      const cp = await c.checkpoint();
      const inputs: [string, string][] = [
        ['{"chain":', 'malformed_json'],
        ['not json', 'malformed_json'],
        [JSON.stringify({ ...cp, pad: 'x'.repeat(3000) }), 'validation_failed'],
        [JSON.stringify({ ...cp, seq: '2' }), 'validation_failed'],
        [JSON.stringify({ ...cp, seq: -1 }), 'validation_failed'],
        [JSON.stringify({ ...cp, hash: null }), 'validation_failed'],
        [JSON.stringify({ ...cp, extra: 1 }), 'validation_failed'],
        [JSON.stringify([cp]), 'json_too_deep'],
        [JSON.stringify({ ...cp, seq: { $ne: 0 } }), 'json_too_deep'],
        ['"just a string"', 'validation_failed'],
        [JSON.stringify({ ...cp, chain: 'platform\u0000' }), 'text_invalid'],
      ];
      for (const [input, code] of inputs) {
        const res = await c.verifyRaw(input);
        expect([input.slice(0, 40), res.statusCode, res.headers['content-type'], res.json<{ code: string }>().code]).toEqual([input.slice(0, 40), 400, 'application/problem+json; charset=utf-8', code]);
      }
      const twice = await t.request({ method: 'GET', url: `/v1/audit-log/verify?checkpoint=${encodeURIComponent(JSON.stringify(cp))}&checkpoint=${encodeURIComponent(JSON.stringify(cp))}`, token: c.key });
      expect([twice.statusCode, twice.json<{ code: string }>().code]).toEqual([400, 'validation_failed']);
      const unknown = await t.request({ method: 'GET', url: '/v1/audit-log/verify?at=1', token: c.key });
      expect(unknown.statusCode).toBe(400);
    });

    it('a checkpoint needs audit:read; the public key needs nothing', async () => {
      const other = await t.workspaceWithKey(['events:read']);
      const res = await t.request({ method: 'GET', url: '/v1/audit-log/checkpoint', token: other.key });
      expect([res.statusCode, res.json<{ code: string }>().code]).toEqual([403, 'insufficient_scope']);
      expect((await t.request({ method: 'GET', url: '/v1/audit-log/checkpoint' })).statusCode).toBe(401);
      expect((await t.request({ method: 'GET', url: '/v1/platform/audit-log/checkpoint', token: other.key })).statusCode).toBe(401);
    });

    it('an empty chain checkpoints at seq 0 and verifies against it', async () => {
      // A workspace's first entry comes with its first key: remove both it and the head, as for a chain never written.
      const c = await chainOf(1);
      await c.owner('DELETE FROM audit_log WHERE workspace_id = $1');
      await c.owner('DELETE FROM audit_chain_heads WHERE workspace_id = $1');
      const cp = await c.checkpoint();
      expect(cp.seq).toBe(0);
      expect(await c.verify(cp)).toMatchObject({ valid: true, checkpoint: { seq: 0, matched: true } });
    });

    it('the platform chain: a checkpoint, a rollback the plain verify misses, the mismatch, and a forged one refused', async () => {
      const verifyPlatform = async (cp?: unknown) => {
        const res = await t.admin('GET', `/v1/platform/audit-log/verify${cp === undefined ? '' : `?checkpoint=${encodeURIComponent(JSON.stringify(cp))}`}`);
        return { status: res.statusCode, body: res.json<Verify & { code?: string; reason?: string }>() };
      };
      await t.workspaceWithKey(['*']);
      const cpRes = await t.admin('GET', '/v1/platform/audit-log/checkpoint');
      expect(cpRes.statusCode).toBe(200);
      const cp = cpRes.json<Checkpoint>();
      expect(cp.chain).toBe('platform');
      expect(cp.seq).toBeGreaterThan(2);
      await t.workspaceWithKey(['*']);
      expect((await verifyPlatform(cp)).body).toMatchObject({ valid: true, checkpoint: { matched: true } });

      const back = cp.seq - 2;
      await t.database.db.owner.query('DELETE FROM platform_audit_log WHERE seq > $1', [back]);
      await t.database.db.owner.query('UPDATE platform_audit_head SET seq = $1, hash = (SELECT hash FROM platform_audit_log WHERE seq = $1)', [back]);
      expect((await verifyPlatform()).body).toMatchObject({ valid: true, firstInvalid: null });
      expect((await verifyPlatform(cp)).body).toMatchObject({ valid: false, firstInvalid: { seq: back + 1, reason: 'checkpoint_mismatch' } });

      expect(await verifyPlatform({ ...cp, seq: back })).toMatchObject({ status: 422, body: { code: 'checkpoint_invalid', reason: 'bad_signature' } });
      const ws = await t.workspaceWithKey(['audit:read']);
      const wsCp = (await t.request({ method: 'GET', url: '/v1/audit-log/checkpoint', token: ws.key })).json<Checkpoint>();
      expect(await verifyPlatform(wsCp)).toMatchObject({ status: 422, body: { code: 'checkpoint_invalid', reason: 'wrong_chain' } });
      expect((await t.admin('GET', '/v1/platform/audit-log/verify?checkpoint=%7B')).statusCode).toBe(400);
    });
  });
});
