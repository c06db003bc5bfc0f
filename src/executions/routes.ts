/** Executions over HTTP: the run log of rules and instances, and retrying a failed run. */
import { Type } from 'typebox';
import type { WithWorkspace } from '../db/tenant-tx.js';
import { keyContext, principalOf } from '../http/auth.js';
import { Id, IdParams, named, Nullable, NullableTimestamp, Page, PageQuery, Timestamp } from '../http/schemas.js';
import type { HttpServer } from '../http/server.js';
import type { ExecutionStore } from './store.js';

const Status = named('ExecutionStatus', Type.Union([Type.Literal('queued'), Type.Literal('running'), Type.Literal('succeeded'), Type.Literal('failed')]));

const Step = named('ExecutionStep', Type.Object({
  name: Type.String(),
  type: Type.String(),
  startedAt: Timestamp,
  durationMs: Type.Number(),
  outcome: Type.Union([Type.Literal('ok'), Type.Literal('failed'), Type.Literal('skipped'), Type.Literal('dropped')]),
  metadata: Type.Record(Type.String(), Type.Union([Type.Number(), Type.String(), Type.Boolean(), Type.Null(), Type.Array(Type.Number())])),
  logs: Type.Array(Type.String()),
  error: Type.Optional(Type.Object({ code: Type.String(), message: Type.String() })),
}));

const Execution = named('Execution', Type.Object({
  id: Id('execution'),
  kind: Type.Union([Type.Literal('rule'), Type.Literal('instance')]),
  ruleId: Nullable(Type.String()),
  instanceId: Nullable(Type.String()),
  trigger: Type.Union([Type.Literal('event'), Type.Literal('inbound'), Type.Literal('cron'), Type.Literal('retry')]),
  eventId: Nullable(Type.String()),
  scheduledFor: NullableTimestamp,
  status: Status,
  attempts: Type.Integer(),
  resumeStep: Type.Integer({ description: 'the step a retry of this execution starts at' }),
  retryOf: Nullable(Type.String()),
  steps: Type.Array(Step),
  error: Nullable(Type.Object({ step: Nullable(Type.String()), code: Type.String(), message: Type.String() })),
  createdAt: Timestamp,
  startedAt: NullableTimestamp,
  finishedAt: NullableTimestamp,
  durationMs: Nullable(Type.Integer()),
}));

const ExecutionDetail = Type.Object({
  ...Execution.properties,
  payloads: Type.Unknown({ description: 'recorded step payloads, only when the instance enables payload logging (else null)' }),
});

const ListQuery = Type.Object(
  {
    ...PageQuery.properties,
    ruleId: Type.Optional(Id('rule')),
    instanceId: Type.Optional(Id('instance')),
    status: Type.Optional(Status),
    since: Type.Optional(Timestamp),
    until: Type.Optional(Timestamp),
  },
  { additionalProperties: false },
);

export function registerExecutionRoutes(app: HttpServer, deps: { withWorkspace: WithWorkspace; executions: ExecutionStore }): void {
  const { withWorkspace, executions } = deps;
  const read = { auth: { scope: 'integrations:read' as const } };

  app.get('/v1/executions', { config: read, schema: { operationId: 'listExecutions', summary: 'List executions', description: 'Lists runs of integration logic (rule transforms, instance triggers), newest first, by rule, instance, status and time range.', tags: ['executions'], querystring: ListQuery, response: { 200: Page(Execution) } } }, (request) =>
    withWorkspace(principalOf(request).workspaceId, (tx) => executions.list(tx, request.query)),
  );

  app.get('/v1/executions/:id', { config: read, schema: { operationId: 'getExecution', summary: 'Read an execution', description: 'Returns one execution with its steps, logs and, when the instance records them, its payloads.', tags: ['executions'], errors: ['ciphertext_invalid', 'key_version_retired', 'workspace_key_missing', 'root_key_missing'], params: IdParams('execution'), response: { 200: ExecutionDetail } } }, (request) =>
    withWorkspace(principalOf(request).workspaceId, (tx) => executions.get(tx, request.params.id)),
  );

  app.post('/v1/executions/:id/retry', { config: { auth: { scope: 'integrations:write' as const } }, schema: { operationId: 'retryExecution', summary: 'Retry a failed execution', description: 'Queues a new execution that resumes at the failed step with the same state. Only a failed execution can be retried, once.', tags: ['executions'], errors: ['execution_not_failed', 'execution_retry_pending', 'ciphertext_invalid', 'key_version_retired', 'workspace_key_missing', 'root_key_missing'], params: IdParams('execution'), response: { 202: Execution } } }, async (request, reply) => {
    const execution = await withWorkspace(principalOf(request).workspaceId, (tx) => executions.retry(tx, keyContext(request), request.params.id));
    return reply.status(202).send(execution);
  });
}
