/**
 * Group commit for small units of work in one workspace. A unit that arrives while the
 * workspace's transaction is running waits for the next one and shares it with everything else
 * that arrived meanwhile: one BEGIN, one context switch, one commit (one WAL flush) for many
 * units. A lone unit starts at once, so an idle system adds no latency.
 *
 * Units run one after another inside the shared transaction. If the transaction fails as a
 * whole, each of its units is run again alone, so an error reaches only the unit that caused it
 * (units must therefore be safe to run again after a rollback — they are: nothing of a
 * rolled-back transaction remains).
 */
import type { WithWorkspace, WorkspaceTx } from './tenant-tx.js';

interface Unit {
  readonly fn: (tx: WorkspaceTx) => Promise<unknown>;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

export function createTxGroups(withWorkspace: WithWorkspace, maxGroup: number) {
  const lanes = new Map<string, Unit[]>();

  async function alone(workspaceId: string, unit: Unit): Promise<void> {
    try {
      unit.resolve(await withWorkspace(workspaceId, unit.fn));
    } catch (error) {
      unit.reject(error);
    }
  }

  async function drain(workspaceId: string, waiting: Unit[]): Promise<void> {
    while (waiting.length > 0) {
      const group = waiting.splice(0, maxGroup);
      if (group.length === 1) {
        await alone(workspaceId, group[0] as Unit);
        continue;
      }
      try {
        const values = await withWorkspace(workspaceId, async (tx) => {
          const out: unknown[] = [];
          for (const unit of group) out.push(await unit.fn(tx));
          return out;
        });
        for (const [i, unit] of group.entries()) unit.resolve(values[i]);
      } catch {
        for (const unit of group) await alone(workspaceId, unit);
      }
    }
    lanes.delete(workspaceId);
  }

  return {
    /** Runs `fn` in a transaction of `workspaceId`, shared with other units waiting at the same time. */
    run<T>(workspaceId: string, fn: (tx: WorkspaceTx) => Promise<T>): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        const unit: Unit = { fn, resolve: resolve, reject };
        const waiting = lanes.get(workspaceId);
        if (waiting) {
          waiting.push(unit);
          return;
        }
        const lane = [unit];
        lanes.set(workspaceId, lane);
        void drain(workspaceId, lane);
      });
    },
  };
}

export type TxGroups = ReturnType<typeof createTxGroups>;
