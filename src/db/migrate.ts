/**
 * Forward-only migrations: numbered SQL files in `src/migrations`, applied in order, each
 * recorded with a checksum so an edited, already-applied file is refused rather than silently
 * diverging. One advisory lock serialises concurrent starters (several API processes).
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { sqlState } from './errors.js';
import type { Database, Pool, Queryable } from './types.js';

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
  readonly checksum: string;
}

const MIGRATIONS_DIR = new URL('../migrations/', import.meta.url);
const LOCK_KEY = 0x62756c6b; // "bulk"

let cached: Promise<Migration[]> | undefined;

/** The migrations shipped with this build (read once per process: the files do not change). */
export function loadMigrations(): Promise<Migration[]> {
  cached ??= (async () => {
    const files = (await readdir(MIGRATIONS_DIR)).filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f)).sort();
    return Promise.all(
      files.map(async (file, index) => {
        const sql = await readFile(new URL(file, MIGRATIONS_DIR), 'utf8');
        const version = Number(file.slice(0, 4));
        if (version !== index + 1) throw new Error(`migration ${file} is out of sequence (expected ${index + 1})`);
        return { version, name: file.slice(5, -4), sql, checksum: createHash('sha256').update(sql).digest('hex') };
      }),
    );
  })();
  return cached;
}

function quoteIdent(name: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`unsafe identifier ${name}`);
  return `"${name}"`;
}

/**
 * The application role is cluster-wide, so it is created here rather than in a migration, and an
 * existing one is checked: a role that could bypass RLS would void every policy.
 */
export async function ensureAppRole(owner: Queryable, appRole: string): Promise<void> {
  const role = quoteIdent(appRole);
  const existing = await owner.query<{ rolsuper: boolean; rolbypassrls: boolean }>(
    'SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1',
    [appRole],
  );
  const found = existing.rows[0];
  if (found) {
    if (found.rolsuper || found.rolbypassrls) throw new Error(`role ${appRole} is SUPERUSER or BYPASSRLS; it must be neither`);
  } else {
    try {
      await owner.query(`CREATE ROLE ${role} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT`);
    } catch (error) {
      // Another process created it between our check and our CREATE: fine.
      if (sqlState(error) !== '42710' && sqlState(error) !== '23505') throw error;
    }
  }
  // A non-superuser owner must be a member to SET ROLE into it.
  const me = await owner.query<{ rolsuper: boolean }>('SELECT rolsuper FROM pg_roles WHERE rolname = current_user');
  if (!me.rows[0]?.rolsuper) {
    await owner.query(`GRANT ${role} TO CURRENT_USER`).catch((error: unknown) => {
      throw new Error(`cannot grant ${appRole} to the owner; grant it as a superuser`, { cause: error });
    });
  }
}

export interface MigrateResult {
  readonly applied: readonly string[];
  readonly current: number;
}

export async function migrate(db: Pick<Database, 'owner'>, appRole: string): Promise<MigrateResult> {
  const migrations = await loadMigrations();
  await ensureAppRole(db.owner, appRole);
  return db.owner.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [LOCK_KEY]);
    await tx.query(`CREATE TABLE IF NOT EXISTS bulkhead_schema_migrations (
      version int PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const done = await tx.query<{ version: number; name: string; checksum: string }>(
      'SELECT version, name, checksum FROM bulkhead_schema_migrations ORDER BY version',
    );
    for (const row of done.rows) {
      const known = migrations[row.version - 1];
      if (!known) throw new Error(`database has migration ${row.version} (${row.name}) that this build does not know; refusing to run an older build`);
      if (known.checksum !== row.checksum) throw new Error(`migration ${row.version}_${row.name} was edited after it was applied`);
    }
    const applied: string[] = [];
    for (const migration of migrations.slice(done.rows.length)) {
      await tx.exec(migration.sql.replaceAll('${app_role}', quoteIdent(appRole)));
      await tx.query('INSERT INTO bulkhead_schema_migrations (version, name, checksum) VALUES ($1, $2, $3)', [
        migration.version,
        migration.name,
        migration.checksum,
      ]);
      applied.push(`${String(migration.version).padStart(4, '0')}_${migration.name}`);
    }
    return { applied, current: migrations.length };
  });
}

/** For /readyz: is the schema at the version this build expects? */
export async function schemaIsCurrent(owner: Pool): Promise<boolean> {
  const migrations = await loadMigrations();
  try {
    const result = await owner.query<{ version: number | null }>('SELECT max(version) AS version FROM bulkhead_schema_migrations');
    return result.rows[0]?.version === migrations.length;
  } catch (error) {
    if (sqlState(error) === '42P01') return false; // never migrated
    throw error;
  }
}
