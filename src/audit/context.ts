import type { AuditActor } from './chain.js';

/** Who is acting and from where: passed from the HTTP edge (or CLI) into every mutating service call. */
export interface ActionContext {
  readonly actor: AuditActor;
  readonly requestId?: string | undefined;
  readonly ip?: string | undefined;
}
