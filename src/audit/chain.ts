/**
 * The hash chain, independent of storage. Each entry's hash is SHA-256 over a canonical
 * encoding of all its fields *including* its chain, sequence number and the previous entry's
 * hash, so altering, removing, inserting or reordering any entry breaks the chain at exactly
 * that entry.
 */
import { createHash } from 'node:crypto';

export type ActorType = 'admin' | 'api_key' | 'cli' | 'system' | 'connect_session';

export interface AuditActor {
  readonly type: ActorType;
  readonly id: string;
}

export interface AuditRecordInput {
  readonly actor: AuditActor;
  readonly action: string;
  readonly target?: { readonly type: string; readonly id: string } | undefined;
  readonly outcome: 'success' | 'failure';
  readonly requestId?: string | undefined;
  readonly ip?: string | undefined;
  /** Metadata only: never a secret (the callers pass ids, names, scopes, counts). */
  readonly details?: Readonly<Record<string, unknown>> | undefined;
}

export interface AuditEntry {
  /** `platform` for the platform chain, else the workspace id. */
  readonly chain: string;
  readonly seq: number;
  readonly id: string;
  readonly occurredAt: Date;
  readonly actorType: string;
  readonly actorId: string;
  readonly action: string;
  readonly targetType: string | null;
  readonly targetId: string | null;
  readonly outcome: string;
  readonly requestId: string | null;
  readonly ip: string | null;
  readonly details: Readonly<Record<string, unknown>>;
  readonly prevHash: string;
  readonly hash: string;
}

export const PLATFORM_CHAIN = 'platform';

/** JSON with object keys sorted at every depth: the same value always encodes the same way. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    const encoded = JSON.stringify(value) as string | undefined;
    if (encoded === undefined) throw new TypeError(`cannot encode ${typeof value} canonically`);
    return encoded;
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

const sha256 = (text: string): string => createHash('sha256').update(text, 'utf8').digest('hex');

/** The first entry's `prevHash`: binds a chain to its owner so a whole chain cannot be transplanted. */
export function genesisHash(chain: string): string {
  return sha256(`bulkhead.audit.v1:genesis:${chain}`);
}

export function entryHash(entry: Omit<AuditEntry, 'hash'>): string {
  return sha256(
    canonicalJson([
      'bulkhead.audit.v1',
      entry.chain,
      entry.seq,
      entry.id,
      entry.occurredAt.toISOString(),
      entry.actorType,
      entry.actorId,
      entry.action,
      entry.targetType,
      entry.targetId,
      entry.outcome,
      entry.requestId,
      entry.ip,
      entry.details,
      entry.prevHash,
    ]),
  );
}

export type InvalidReason =
  /** the entry's content no longer matches its hash */
  | 'altered'
  /** the entry does not follow the one before it (an entry was removed, inserted or moved) */
  | 'chain_broken'
  /** sequence numbers skip: entries before this one were removed */
  | 'missing_entries'
  /** the chain ends before its recorded head: entries were removed from the end */
  | 'truncated'
  /**
   * the chain disagrees with a signed checkpoint: the entry at the checkpoint's seq is missing
   * (rolled back or truncated past it; `seq` is then the first missing one) or has another hash
   * (rewritten at or before it; `seq` is the checkpoint's)
   */
  | 'checkpoint_mismatch';

/** How the chain compares with the checkpoint a verify was given. */
export interface CheckpointComparison {
  readonly seq: number;
  readonly hash: string;
  readonly matched: boolean;
  /** The hash of the entry now at the checkpoint's seq, or null when there is none. */
  readonly foundHash: string | null;
}

export interface VerifyResult {
  readonly valid: boolean;
  readonly checked: number;
  readonly firstInvalid: { readonly seq: number; readonly id: string | null; readonly reason: InvalidReason } | null;
  readonly head: { readonly seq: number; readonly hash: string };
  readonly checkpoint?: CheckpointComparison;
}

/** Walks a chain in sequence order, a page at a time, remembering only the previous entry. */
export class ChainVerifier {
  private seq = 0;
  private prevHash: string;
  private checked = 0;
  private invalid: VerifyResult['firstInvalid'] = null;

  constructor(private readonly chain: string) {
    this.prevHash = genesisHash(chain);
  }

  get failed(): boolean {
    return this.invalid !== null;
  }

  push(entry: AuditEntry): void {
    if (this.invalid) return;
    this.checked++;
    const fail = (reason: InvalidReason) => {
      this.invalid = { seq: entry.seq, id: entry.id, reason };
    };
    if (entry.chain !== this.chain || entry.hash !== entryHash(entry)) fail('altered');
    else if (entry.seq > this.seq + 1) fail('missing_entries');
    else if (entry.seq !== this.seq + 1 || entry.prevHash !== this.prevHash) fail('chain_broken');
    this.seq = entry.seq;
    this.prevHash = entry.hash;
  }

  /** `head` is the separately stored chain head (null when the chain has never been written). */
  finish(head: { seq: number; hash: string } | null): VerifyResult {
    if (!this.invalid && head && (head.seq !== this.seq || head.hash !== this.prevHash)) {
      this.invalid = head.seq > this.seq
        ? { seq: this.seq + 1, id: null, reason: 'truncated' }
        : { seq: head.seq, id: null, reason: 'chain_broken' };
    }
    if (!this.invalid && !head && this.seq > 0) this.invalid = { seq: 1, id: null, reason: 'chain_broken' };
    return { valid: this.invalid === null, checked: this.checked, firstInvalid: this.invalid, head: { seq: this.seq, hash: this.prevHash } };
  }
}

/**
 * Folds a checkpoint comparison into a chain walk's result. The chain alone cannot see a suffix
 * removed together with its head, nor a suffix rewritten consistently; the checkpoint can, because
 * its (seq, hash) was signed while those entries existed. `found` is what the store holds now: the
 * entry at the checkpoint's seq, and the highest seq below it.
 */
export function withCheckpoint(
  result: VerifyResult,
  checkpoint: { readonly seq: number; readonly hash: string },
  found: { readonly entry: { readonly id: string | null; readonly hash: string } | null; readonly highestBelow: number },
): VerifyResult {
  const matched = found.entry !== null && found.entry.hash === checkpoint.hash;
  const comparison: CheckpointComparison = { seq: checkpoint.seq, hash: checkpoint.hash, matched, foundHash: found.entry?.hash ?? null };
  let firstInvalid = result.firstInvalid;
  if (!matched) {
    const divergence = found.entry === null
      ? { seq: found.highestBelow + 1, id: null, reason: 'checkpoint_mismatch' as const }
      : { seq: checkpoint.seq, id: found.entry.id, reason: 'checkpoint_mismatch' as const };
    // The walk's own finding wins at the same or an earlier seq: it says more about what happened.
    if (firstInvalid === null || divergence.seq < firstInvalid.seq) firstInvalid = divergence;
  }
  return { ...result, valid: firstInvalid === null, firstInvalid, checkpoint: comparison };
}
