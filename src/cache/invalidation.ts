/**
 * Cross-process cache invalidation. Each process caches resolved API keys and opened connection
 * credentials for `BULKHEAD_KEY_CACHE_TTL_MS`; a revocation, rotation or deletion made through one
 * process must not keep working on the others until that TTL runs out.
 *
 * Publishers are triggers in the database (migration 0010), not application code: every write
 * that changes what a cache holds — through any route, the CLI or an operator's SQL — sends a
 * `NOTIFY` in its own transaction, which PostgreSQL delivers exactly when (and only if) it
 * commits. Every process listens on one long-lived connection and evicts what a message names.
 * Notifications sent while a listener is disconnected are lost, so every (re)connect flushes
 * the caches whole; in between, the TTL bounds how stale a cache can be.
 */
import type { Database, Subscription } from '../db/types.js';
import type { Logger } from '../logging.js';

/** The channel the triggers notify on (keep in step with migration 0010). */
export const INVALIDATION_CHANNEL = 'bulkhead_invalidate';

/** What a change makes stale. Sent as JSON by the triggers; `kind` names the shape. */
export type Invalidation =
  /** A key was revoked, rotated (its expiry moved), changed or deleted. */
  | { readonly kind: 'api_key'; readonly keyId: string }
  /** A workspace was deleted or changed: its keys, connections and data keys. */
  | { readonly kind: 'workspace'; readonly workspaceId: string }
  /** A tenant's limits changed or it was deleted: every cached key carries its limits. */
  | { readonly kind: 'tenant'; readonly tenantId: string }
  /** A connection's credential, status or settings changed, or it was deleted. */
  | { readonly kind: 'connection'; readonly workspaceId: string; readonly connectionId: string };

const FIELDS: { readonly [K in Invalidation['kind']]: readonly (keyof Extract<Invalidation, { kind: K }> & string)[] } = {
  api_key: ['keyId'],
  workspace: ['workspaceId'],
  tenant: ['tenantId'],
  connection: ['workspaceId', 'connectionId'],
};

/** The message a payload carries, or undefined when it is not one this build knows. */
export function parseInvalidation(payload: string): Invalidation | undefined {
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const record = value as Record<string, unknown>;
  const kind = record['kind'];
  if (typeof kind !== 'string' || !Object.hasOwn(FIELDS, kind)) return undefined;
  const fields = FIELDS[kind as Invalidation['kind']];
  if (!fields.every((field) => typeof record[field] === 'string' && record[field] !== '')) return undefined;
  return Object.fromEntries([['kind', kind], ...fields.map((field) => [field, record[field]])]) as Invalidation;
}

/** What each message evicts, in this process. The composition root maps these to the caches. */
export interface CacheEvictions {
  apiKey(keyId: string): void;
  workspace(workspaceId: string): void;
  tenant(tenantId: string): void;
  connection(workspaceId: string, connectionId: string): void;
  /** Everything: after a (re)connect, or a message this build cannot read. */
  all(): void;
}

export function applyInvalidation(message: Invalidation, evict: CacheEvictions): void {
  switch (message.kind) {
    case 'api_key':
      evict.apiKey(message.keyId);
      return;
    case 'workspace':
      evict.workspace(message.workspaceId);
      return;
    case 'tenant':
      evict.tenant(message.tenantId);
      return;
    case 'connection':
      evict.connection(message.workspaceId, message.connectionId);
      return;
  }
}

export interface InvalidationListener {
  close(): Promise<void>;
}

/**
 * Listens once the database is ready and for as long as the process runs. Never throws: a lost
 * listener is logged and retried by the database layer, and the TTL bounds staleness meanwhile.
 */
export function listenForInvalidations(deps: { database: Promise<Database>; evict: CacheEvictions; logger: Logger }): InvalidationListener {
  const { evict, logger } = deps;
  let closed = false;
  let listening = false;
  let subscription: Subscription | undefined;
  void deps.database.then((db) => {
    if (closed) return;
    subscription = db.listen(INVALIDATION_CHANNEL, {
      onListening() {
        evict.all();
        if (!listening) logger.info('listening for cache invalidations');
        listening = true;
      },
      onNotification(payload) {
        const message = parseInvalidation(payload);
        if (message) {
          applyInvalidation(message, evict);
          return;
        }
        // A newer build's message kind (during a rolling upgrade) or a bad payload: forgetting
        // everything is always correct, only slower for a moment.
        logger.warn({ payload: payload.slice(0, 200) }, 'unreadable cache invalidation; flushing every cache');
        evict.all();
      },
      onDisconnected(error) {
        // Once per outage, not once per retry.
        if (listening) logger.warn({ err: error }, 'lost the cache invalidation listener; reconnecting (until then caches expire after BULKHEAD_KEY_CACHE_TTL_MS)');
        else logger.debug({ err: error }, 'cache invalidation listener not connected; retrying');
        listening = false;
      },
    });
  });
  return {
    // Does not wait for a database that never became ready (a failed start closes the app too).
    async close() {
      closed = true;
      await subscription?.close();
    },
  };
}
