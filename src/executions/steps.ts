/**
 * Runs a plan's steps, outside any database transaction: tenant code runs in the sandbox, and
 * connection calls go through the relay (the credential is injected there and never enters the
 * sandbox). Each step maps a list of items to the next list; a transform may fan one item out
 * into several (an array) or drop it (null). Deliver steps only collect what to write: the
 * runner writes the deliveries with the execution's outcome, in one transaction.
 */
import { BulkheadError } from '../errors.js';
import { bodyStream, type Relay } from '../relay/relay.js';
import { matchesFilter } from '../routing/filter.js';
import { HostCallError, type Sandbox } from '../sandbox/index.js';
import type { Plan, PlanStep, TriggerView } from './plan.js';
import type { StepRecord } from './store.js';

export interface PlannedDelivery {
  readonly destinationId: string;
  readonly part: number;
  readonly eventType: string;
  readonly payload: unknown;
}

export interface StepsOutcome {
  readonly steps: StepRecord[];
  readonly deliveries: PlannedDelivery[];
  /** Set when a step failed: where a retry resumes, with the items that entered that step. */
  readonly failure?: { readonly step: number; readonly name: string; readonly code: string; readonly message: string; readonly items: readonly unknown[] };
  /** Each step's output items, kept only when the instance logs payloads. */
  readonly payloads?: Record<string, unknown[]>;
  /** The sandbox refused the work for now (its queue was full): run the execution again later. */
  readonly requeue?: boolean;
}

/** Fan-out bound: items alive at once in one execution. */
export const MAX_ITEMS = 100;
/** Largest body of a connection's answer handed to tenant code. */
const MAX_ANSWER_BYTES = 1024 * 1024;
const METHODS = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']);

class StepFailure extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface StepDeps {
  readonly sandbox: Sandbox;
  readonly relay: Relay;
  readonly workspaceId: string;
  /** Destinations of this workspace: whether each exists and is enabled, and the types it takes. */
  readonly destination: (id: string) => { enabled: boolean; accepts: (type: string) => boolean } | undefined;
  /** Secret config values of the instance, for `{{secrets.name}}` placeholders in connection steps (host side only). */
  readonly secrets: Readonly<Record<string, string>>;
  /** A bug, not the tenant's doing: logged by the runner; the step fails as `internal_error`. */
  readonly onUnexpected: (error: unknown) => void;
}

/** Reads a relay answer whole, up to a bound, and parses JSON when it is JSON. */
async function readAnswer(body: AsyncIterable<unknown> | Buffer, contentType: string | undefined): Promise<unknown> {
  let bytes: Buffer;
  if (Buffer.isBuffer(body)) bytes = body;
  else {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of body) {
      size += (chunk as Buffer).length;
      if (size > MAX_ANSWER_BYTES) throw new HostCallError(`the answer exceeds ${String(MAX_ANSWER_BYTES)} bytes`);
      chunks.push(chunk as Buffer);
    }
    bytes = Buffer.concat(chunks);
  }
  if (bytes.length > MAX_ANSWER_BYTES) throw new HostCallError(`the answer exceeds ${String(MAX_ANSWER_BYTES)} bytes`);
  const text = bytes.toString('utf8');
  if (contentType?.includes('json')) {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return text;
    }
  }
  return text;
}

const expand = (template: string, plan: Plan, secrets: Readonly<Record<string, string>>, encode: boolean): string =>
  template.replace(/\{\{\s*(config|secrets)\.([A-Za-z][A-Za-z0-9_]*)\s*\}\}/gu, (_all, where: string, name: string) => {
    const value = where === 'secrets' ? secrets[name] : plan.config[name];
    if (value === undefined || value === null) throw new StepFailure('config_missing', `${where}.${name} has no value`);
    const text = typeof value === 'string' ? value : JSON.stringify(value);
    return encode ? encodeURIComponent(text) : text;
  });

export async function runSteps(plan: Plan, deps: StepDeps, now: () => Date): Promise<StepsOutcome> {
  const steps: StepRecord[] = [];
  const deliveries: PlannedDelivery[] = [];
  const payloads: Record<string, unknown[]> | undefined = plan.logPayloads ? {} : undefined;
  let items: readonly unknown[] = plan.items;

  /** A call through the relay with the bound connection of `slot`; throws HostCallError with a safe message. */
  async function request(slot: string, args: { method?: unknown; path?: unknown; query?: unknown; body?: unknown }): Promise<{ status: number; body: unknown }> {
    const connectionId = plan.connections[slot];
    if (connectionId === undefined) throw new HostCallError(`connection "${slot}" is not bound for this instance`);
    const method = typeof args.method === 'string' ? args.method.toUpperCase() : 'GET';
    if (!METHODS.has(method)) throw new HostCallError(`method must be one of ${[...METHODS].join(', ')}`);
    if (typeof args.path !== 'string' || !args.path.startsWith('/')) throw new HostCallError('path must be a string starting with /');
    const query = new URLSearchParams();
    if (args.query !== undefined && args.query !== null) {
      if (typeof args.query !== 'object' || Array.isArray(args.query)) throw new HostCallError('query must be an object of strings');
      for (const [k, v] of Object.entries(args.query as Record<string, unknown>)) query.set(k, typeof v === 'string' ? v : JSON.stringify(v));
    }
    const hasBody = args.body !== undefined && method !== 'GET';
    try {
      const answer = await deps.relay.call({
        workspaceId: deps.workspaceId,
        connectionId,
        method,
        // Template paths read like the provider's docs (`/v3/contacts`); the relay joins a relative path to the base URL.
        path: args.path.slice(1),
        query: query.size > 0 ? `?${query.toString()}` : '',
        headers: hasBody ? { 'content-type': 'application/json', accept: 'application/json' } : { accept: 'application/json' },
        body: hasBody ? bodyStream(JSON.stringify(args.body)) : undefined,
        baseUrl: undefined,
      });
      const type = answer.headers['content-type'];
      return { status: answer.status, body: await readAnswer(answer.body, Array.isArray(type) ? type[0] : type) };
    } catch (error) {
      if (error instanceof HostCallError) throw error;
      // Our own errors carry messages written for clients; anything else stays on the host.
      if (error instanceof BulkheadError) throw new HostCallError(`${error.code}: ${error.message}`);
      throw new HostCallError('the connection call failed');
    }
  }

  const event = (trigger: TriggerView, payload: unknown) => ({ ...trigger, payload });

  for (let index = plan.startAt; index < plan.steps.length; index++) {
    const step = plan.steps[index] as PlanStep;
    const startedAt = now();
    const started = performance.now();
    const logs: string[] = [];
    const metadata: StepRecord['metadata'] = { itemsIn: items.length };
    const done = (outcome: StepRecord['outcome'], error?: { code: string; message: string }) => {
      steps.push({ name: step.name, type: step.type, startedAt: startedAt.toISOString(), durationMs: Math.round(performance.now() - started), outcome, metadata, logs, ...(error ? { error } : {}) });
    };
    try {
      let next: unknown[] = [];
      switch (step.type) {
        case 'filter':
          next = items.filter((item) => matchesFilter(step.filter, item));
          break;
        case 'transform': {
          let calls = 0;
          for (const item of items) {
            const result = await deps.sandbox.run({
              code: step.code,
              input: event(plan.trigger, item),
              config: plan.config,
              capabilities: plan.capabilities,
              call: async (name, args) => {
                const slot = /^connections\.([^.]+)\.request$/u.exec(name)?.[1];
                if (slot === undefined) throw new HostCallError(`unknown capability ${name}`);
                return request(slot, (args ?? {}));
              },
            });
            logs.push(...result.logs);
            calls += result.calls;
            if (!result.ok) {
              if (result.error.code === 'queue_full') return { steps, deliveries: [], requeue: true };
              throw new StepFailure(result.error.code, result.error.message);
            }
            if (result.value === null) continue;
            if (Array.isArray(result.value)) next.push(...(result.value as unknown[]));
            else next.push(result.value);
            if (next.length > MAX_ITEMS) throw new StepFailure('too_many_items', `the transform returned more than ${String(MAX_ITEMS)} items`);
          }
          metadata['hostCalls'] = calls;
          break;
        }
        case 'connection': {
          const statuses: number[] = [];
          const path = expand(step.path, plan, deps.secrets, true);
          const query = step.query ? Object.fromEntries(Object.entries(step.query).map(([k, v]) => [k, expand(v, plan, deps.secrets, false)])) : undefined;
          for (const item of items) {
            let answer: { status: number };
            try {
              answer = await request(step.slot, { method: step.method, path, query, body: item });
            } catch (error) {
              throw new StepFailure('connection_failed', error instanceof Error ? error.message : 'the connection call failed');
            }
            statuses.push(answer.status);
            if (answer.status < 200 || answer.status >= 300) {
              metadata['statuses'] = statuses;
              throw new StepFailure('connection_failed', `${step.method} ${step.path} answered ${String(answer.status)}`);
            }
          }
          metadata['statuses'] = statuses;
          next = [...items];
          break;
        }
        case 'deliver': {
          if (step.slot !== null && step.destinationIds.length === 0) throw new StepFailure('destination_missing', `destination slot "${step.slot}" is not bound`);
          let planned = 0;
          let skipped = 0;
          const type = step.eventType ?? plan.trigger.type ?? `${plan.templateName ?? 'instance'}.${step.name}`;
          for (const destinationId of step.destinationIds) {
            const destination = deps.destination(destinationId);
            if (!destination) {
              if (step.slot !== null) throw new StepFailure('destination_missing', `destination ${destinationId} no longer exists`);
              skipped++;
              continue;
            }
            // An operational event about a destination never goes to that destination (no loops).
            const aboutIt = plan.trigger.type?.startsWith('bulkhead.') === true && plan.trigger.resource === 'destination' && plan.trigger.resourceId === destinationId;
            if (!destination.enabled || !destination.accepts(type) || aboutIt) {
              skipped++;
              continue;
            }
            for (const [i, item] of items.entries()) {
              deliveries.push({ destinationId, part: index * 1000 + i, eventType: type, payload: item });
              planned++;
            }
          }
          metadata['deliveries'] = planned;
          metadata['destinationsSkipped'] = skipped;
          next = [...items];
          break;
        }
      }
      metadata['itemsOut'] = next.length;
      if (payloads) payloads[step.name] = next;
      items = next;
      if (items.length === 0) {
        done('dropped');
        return { steps, deliveries, ...(payloads ? { payloads } : {}) };
      }
      done('ok');
    } catch (error) {
      if (!(error instanceof StepFailure)) deps.onUnexpected(error);
      const failure = error instanceof StepFailure ? error : new StepFailure('internal_error', 'the step failed unexpectedly');
      done('failed', { code: failure.code, message: failure.message });
      return { steps, deliveries, failure: { step: index, name: step.name, code: failure.code, message: failure.message, items }, ...(payloads ? { payloads } : {}) };
    }
  }
  return { steps, deliveries, ...(payloads ? { payloads } : {}) };
}
