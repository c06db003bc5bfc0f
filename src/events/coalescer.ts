/**
 * Group commit for single-event ingest. Every `POST /v1/events` must be durable before its 202,
 * and on PostgreSQL the price of durability is the commit (a WAL flush), not the insert. So
 * requests for one workspace that arrive while its previous commit is in progress wait for the
 * next one and share it: one transaction, one flush, many 202s. An idle system sees no added
 * latency (a lone request starts its transaction at once); a busy one trades a commit per
 * request for a commit per group.
 *
 * Each event is still judged on its own (`ingestEach`): one refusal does not fail its
 * neighbours. If the group's transaction itself fails (a database error), every event in it is
 * retried alone, so an error reaches only the request that caused it — unless the database is
 * unavailable: that is nobody's fault, every request in the group gets the 503 and retries (a
 * retry alone would fail the same way, and after a COMMIT cut off midway could store twice).
 */
import { isDatabaseUnavailable } from '../db/errors.js';
import type { WithWorkspace } from '../db/tenant-tx.js';
import { BulkheadError } from '../errors.js';
import type { EventInput, EventLimits, EventService, IngestResult } from './ingest.js';

interface Waiting {
  readonly input: EventInput;
  resolve(result: IngestResult): void;
  reject(error: unknown): void;
}

interface Lane {
  readonly workspaceId: string;
  readonly limits: EventLimits;
  waiting: Waiting[];
  /** A group is in progress. One at a time per lane keeps the quota check exact in this process. */
  busy: boolean;
}

export function createIngestCoalescer(deps: { withWorkspace: WithWorkspace; events: EventService; maxGroup: number }) {
  // One lane per workspace and limits (limits come from the caller's tenant and are the same
  // for every key of a workspace, but keying on them keeps a group honest if they ever differ).
  const lanes = new Map<string, Lane>();

  async function alone(lane: Lane, item: Waiting): Promise<void> {
    try {
      const [result] = await deps.withWorkspace(lane.workspaceId, (tx) => deps.events.ingest(tx, [item.input], lane.limits));
      if (!result) throw new Error('ingest returned nothing');
      item.resolve(result);
    } catch (error) {
      item.reject(error);
    }
  }

  async function drain(key: string, lane: Lane): Promise<void> {
    while (lane.waiting.length > 0) {
      const group = lane.waiting.splice(0, deps.maxGroup);
      if (group.length === 1) {
        await alone(lane, group[0] as Waiting);
        continue;
      }
      let results: (IngestResult | BulkheadError)[];
      try {
        results = await deps.withWorkspace(lane.workspaceId, (tx) => deps.events.ingestEach(tx, group.map((w) => w.input), lane.limits));
      } catch (error) {
        if (isDatabaseUnavailable(error)) for (const item of group) item.reject(error);
        else for (const item of group) await alone(lane, item);
        continue;
      }
      for (const [i, item] of group.entries()) {
        const result = results[i];
        if (result === undefined) item.reject(new Error('ingest returned nothing'));
        else if (result instanceof BulkheadError) item.reject(result);
        else item.resolve(result);
      }
    }
    lane.busy = false;
    lanes.delete(key);
  }

  return {
    /** Resolves once the event and its deliveries are committed (or rejects with its own refusal). */
    ingest(workspaceId: string, input: EventInput, limits: EventLimits): Promise<IngestResult> {
      const key = `${workspaceId}|${String(limits.maxPayloadBytes)}|${String(limits.eventsPerMonth)}`;
      let lane = lanes.get(key);
      if (!lane) {
        lane = { workspaceId, limits, waiting: [], busy: false };
        lanes.set(key, lane);
      }
      const promise = new Promise<IngestResult>((resolve, reject) => {
        (lane).waiting.push({ input, resolve, reject });
      });
      if (!lane.busy) {
        lane.busy = true;
        void drain(key, lane);
      }
      return promise;
    },
  };
}

export type IngestCoalescer = ReturnType<typeof createIngestCoalescer>;
