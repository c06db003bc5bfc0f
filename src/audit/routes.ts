/** Reading and verifying audit chains: a workspace's own (API key with `audit:read`) and the platform's (admin). */
import { Type } from 'typebox';
import type { WithPlatform, WithWorkspace } from '../db/tenant-tx.js';
import { principalOf } from '../http/auth.js';
import { IdParams, named, Page, PageQuery, Timestamp } from '../http/schemas.js';
import type { HttpServer } from '../http/server.js';
import { decodeCursor, toPage } from '../pagination.js';
import { type AuditEntry, PLATFORM_CHAIN } from './chain.js';
import { type CheckpointSigner, MAX_CHECKPOINT_TEXT, parseCheckpoint } from './checkpoint.js';
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
  checkpoint: Type.Optional(
    Type.Object(
      {
        seq: Type.Integer(),
        hash: Type.String(),
        matched: Type.Boolean({ description: 'the entry at `seq` is there and has `hash`' }),
        foundHash: Type.Union([Type.String(), Type.Null()], { description: 'the hash of the entry now at `seq`; null when there is none' }),
      },
      { description: 'Present when a checkpoint was given: how the chain compares with it' },
    ),
  ),
}));

const CheckpointSchema = named('AuditCheckpoint', Type.Object(
  {
    chain: Type.String({ description: '`platform`, or the workspace id' }),
    seq: Type.Integer({ minimum: 0, description: 'the chain head\'s sequence number when signed (0: nothing written yet)' }),
    hash: Type.String({ pattern: '^[0-9a-f]{64}$', description: 'the hash of the entry at `seq` (the genesis hash at 0)' }),
    at: Timestamp,
    keyId: Type.String({ pattern: '^[0-9a-f]{16}$', description: 'the signing key (GET /v1/audit-log/checkpoint-key)' }),
    signature: Type.String({ description: 'standard base64 of the Ed25519 signature over the bytes docs/AUDIT.md defines' }),
  },
  { description: 'A signed audit checkpoint. Store it outside Bulkhead, unchanged; pass it back to verify.' },
));

const PublicKey = Type.Object({
  keyId: Type.String(),
  version: Type.Integer(),
  algorithm: Type.Literal('Ed25519'),
  current: Type.Boolean({ description: 'signs new checkpoints; the others verify older ones' }),
  publicKeyPem: Type.String({ description: 'SubjectPublicKeyInfo PEM (openssl)' }),
  publicKeyRaw: Type.String({ description: 'standard base64 of the raw 32-byte public key' }),
  jwk: Type.Object({ kty: Type.Literal('OKP'), crv: Type.Literal('Ed25519'), x: Type.String() }),
});

const CheckpointKeys = Type.Object({
  algorithm: Type.Literal('Ed25519'),
  keyId: Type.String({ description: 'the key that signs new checkpoints' }),
  publicKey: Type.String({ description: 'the current key as SubjectPublicKeyInfo PEM' }),
  keys: Type.Array(PublicKey, { description: 'every key whose checkpoints still verify, the current one first' }),
});

const VerifyQuery = Type.Object(
  {
    checkpoint: Type.Optional(Type.String({ maxLength: MAX_CHECKPOINT_TEXT, description: 'a checkpoint as GET …/checkpoint answered it (JSON, URL-encoded): the chain must still hold the entry it signed, unchanged' })),
  },
  { additionalProperties: false },
);

const VERIFY_DESCRIPTION = 'Walks the chain from its first entry and reports the first entry that was altered, removed or moved. '
  + 'A chain cannot see its own tail cut off together with its head: pass a `checkpoint` taken earlier and kept outside Bulkhead, '
  + 'and an entry missing or rewritten at or before it is reported as `checkpoint_mismatch`. '
  + 'A checkpoint that is not this server\'s or is for another chain answers 422 `checkpoint_invalid`.';

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

/** Reads the `checkpoint` parameter and checks its signature and chain; undefined when absent. */
function anchorFrom(raw: string | undefined, signer: CheckpointSigner, chain: string) {
  if (raw === undefined) return undefined;
  const checkpoint = parseCheckpoint(raw);
  signer.check(checkpoint, chain);
  return { seq: checkpoint.seq, hash: checkpoint.hash };
}

export function registerAuditRoutes(app: HttpServer, deps: { withWorkspace: WithWorkspace; withPlatform: WithPlatform; auditCheckpoints: CheckpointSigner; getWorkspace: (id: string) => Promise<{ readonly id: string }> }): void {
  const signer = deps.auditCheckpoints;
  const read = { auth: { scope: 'audit:read' as const } };
  app.get('/v1/audit-log', { config: read, schema: { operationId: 'listAuditLog', summary: 'List the workspace\'s audit log', description: 'Lists the workspace\'s audit entries in chain order (`seq` ascending), each with the hash that links it to the one before.', tags: ['audit'], querystring: PageQuery, response: { 200: Page(Entry) } } }, async (request) => {
    const afterSeq = Number(decodeCursor(request.query.cursor, SEQ) ?? 0);
    const entries = await deps.withWorkspace(principalOf(request).workspaceId, (tx) => workspaceAudit.list(tx, { afterSeq, limit: request.query.limit + 1 }));
    return toPage(entries, request.query.limit, (e) => e.seq, entryView);
  });
  app.get('/v1/audit-log/verify', {
    config: read,
    schema: { operationId: 'verifyAuditLog', summary: 'Verify the workspace audit chain', description: VERIFY_DESCRIPTION, tags: ['audit'], querystring: VerifyQuery, errors: ['checkpoint_invalid'], response: { 200: Verify } },
  }, async (request) => {
    const { workspaceId } = principalOf(request);
    const anchor = anchorFrom(request.query.checkpoint, signer, workspaceId);
    return deps.withWorkspace(workspaceId, (tx) => workspaceAudit.verify(tx, anchor));
  });
  app.get('/v1/audit-log/checkpoint', {
    config: read,
    schema: {
      operationId: 'getAuditCheckpoint',
      summary: 'Sign a checkpoint of the workspace audit chain',
      description: 'The chain head (seq and hash) as of now, signed with the server\'s Ed25519 audit key. Store it outside Bulkhead; a later verify with it finds entries removed or rewritten since, which the chain alone cannot. See docs/AUDIT.md.',
      tags: ['audit'],
      response: { 200: CheckpointSchema },
    },
  }, async (request) => signer.sign(await deps.withWorkspace(principalOf(request).workspaceId, (tx) => workspaceAudit.current(tx))));
  app.get('/v1/audit-log/checkpoint-key', {
    config: { auth: 'public' as const },
    schema: {
      operationId: 'getAuditCheckpointKeys',
      summary: 'The public keys audit checkpoints are signed with',
      description: 'Public: anyone holding a checkpoint can check its signature without Bulkhead. `keys` lists every key whose checkpoints still verify (after a rotation the older ones stay until retired); a checkpoint names its key by `keyId`.',
      tags: ['audit'],
      response: { 200: CheckpointKeys },
    },
  }, () => {
    const keys = signer.publicKeys();
    const current = keys[0];
    if (!current) throw new Error('no audit signing key');
    return Promise.resolve({ algorithm: 'Ed25519' as const, keyId: current.keyId, publicKey: current.publicKeyPem, keys: [...keys] });
  });

  const admin = { auth: 'admin' as const };
  app.get('/v1/platform/audit-log', { config: admin, schema: { operationId: 'listPlatformAuditLog', summary: 'List the platform audit log', description: 'Lists the platform\'s audit entries (tenants, workspaces, providers, integrations, keys minted by the admin) in chain order.', tags: ['audit'], querystring: PageQuery, response: { 200: Page(Entry) } } }, async (request) => {
    const afterSeq = Number(decodeCursor(request.query.cursor, SEQ) ?? 0);
    const entries = await deps.withPlatform((tx) => platformAudit.list(tx, { afterSeq, limit: request.query.limit + 1 }));
    return toPage(entries, request.query.limit, (e) => e.seq, entryView);
  });
  app.get('/v1/platform/audit-log/verify', {
    config: admin,
    schema: { operationId: 'verifyPlatformAuditLog', summary: 'Verify the platform audit chain', description: VERIFY_DESCRIPTION, tags: ['audit'], querystring: VerifyQuery, errors: ['checkpoint_invalid'], response: { 200: Verify } },
  }, async (request) => {
    const anchor = anchorFrom(request.query.checkpoint, signer, PLATFORM_CHAIN);
    return deps.withPlatform((tx) => platformAudit.verify(tx, anchor));
  });
  app.get('/v1/platform/audit-log/checkpoint', {
    config: admin,
    schema: {
      operationId: 'getPlatformAuditCheckpoint',
      summary: 'Sign a checkpoint of the platform audit chain',
      description: 'The platform chain head (seq and hash) as of now, signed with the server\'s Ed25519 audit key (public keys: GET /v1/audit-log/checkpoint-key). Store it outside Bulkhead and verify against it later. See docs/AUDIT.md.',
      tags: ['audit'],
      response: { 200: CheckpointSchema },
    },
  }, async () => signer.sign(await deps.withPlatform((tx) => platformAudit.current(tx))));
  // The platform operator's view of one workspace's chain (`bulkhead audit verify` checks every chain without a workspace key).
  app.get('/v1/workspaces/:id/audit-log/verify', {
    config: admin,
    schema: { operationId: 'verifyWorkspaceAuditLog', summary: 'Verify a workspace\'s audit chain (admin)', description: 'The platform\'s view of one workspace\'s chain, as `verifyAuditLog` answers it to the workspace.', tags: ['audit'], params: IdParams('workspace'), querystring: VerifyQuery, errors: ['checkpoint_invalid'], response: { 200: Verify } },
  }, async (request) => {
    const workspace = await deps.getWorkspace(request.params.id);
    const anchor = anchorFrom(request.query.checkpoint, signer, workspace.id);
    return deps.withWorkspace(workspace.id, (tx) => workspaceAudit.verify(tx, anchor));
  });
}
