/**
 * Audit storage for the two kinds of chain: one per workspace (inside the tenant transaction,
 * so RLS applies and the entry commits or rolls back with the action it records) and one for the
 * platform (tenant and workspace lifecycle, in the owner's transaction).
 */
import { newId, type Runtime } from '../ids.js';
import type { PlatformTx, WorkspaceTx } from '../db/tenant-tx.js';
import type { Queryable } from '../db/types.js';
import { type AuditEntry, type AuditRecordInput, ChainVerifier, PLATFORM_CHAIN, entryHash, genesisHash, type VerifyResult, withCheckpoint } from './chain.js';

interface ChainTables {
  readonly log: string;
  readonly head: string;
  /** SQL condition selecting the chain's head row / entries, with $1 bound to `key`. */
  readonly where: string;
  readonly key: string | null;
  readonly chain: string;
  readonly keyColumn: string;
}

const workspaceChain = (workspaceId: string): ChainTables => ({
  log: 'audit_log',
  head: 'audit_chain_heads',
  where: 'workspace_id = $1',
  key: workspaceId,
  chain: workspaceId,
  keyColumn: 'workspace_id',
});

const platformChain: ChainTables = {
  log: 'platform_audit_log',
  head: 'platform_audit_head',
  where: '$1::text IS NULL',
  key: null,
  chain: PLATFORM_CHAIN,
  keyColumn: 'singleton',
};

interface Row {
  seq: number;
  id: string;
  occurred_at: Date;
  actor_type: string;
  actor_id: string;
  action: string;
  target_type: string | null;
  target_id: string | null;
  outcome: string;
  request_id: string | null;
  ip: string | null;
  details: Record<string, unknown>;
  prev_hash: string;
  hash: string;
}

const COLUMNS = 'seq, id, occurred_at, actor_type, actor_id, action, target_type, target_id, outcome, request_id, ip, details, prev_hash, hash';

const fromRow = (chain: string, r: Row): AuditEntry => ({
  chain,
  seq: r.seq,
  id: r.id,
  occurredAt: r.occurred_at,
  actorType: r.actor_type,
  actorId: r.actor_id,
  action: r.action,
  targetType: r.target_type,
  targetId: r.target_id,
  outcome: r.outcome,
  requestId: r.request_id,
  ip: r.ip,
  details: r.details,
  prevHash: r.prev_hash,
  hash: r.hash,
});

async function append(tx: Queryable, t: ChainTables, runtime: Runtime, input: AuditRecordInput): Promise<AuditEntry> {
  // Lock the head row: appends to one chain are serialised, appends to different chains are not.
  const lock = `SELECT seq, hash FROM ${t.head} WHERE ${t.where} FOR UPDATE`;
  let head = (await tx.query<{ seq: number; hash: string }>(lock, [t.key])).rows[0];
  if (!head) {
    const genesis = genesisHash(t.chain);
    await tx.query(
      t.key === null
        ? `INSERT INTO ${t.head} (seq, hash) VALUES (0, $1) ON CONFLICT DO NOTHING`
        : `INSERT INTO ${t.head} (${t.keyColumn}, seq, hash) VALUES ($2, 0, $1) ON CONFLICT DO NOTHING`,
      t.key === null ? [genesis] : [genesis, t.key],
    );
    head = (await tx.query<{ seq: number; hash: string }>(lock, [t.key])).rows[0];
    if (!head) throw new Error('audit chain head vanished');
  }
  const unsigned: Omit<AuditEntry, 'hash'> = {
    chain: t.chain,
    seq: head.seq + 1,
    id: newId('audit', runtime),
    occurredAt: runtime.now(),
    actorType: input.actor.type,
    actorId: input.actor.id,
    action: input.action,
    targetType: input.target?.type ?? null,
    targetId: input.target?.id ?? null,
    outcome: input.outcome,
    requestId: input.requestId ?? null,
    ip: input.ip ?? null,
    details: input.details ?? {},
    prevHash: head.hash,
  };
  const entry: AuditEntry = { ...unsigned, hash: entryHash(unsigned) };
  const values = [entry.seq, entry.id, entry.occurredAt, entry.actorType, entry.actorId, entry.action, entry.targetType, entry.targetId, entry.outcome, entry.requestId, entry.ip, JSON.stringify(entry.details), entry.prevHash, entry.hash];
  if (t.key === null) {
    await tx.query(`INSERT INTO ${t.log} (${COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12::jsonb,$13,$14)`, values);
  } else {
    await tx.query(`INSERT INTO ${t.log} (workspace_id, ${COLUMNS}) VALUES ($15,$1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12::jsonb,$13,$14)`, [...values, t.key]);
  }
  await tx.query(`UPDATE ${t.head} SET seq = $2, hash = $3 WHERE ${t.where}`, [t.key, entry.seq, entry.hash]);
  return entry;
}

/** What a verify compares the chain against besides itself: a checkpoint whose signature was already checked. */
export interface CheckpointAnchor {
  readonly seq: number;
  readonly hash: string;
}

async function verify(tx: Queryable, t: ChainTables, anchor?: CheckpointAnchor, pageSize = 1000): Promise<VerifyResult> {
  const verifier = new ChainVerifier(t.chain);
  let after = 0;
  for (;;) {
    const page = await tx.query<Row>(`SELECT ${COLUMNS} FROM ${t.log} WHERE ${t.where} AND seq > $2 ORDER BY seq LIMIT $3`, [t.key, after, pageSize]);
    for (const row of page.rows) verifier.push(fromRow(t.chain, row));
    const last = page.rows.at(-1);
    if (!last || verifier.failed) break;
    after = last.seq;
  }
  const head = (await tx.query<{ seq: number; hash: string }>(`SELECT seq, hash FROM ${t.head} WHERE ${t.where}`, [t.key])).rows[0];
  const result = verifier.finish(head && head.seq > 0 ? head : null);
  if (anchor === undefined) return result;
  // Looked up directly, not taken from the walk: the walk stops at its first finding, and the
  // checkpoint's answer (is the entry it signed still there, unchanged?) stands on its own.
  if (anchor.seq === 0) return withCheckpoint(result, anchor, { entry: { id: null, hash: genesisHash(t.chain) }, highestBelow: 0 });
  const entry = (await tx.query<{ id: string; hash: string }>(`SELECT id, hash FROM ${t.log} WHERE ${t.where} AND seq = $2`, [t.key, anchor.seq])).rows[0] ?? null;
  const below = (await tx.query<{ seq: number | null }>(`SELECT max(seq) AS seq FROM ${t.log} WHERE ${t.where} AND seq < $2`, [t.key, anchor.seq])).rows[0]?.seq ?? 0;
  return withCheckpoint(result, anchor, { entry, highestBelow: below });
}

/** The chain's head as recorded (seq 0 and the genesis hash for a chain never written): what a checkpoint signs. */
async function head(tx: Queryable, t: ChainTables): Promise<{ chain: string; seq: number; hash: string }> {
  const row = (await tx.query<{ seq: number; hash: string }>(`SELECT seq, hash FROM ${t.head} WHERE ${t.where}`, [t.key])).rows[0];
  return row && row.seq > 0 ? { chain: t.chain, seq: row.seq, hash: row.hash } : { chain: t.chain, seq: 0, hash: genesisHash(t.chain) };
}

async function list(tx: Queryable, t: ChainTables, options: { afterSeq: number; limit: number }): Promise<AuditEntry[]> {
  const result = await tx.query<Row>(`SELECT ${COLUMNS} FROM ${t.log} WHERE ${t.where} AND seq > $2 ORDER BY seq LIMIT $3`, [t.key, options.afterSeq, options.limit]);
  return result.rows.map((r) => fromRow(t.chain, r));
}

export const workspaceAudit = {
  append: (tx: WorkspaceTx, runtime: Runtime, input: AuditRecordInput) => append(tx, workspaceChain(tx.workspaceId), runtime, input),
  verify: (tx: WorkspaceTx, anchor?: CheckpointAnchor) => verify(tx, workspaceChain(tx.workspaceId), anchor),
  current: (tx: WorkspaceTx) => head(tx, workspaceChain(tx.workspaceId)),
  list: (tx: WorkspaceTx, options: { afterSeq: number; limit: number }) => list(tx, workspaceChain(tx.workspaceId), options),
  /** The head, recorded in the platform chain when a workspace (and its chain) is deleted. */
  head: async (tx: PlatformTx, workspaceId: string) =>
    (await tx.query<{ seq: number; hash: string }>('SELECT seq, hash FROM audit_chain_heads WHERE workspace_id = $1', [workspaceId])).rows[0] ?? null,
};

export const platformAudit = {
  append: (tx: PlatformTx, runtime: Runtime, input: AuditRecordInput) => append(tx, platformChain, runtime, input),
  verify: (tx: PlatformTx, anchor?: CheckpointAnchor) => verify(tx, platformChain, anchor),
  current: (tx: PlatformTx) => head(tx, platformChain),
  list: (tx: PlatformTx, options: { afterSeq: number; limit: number }) => list(tx, platformChain, options),
};
