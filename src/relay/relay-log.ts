/**
 * The relay's request log: metadata only (method, host, path shape, status, duration, sizes,
 * attempts) — never headers, query values or bodies. Written in batches per workspace, like
 * `lastUsedAt`, so a relay call costs no extra transaction; a crash can lose one interval.
 */
import type { WithWorkspace } from '../db/tenant-tx.js';
import { newId, type Runtime } from '../ids.js';

export interface RelayLogEntry {
  readonly connectionId: string;
  readonly method: string;
  readonly host: string;
  readonly pathTemplate: string;
  readonly status: number | null;
  readonly outcome: 'ok' | 'upstream_error' | 'blocked' | 'timeout' | 'failed';
  readonly durationMs: number;
  readonly requestBytes: number;
  readonly responseBytes: number;
  readonly attempts: number;
  readonly occurredAt: Date;
}

export interface RelayLog {
  record(workspaceId: string, entry: RelayLogEntry): void;
  flush(): Promise<void>;
  stop(): Promise<void>;
}

const MAX_PENDING = 50_000;

export function createRelayLog(deps: { withWorkspace: WithWorkspace; runtime: Runtime; flushMs: number; onError: (error: unknown) => void }): RelayLog {
  let pending = new Map<string, RelayLogEntry[]>();
  let size = 0;
  let flushing: Promise<void> = Promise.resolve();

  async function write(batch: Map<string, RelayLogEntry[]>): Promise<void> {
    for (const [workspaceId, entries] of batch) {
      const column = <K extends keyof RelayLogEntry>(key: K) => entries.map((e) => e[key]);
      try {
        await deps.withWorkspace(workspaceId, (tx) =>
          tx.query(
            `INSERT INTO relay_log (workspace_id, id, connection_id, method, host, path_template, status, outcome, duration_ms, request_bytes, response_bytes, attempts, occurred_at)
             SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int[], $8::text[], $9::int[], $10::bigint[], $11::bigint[], $12::int[], $13::timestamptz[])`,
            [
              workspaceId,
              entries.map(() => newId('relayCall', deps.runtime)),
              column('connectionId'),
              column('method'),
              column('host'),
              column('pathTemplate'),
              column('status'),
              column('outcome'),
              column('durationMs'),
              column('requestBytes'),
              column('responseBytes'),
              column('attempts'),
              entries.map((e) => e.occurredAt.toISOString()),
            ],
          ),
        );
      } catch (error) {
        deps.onError(error);
      }
    }
  }

  const flush = (): Promise<void> => {
    const batch = pending;
    pending = new Map();
    size = 0;
    flushing = flushing.then(() => write(batch));
    return flushing;
  };

  const timer = setInterval(() => void flush(), deps.flushMs);
  timer.unref();

  return {
    record(workspaceId, entry) {
      let list = pending.get(workspaceId);
      if (!list) pending.set(workspaceId, (list = []));
      list.push(entry);
      // Bound memory under a burst: write early rather than grow without limit.
      if (++size >= MAX_PENDING) void flush();
    },
    flush,
    async stop() {
      clearInterval(timer);
      await flush();
    },
  };
}
