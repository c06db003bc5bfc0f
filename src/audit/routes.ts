/** Reading and verifying audit chains: a workspace's own (API key with `audit:read`) and the platform's (admin). */
import { Type } from 'typebox';
import type { WithPlatform, WithWorkspace } from '../db/tenant-tx.js';
import { principalOf } from '../http/auth.js';
import { errorResponses, IdParams, Page, PageQuery, Timestamp } from '../http/schemas.js';
import type { HttpServer } from '../http/server.js';
import { decodeCursor, toPage } from '../pagination.js';
import type { AuditEntry } from './chain.js';
import { platformAudit, workspaceAudit } from './store.js';

const Entry = Type.Object({
  id: Type.String(),
  seq: Type.Integer(),
  occurredAt: Timestamp,
  actor: Type.Object({ type: Type.String(), id: Type.String() }),
  action: Type.String(),
  target: Type.Union([Type.Object({ type: Type.String(), id: Type.String() }), Type.Null()]),
  outcome: Type.String(),
  requestId: Type.Union([Type.String(), Type.Null()]),
  ip: Type.Union([Type.String(), Type.Null()]),
  details: Type.Record(Type.String(), Type.Unknown()),
  prevHash: Type.String(),
  hash: Type.String(),
});

const Verify = Type.Object({
  valid: Type.Boolean(),
  checked: Type.Integer(),
  firstInvalid: Type.Union([
    Type.Object({ seq: Type.Integer(), id: Type.Union([Type.String(), Type.Null()]), reason: Type.String() }),
    Type.Null(),
  ]),
  head: Type.Object({ seq: Type.Integer(), hash: Type.String() }),
});

const entryView = (e: AuditEntry) => ({
  id: e.id,
  seq: e.seq,
  occurredAt: e.occurredAt.toISOString(),
  actor: { type: e.actorType, id: e.actorId },
  action: e.action,
  target: e.targetType !== null && e.targetId !== null ? { type: e.targetType, id: e.targetId } : null,
  outcome: e.outcome,
  requestId: e.requestId,
  ip: e.ip,
  details: e.details,
  prevHash: e.prevHash,
  hash: e.hash,
});

const SEQ = /^\d{1,15}$/;

export function registerAuditRoutes(app: HttpServer, deps: { withWorkspace: WithWorkspace; withPlatform: WithPlatform; getWorkspace: (id: string) => Promise<{ readonly id: string }> }): void {
  const read = { auth: { scope: 'audit:read' as const } };
  app.get('/v1/audit-log', { config: read, schema: { tags: ['audit'], security: [{ apiKey: [] }], querystring: PageQuery, response: { 200: Page(Entry), ...errorResponses } } }, async (request) => {
    const afterSeq = Number(decodeCursor(request.query.cursor, SEQ) ?? 0);
    const entries = await deps.withWorkspace(principalOf(request).workspaceId, (tx) => workspaceAudit.list(tx, { afterSeq, limit: request.query.limit + 1 }));
    return toPage(entries, request.query.limit, (e) => e.seq, entryView);
  });
  app.get('/v1/audit-log/verify', { config: read, schema: { tags: ['audit'], security: [{ apiKey: [] }], response: { 200: Verify, ...errorResponses } } }, async (request) =>
    deps.withWorkspace(principalOf(request).workspaceId, (tx) => workspaceAudit.verify(tx)),
  );

  const admin = { auth: 'admin' as const };
  app.get('/v1/platform/audit-log', { config: admin, schema: { tags: ['platform'], security: [{ adminToken: [] }], querystring: PageQuery, response: { 200: Page(Entry), ...errorResponses } } }, async (request) => {
    const afterSeq = Number(decodeCursor(request.query.cursor, SEQ) ?? 0);
    const entries = await deps.withPlatform((tx) => platformAudit.list(tx, { afterSeq, limit: request.query.limit + 1 }));
    return toPage(entries, request.query.limit, (e) => e.seq, entryView);
  });
  app.get('/v1/platform/audit-log/verify', { config: admin, schema: { tags: ['platform'], security: [{ adminToken: [] }], response: { 200: Verify, ...errorResponses } } }, async () =>
    deps.withPlatform((tx) => platformAudit.verify(tx)),
  );
  // The platform operator's view of one workspace's chain (`bulkhead audit verify` checks every chain without a workspace key).
  app.get('/v1/workspaces/:id/audit-log/verify', { config: admin, schema: { tags: ['platform'], summary: 'Verify a workspace\'s audit chain', security: [{ adminToken: [] }], params: IdParams('workspace'), response: { 200: Verify, ...errorResponses } } }, async (request) => {
    const workspace = await deps.getWorkspace(request.params.id);
    return deps.withWorkspace(workspace.id, (tx) => workspaceAudit.verify(tx));
  });
}
