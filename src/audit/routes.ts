/** Reading and verifying audit chains: a workspace's own (API key with `audit:read`) and the platform's (admin). */
import { Type } from 'typebox';
import type { WithPlatform, WithWorkspace } from '../db/tenant-tx.js';
import { principalOf } from '../http/auth.js';
import { named, Page, PageQuery, Timestamp } from '../http/schemas.js';
import type { HttpServer } from '../http/server.js';
import { decodeCursor, toPage } from '../pagination.js';
import type { AuditEntry } from './chain.js';
import { platformAudit, workspaceAudit } from './store.js';

const Entry = named('AuditEntry', Type.Object({
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
}));

const Verify = named('AuditVerification', Type.Object({
  valid: Type.Boolean(),
  checked: Type.Integer(),
  firstInvalid: Type.Union([
    Type.Object({ seq: Type.Integer(), id: Type.Union([Type.String(), Type.Null()]), reason: Type.String() }),
    Type.Null(),
  ]),
  head: Type.Object({ seq: Type.Integer(), hash: Type.String() }),
}));

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

export function registerAuditRoutes(app: HttpServer, deps: { withWorkspace: WithWorkspace; withPlatform: WithPlatform }): void {
  const read = { auth: { scope: 'audit:read' as const } };
  app.get('/v1/audit-log', { config: read, schema: { operationId: 'listAuditLog', summary: 'List the workspace\'s audit log', description: 'Lists the workspace\'s audit entries in chain order (`seq` ascending), each with the hash that links it to the one before.', tags: ['audit'], querystring: PageQuery, response: { 200: Page(Entry) } } }, async (request) => {
    const afterSeq = Number(decodeCursor(request.query.cursor, SEQ) ?? 0);
    const entries = await deps.withWorkspace(principalOf(request).workspaceId, (tx) => workspaceAudit.list(tx, { afterSeq, limit: request.query.limit + 1 }));
    return toPage(entries, request.query.limit, (e) => e.seq, entryView);
  });
  app.get('/v1/audit-log/verify', { config: read, schema: { operationId: 'verifyAuditLog', summary: 'Verify the workspace\'s audit chain', description: 'Recomputes the workspace\'s hash chain from the first entry and reports the first entry that does not match, with the head it reached.', tags: ['audit'], response: { 200: Verify } } }, async (request) =>
    deps.withWorkspace(principalOf(request).workspaceId, (tx) => workspaceAudit.verify(tx)),
  );

  const admin = { auth: 'admin' as const };
  app.get('/v1/platform/audit-log', { config: admin, schema: { operationId: 'listPlatformAuditLog', summary: 'List the platform audit log', description: 'Lists the platform\'s audit entries (tenants, workspaces, providers, integrations, keys minted by the admin) in chain order.', tags: ['audit'], querystring: PageQuery, response: { 200: Page(Entry) } } }, async (request) => {
    const afterSeq = Number(decodeCursor(request.query.cursor, SEQ) ?? 0);
    const entries = await deps.withPlatform((tx) => platformAudit.list(tx, { afterSeq, limit: request.query.limit + 1 }));
    return toPage(entries, request.query.limit, (e) => e.seq, entryView);
  });
  app.get('/v1/platform/audit-log/verify', { config: admin, schema: { operationId: 'verifyPlatformAuditLog', summary: 'Verify the platform audit chain', description: 'Recomputes the platform\'s hash chain and reports the first entry that does not match, with the head it reached.', tags: ['audit'], response: { 200: Verify } } }, async () =>
    deps.withPlatform((tx) => platformAudit.verify(tx)),
  );
}
