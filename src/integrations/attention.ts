/**
 * Why an instance needs attention, computed when it is read (never stored, so it cannot go stale):
 * a connection slot left unbound, or bound to a connection that was deleted or is not active;
 * a destination or inbound source slot whose binding was deleted, or a destination that was
 * disabled. One query answers for any number of instances.
 */
import type { WorkspaceTx } from '../db/tenant-tx.js';

export type SlotKind = 'connection' | 'destination' | 'inboundSource';
export type AttentionReason = 'unbound' | 'missing' | 'needs_reauth' | 'revoked' | 'error' | 'disabled';

export interface Attention {
  readonly kind: SlotKind;
  readonly slot: string;
  readonly reason: AttentionReason;
}

/** Slot name → bound id, per kind. */
export interface Bindings {
  readonly connections: Readonly<Record<string, string>>;
  readonly destinations: Readonly<Record<string, string>>;
  readonly inboundSources: Readonly<Record<string, string>>;
}

/** The slot names a version declares. */
export interface DeclaredSlots {
  readonly connections: readonly string[];
  readonly destinations: readonly string[];
  readonly inboundSources: readonly string[];
}

/** What the bound ids are now: a missing id is deleted (or was never this workspace's). */
export interface BindingStatus {
  readonly connections: ReadonlyMap<string, string>;
  readonly destinations: ReadonlyMap<string, string>;
  readonly inboundSources: ReadonlyMap<string, string>;
}

export async function loadBindingStatus(tx: WorkspaceTx, bindings: readonly Bindings[]): Promise<BindingStatus> {
  const ids = (pick: (b: Bindings) => Readonly<Record<string, string>>) => [...new Set(bindings.flatMap((b) => Object.values(pick(b))))];
  const connections = ids((b) => b.connections);
  const destinations = ids((b) => b.destinations);
  const inboundSources = ids((b) => b.inboundSources);
  const status = { connections: new Map<string, string>(), destinations: new Map<string, string>(), inboundSources: new Map<string, string>() };
  if (connections.length + destinations.length + inboundSources.length === 0) return status;
  const { rows } = await tx.query<{ kind: 'c' | 'd' | 'i'; id: string; status: string }>(
    `SELECT 'c' AS kind, id, status FROM connections WHERE id = ANY ($1::text[])
     UNION ALL SELECT 'd', id, CASE WHEN enabled THEN 'active' ELSE 'disabled' END FROM destinations WHERE id = ANY ($2::text[])
     UNION ALL SELECT 'i', id, 'active' FROM inbound_sources WHERE id = ANY ($3::text[])`,
    [connections, destinations, inboundSources],
  );
  for (const r of rows) (r.kind === 'c' ? status.connections : r.kind === 'd' ? status.destinations : status.inboundSources).set(r.id, r.status);
  return status;
}

const reasonOf = (status: string | undefined): AttentionReason | null => {
  if (status === undefined) return 'missing';
  if (status === 'active') return null;
  return status === 'needs_reauth' || status === 'revoked' || status === 'error' || status === 'disabled' ? status : 'error';
};

export function attentionOf(slots: DeclaredSlots, bindings: Bindings, status: BindingStatus): Attention[] {
  const out: Attention[] = [];
  const check = (kind: SlotKind, declared: readonly string[], bound: Readonly<Record<string, string>>, current: ReadonlyMap<string, string>) => {
    for (const slot of declared) {
      const id = Object.hasOwn(bound, slot) ? bound[slot] : undefined;
      const reason = id === undefined ? 'unbound' : reasonOf(current.get(id));
      if (reason !== null) out.push({ kind, slot, reason });
    }
  };
  check('connection', slots.connections, bindings.connections, status.connections);
  check('destination', slots.destinations, bindings.destinations, status.destinations);
  check('inboundSource', slots.inboundSources, bindings.inboundSources, status.inboundSources);
  return out;
}
