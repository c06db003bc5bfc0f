/** `GET /v1/usage` (API key, `usage:read`) and the platform's view of any workspace's usage (admin). */
import { Type } from 'typebox';
import { BulkheadError } from '../errors.js';
import { principalOf } from '../http/auth.js';
import { Id, IdParams, named } from '../http/schemas.js';
import type { HttpServer } from '../http/server.js';
import { isId } from '../ids.js';
import type { UsageService } from './usage.js';

const Figure = named('UsageFigure', Type.Object({
  used: Type.Integer(),
  limit: Type.Integer(),
}));

const Usage = named('Usage', Type.Object({
  workspaceId: Id('workspace'),
  period: Type.String(),
  events: Figure,
  connections: Figure,
  destinations: Figure,
  rules: Figure,
  instances: Figure,
  inboundSources: Figure,
}));

const DESCRIPTION = 'Counts against limits: events this month against the quota; connections, destinations, rules, instances, inbound sources.';

export function registerUsageRoutes(app: HttpServer, deps: { usage: UsageService }): void {
  app.get('/v1/usage', {
    config: { auth: { scope: 'usage:read' as const } },
    schema: { operationId: 'getUsage', summary: 'Read usage and limits', description: DESCRIPTION, tags: ['usage'], response: { 200: Usage } },
  }, async (request) => deps.usage.of(principalOf(request).workspaceId));
  app.get('/v1/workspaces/:id/usage', {
    config: { auth: 'admin' as const },
    schema: { operationId: 'getWorkspaceUsage', summary: 'Read a workspace\'s usage (admin)', description: '`getUsage` for any workspace.', tags: ['usage'], params: IdParams('workspace'), response: { 200: Usage } },
  }, async (request) => {
    if (!isId('workspace', request.params.id)) throw new BulkheadError('not_found', 'workspace not found');
    return deps.usage.of(request.params.id);
  });
}
