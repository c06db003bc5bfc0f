/** Inbound webhooks: sources (admin API) and the receiver behind `POST /hooks/{id}`. */
import type { WithPlatform, WithWorkspace } from '../db/tenant-tx.js';
import type { EventService } from '../events/ingest.js';
import type { Runtime } from '../ids.js';
import type { Vault } from '../vault/vault.js';
import { createInboundReceiver } from './receive.js';
import { createInboundSources } from './sources.js';

export { registerInboundRoutes } from './routes.js';
export { MAX_SOURCES_PER_WORKSPACE } from './sources.js';
export type { InboundMetrics } from './receive.js';

export function createInbound(deps: {
  withPlatform: WithPlatform;
  withWorkspace: WithWorkspace;
  vault: Vault;
  events: EventService;
  runtime: Runtime;
  publicUrl: () => string;
  defaults: { readonly eventPayloadBytes: number; readonly eventsPerMonth: number };
}) {
  const sources = createInboundSources({ vault: deps.vault, runtime: deps.runtime, publicUrl: deps.publicUrl });
  const receiver = createInboundReceiver({ withPlatform: deps.withPlatform, withWorkspace: deps.withWorkspace, sources, events: deps.events, runtime: deps.runtime, defaults: deps.defaults });
  return { sources, receiver, metrics: receiver.metrics };
}

export type Inbound = ReturnType<typeof createInbound>;
