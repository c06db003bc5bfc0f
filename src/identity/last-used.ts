/**
 * `lastUsedAt` without a write per request: uses are collected in memory and written per
 * workspace every `flushMs` (and on shutdown). Losing up to one interval of "last used" times in
 * a crash is the accepted trade.
 */
import type { WithWorkspace } from '../db/tenant-tx.js';

export interface LastUsedRecorder {
  record(workspaceId: string, keyId: string, at: Date): void;
  flush(): Promise<void>;
  stop(): Promise<void>;
}

export function createLastUsedRecorder(deps: {
  withWorkspace: WithWorkspace;
  flushMs: number;
  onError: (error: unknown) => void;
}): LastUsedRecorder {
  let pending = new Map<string, Map<string, Date>>();
  const emptyBatch = () => new Map<string, Map<string, Date>>();
  let flushing: Promise<void> = Promise.resolve();

  async function write(batch: Map<string, Map<string, Date>>): Promise<void> {
    for (const [workspaceId, keys] of batch) {
      const ids = [...keys.keys()];
      const times = [...keys.values()].map((at) => at.toISOString());
      try {
        await deps.withWorkspace(workspaceId, (tx) =>
          tx.query(
            `UPDATE api_keys k SET last_used_at = GREATEST(k.last_used_at, u.at)
               FROM unnest($1::text[], $2::timestamptz[]) AS u(id, at)
              WHERE k.id = u.id`,
            [ids, times],
          ),
        );
      } catch (error) {
        deps.onError(error);
      }
    }
  }

  const flush = (): Promise<void> => {
    const batch = pending;
    pending = emptyBatch();
    flushing = flushing.then(() => write(batch));
    return flushing;
  };

  const timer = setInterval(() => void flush(), deps.flushMs);
  timer.unref();

  return {
    record(workspaceId, keyId, at) {
      let keys = pending.get(workspaceId);
      if (!keys) pending.set(workspaceId, (keys = new Map<string, Date>()));
      const previous = keys.get(keyId);
      if (!previous || previous < at) keys.set(keyId, at);
    },
    flush,
    async stop() {
      clearInterval(timer);
      await flush();
    },
  };
}
