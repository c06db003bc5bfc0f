/**
 * The public side: `POST /hooks/{id}` turns a verified request into an event.
 *
 *  1. `resolve` finds the source's workspace from its id. This happens before any workspace is
 *     known, so it is a named cross-workspace read (owner connection, `withPlatform`), kept as
 *     narrow as the edge needs: the workspace, the scheme (a metrics label), the per-source rate
 *     limit and the tenant's event limits — no secret, no template, nothing of the source's data.
 *  2. `receive` does everything else inside that workspace's transaction: read the source and its
 *     secrets, verify the signature over the raw body, remember the signed content (replay), and
 *     ingest the event — so the replay record, the event and its deliveries commit together, or
 *     nothing does.
 *  3. `rejected` counts a refusal: a Prometheus counter by scheme and reason (no tenant ids), and
 *     the source's own rejected count. The body of a rejected request is never parsed or stored.
 */
import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { WithPlatform, WithWorkspace, WorkspaceTx } from '../db/tenant-tx.js';
import { BulkheadError, notFound } from '../errors.js';
import type { EventLimits, EventService } from '../events/ingest.js';
import { isId, type Runtime } from '../ids.js';
import { renderEventType } from './event-type.js';
import { toPayload } from './payload.js';
import { type Scheme, verifySignature } from './schemes/index.js';
import type { InboundSources } from './sources.js';

/** How long an untimed signature (GitHub, generic HMAC) is remembered: GitHub redelivers for up to 3 days. */
export const UNTIMED_REPLAY_WINDOW_MS = 72 * 3600_000;

export interface InboundTarget {
  readonly sourceId: string;
  readonly workspaceId: string;
  readonly scheme: Scheme;
  readonly rateLimitPerMinute: number;
  readonly limits: EventLimits;
}

export type ReceiveOutcome = { readonly kind: 'event'; readonly eventId: string; readonly duplicate: boolean } | { readonly kind: 'challenge'; readonly challenge: string };

export const rejectReasons = [
  'unknown_source',
  'rate_limited',
  'payload_too_large',
  'signature_missing',
  'signature_invalid',
  'signature_expired',
  'signature_replayed',
  'quota_exceeded',
  'idempotency_key_reused',
  'invalid_event_type',
  'bad_request',
  'error',
] as const;
export type RejectReason = (typeof rejectReasons)[number];

/** Refusals that say nothing about the source's own traffic are not added to its counters. */
const NOT_COUNTED_PER_SOURCE = new Set<RejectReason>(['unknown_source', 'rate_limited', 'error']);

export function reasonOf(error: unknown): RejectReason {
  if (error instanceof BulkheadError) {
    if (error.code === 'not_found') return 'unknown_source';
    if ((rejectReasons as readonly string[]).includes(error.code)) return error.code as RejectReason;
    return error.status < 500 ? 'bad_request' : 'error';
  }
  const fastify = error as { code?: unknown; statusCode?: unknown } | null;
  if (fastify?.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return 'payload_too_large';
  return typeof fastify?.statusCode === 'number' && fastify.statusCode < 500 ? 'bad_request' : 'error';
}

/** Counters read by /metrics at scrape time. */
export interface InboundMetrics {
  readonly accepted: ReadonlyMap<Scheme, number>;
  /** Keyed by `${scheme} ${reason}`; scheme is `none` when no source was found. */
  readonly rejected: ReadonlyMap<string, { scheme: Scheme | 'none'; reason: RejectReason; count: number }>;
}

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

/** Provider message ids inside signed JSON bodies (Stripe's event id, Slack's event_id). */
function bodyMessageId(scheme: Scheme, json: unknown): string | undefined {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) return undefined;
  const field = scheme === 'stripe' ? 'id' : scheme === 'slack' ? 'event_id' : undefined;
  const value = field !== undefined && Object.hasOwn(json, field) ? (json as Record<string, unknown>)[field] : undefined;
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}

/** Slack's one-time `url_verification` handshake when the Request URL is saved: answered with its challenge. */
function slackChallenge(json: unknown): string | undefined {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) return undefined;
  const body = json as Record<string, unknown>;
  return body['type'] === 'url_verification' && typeof body['challenge'] === 'string' && /^[\x21-\x7e]{1,200}$/.test(body['challenge']) ? body['challenge'] : undefined;
}

export function createInboundReceiver(deps: {
  withPlatform: WithPlatform;
  withWorkspace: WithWorkspace;
  sources: InboundSources;
  events: EventService;
  runtime: Runtime;
  defaults: { readonly eventPayloadBytes: number; readonly eventsPerMonth: number };
}) {
  const { withWorkspace, sources, runtime } = deps;
  const accepted = new Map<Scheme, number>();
  const rejected = new Map<string, { scheme: Scheme | 'none'; reason: RejectReason; count: number }>();

  /** Takes the signed content's replay record, or refuses: atomic with the event (same transaction). */
  async function remember(tx: WorkspaceTx, sourceId: string, key: string, expiresAt: Date, now: Date): Promise<void> {
    const taken = await tx.query(
      `INSERT INTO inbound_replays (workspace_id, source_id, key, expires_at) VALUES ($1, $2, $3, $4)
       ON CONFLICT (workspace_id, source_id, key) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE inbound_replays.expires_at <= $5`,
      [tx.workspaceId, sourceId, key, expiresAt, now],
    );
    if (taken.rowCount === 0) throw new BulkheadError('signature_replayed', 'this signed request was already accepted');
    // Opportunistic purge of a few expired records, skipping any another request holds.
    await tx.query(
      `DELETE FROM inbound_replays WHERE (workspace_id, source_id, key) IN (
         SELECT workspace_id, source_id, key FROM inbound_replays WHERE source_id = $1 AND expires_at <= $2 LIMIT 100 FOR UPDATE SKIP LOCKED)`,
      [sourceId, now],
    );
  }

  return {
    metrics: { accepted, rejected } satisfies InboundMetrics,

    /** The named cross-workspace lookup (see the module comment). Unknown and malformed ids are the same 404. */
    async resolve(id: string): Promise<InboundTarget> {
      if (!isId('inboundSource', id)) throw notFound('inbound source');
      const row = await deps.withPlatform(async (tx) =>
        (await tx.query<{ workspace_id: string; scheme: Scheme; rate_limit_per_minute: number; limits: { eventPayloadBytes?: number; eventsPerMonth?: number } }>(
          `SELECT s.workspace_id, s.scheme, s.rate_limit_per_minute, t.limits
             FROM inbound_sources s JOIN workspaces w ON w.id = s.workspace_id JOIN tenants t ON t.id = w.tenant_id
            WHERE s.id = $1`,
          [id],
        )).rows[0],
      );
      if (!row) throw notFound('inbound source');
      return {
        sourceId: id,
        workspaceId: row.workspace_id,
        scheme: row.scheme,
        rateLimitPerMinute: row.rate_limit_per_minute,
        limits: { maxPayloadBytes: row.limits.eventPayloadBytes ?? deps.defaults.eventPayloadBytes, eventsPerMonth: row.limits.eventsPerMonth ?? deps.defaults.eventsPerMonth },
      };
    },

    async receive(target: InboundTarget, request: { headers: IncomingHttpHeaders; body: Buffer }): Promise<ReceiveOutcome> {
      if (request.body.length > target.limits.maxPayloadBytes) throw new BulkheadError('payload_too_large', 'the request body is larger than this workspace accepts');
      const outcome = await withWorkspace(target.workspaceId, async (tx): Promise<ReceiveOutcome> => {
        const source = await sources.forReceipt(tx, target.sourceId);
        if (!source) throw notFound('inbound source');
        const now = runtime.now();
        const tolerance = source.toleranceSeconds ?? 0;
        const verified = verifySignature(source.scheme, request, { secrets: source.secrets, nowSeconds: Math.floor(now.getTime() / 1000), toleranceSeconds: tolerance, hmac: source.hmac ?? undefined });
        // Kept until the signature could no longer verify: a timestamp up to the tolerance ahead is accepted too.
        const expiresAt = verified.timestamp === null ? new Date(now.getTime() + UNTIMED_REPLAY_WINDOW_MS) : new Date((verified.timestamp + tolerance + 1) * 1000);
        await remember(tx, source.id, verified.signedDigest, expiresAt, now);

        const { payload, json } = toPayload(request.body, request.headers['content-type']);
        const challenge = source.scheme === 'slack' ? slackChallenge(json) : undefined;
        if (challenge !== undefined) {
          await sources.recordReceipt(tx, source.id);
          return { kind: 'challenge', challenge };
        }
        // Only signed data names the message: an unsigned id header could be set to squat a future message's key.
        const messageId = verified.messageId ?? bodyMessageId(source.scheme, json) ?? verified.signedDigest;
        const idempotencyKey = `${source.id}:${/^[\x21-\x7e]{1,128}$/.test(messageId) ? messageId : sha256(messageId)}`;
        const [result] = await deps.events.ingest(
          tx,
          [{ type: renderEventType(source.eventType, { headers: request.headers, json }), resource: 'inbound_source', resourceId: source.id, payload, idempotencyKey }],
          target.limits,
        );
        if (!result) throw new Error('ingest returned nothing');
        await sources.recordReceipt(tx, source.id);
        return { kind: 'event', eventId: result.event.id, duplicate: result.replayed };
      });
      accepted.set(target.scheme, (accepted.get(target.scheme) ?? 0) + 1);
      return outcome;
    },

    /** Counts a refusal and names its reason. A failure to count rejects; the caller still answers the refusal. */
    async rejected(target: InboundTarget | undefined, error: unknown): Promise<RejectReason> {
      const reason = reasonOf(error);
      const scheme = target?.scheme ?? 'none';
      const key = `${scheme} ${reason}`;
      const entry = rejected.get(key);
      if (entry) entry.count++;
      else rejected.set(key, { scheme, reason, count: 1 });
      if (target !== undefined && !NOT_COUNTED_PER_SOURCE.has(reason)) {
        await withWorkspace(target.workspaceId, (tx) => sources.recordRejection(tx, target.sourceId, reason));
      }
      return reason;
    },
  };
}

export type InboundReceiver = ReturnType<typeof createInboundReceiver>;
