import { Type } from 'typebox';
import type { DatabaseRef } from '../db/open.js';
import { schemaIsCurrent } from '../db/migrate.js';
import { BulkheadError } from '../errors.js';
import type { HttpServer } from './server.js';

const Status = Type.Object({ status: Type.String() });

/** `/healthz`: the process is up. `/readyz`: the database answers and its schema is current. */
export function registerHealthRoutes(app: HttpServer, db: DatabaseRef): void {
  app.get('/healthz', { config: { auth: 'public' }, schema: { operationId: 'getHealth', summary: 'Liveness', description: 'Answers 200 while the process is up; it does not touch the database.', tags: ['health'], response: { 200: Status } } }, () => Promise.resolve({ status: 'ok' }));
  app.get('/readyz', { config: { auth: 'public' }, schema: { operationId: 'getReadiness', summary: 'Readiness', description: 'Answers 200 when the database answers and its schema is at this build\'s version, else 503 `not_ready` with the reason.', tags: ['health'], response: { 200: Status} } }, async () => {
    const database = db.get();
    let current: boolean;
    try {
      current = await schemaIsCurrent(database.owner);
    } catch (error) {
      throw new BulkheadError('not_ready', 'the database is not reachable', { cause: error });
    }
    if (!current) throw new BulkheadError('not_ready', 'the database schema is not at this build\'s version; run `bulkhead migrate`');
    return { status: 'ready' };
  });
}
