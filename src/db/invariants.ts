/**
 * The isolation rules of SPEC §2.1, checked against the live catalog rather than trusted to
 * review: every table holding workspace data has RLS enabled *and* forced with a policy, keeps
 * `workspace_id` NOT NULL and in every unique and foreign key; every view is security_invoker;
 * and the role tenant transactions run as can neither bypass RLS nor own what it queries.
 */
import type { Queryable } from './types.js';

export interface Violation {
  readonly object: string;
  readonly rule: string;
}

export async function checkIsolationInvariants(db: Queryable, schema = 'public'): Promise<Violation[]> {
  const violations: Violation[] = [];

  const tables = await db.query<{ table: string; rls: boolean; forced: boolean; policies: number; nullable: boolean }>(
    `SELECT c.relname AS table, c.relrowsecurity AS rls, c.relforcerowsecurity AS forced,
            (SELECT count(*)::int FROM pg_policy p WHERE p.polrelid = c.oid) AS policies,
            NOT a.attnotnull AS nullable
       FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'workspace_id' AND NOT a.attisdropped
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
      ORDER BY c.relname`,
    [schema],
  );
  for (const t of tables.rows) {
    if (!t.rls) violations.push({ object: t.table, rule: 'row-level security is not enabled' });
    if (!t.forced) violations.push({ object: t.table, rule: 'row-level security is not forced' });
    if (t.policies === 0) violations.push({ object: t.table, rule: 'has no row-level security policy' });
    if (t.nullable) violations.push({ object: t.table, rule: 'workspace_id is nullable' });
  }

  // Primary, unique and foreign keys, and unique indexes that are not constraints.
  const keys = await db.query<{ table: string; name: string; kind: string }>(
    `SELECT c.relname AS table, k.conname AS name, k.contype::text AS kind
       FROM pg_constraint k
       JOIN pg_class c ON c.oid = k.conrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute ws ON ws.attrelid = c.oid AND ws.attname = 'workspace_id' AND NOT ws.attisdropped
      WHERE n.nspname = $1 AND k.contype IN ('p', 'u', 'f') AND NOT (ws.attnum = ANY (k.conkey))
     UNION ALL
     SELECT c.relname, i.relname, 'i'
       FROM pg_index x
       JOIN pg_class i ON i.oid = x.indexrelid
       JOIN pg_class c ON c.oid = x.indrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute ws ON ws.attrelid = c.oid AND ws.attname = 'workspace_id' AND NOT ws.attisdropped
      WHERE n.nspname = $1 AND x.indisunique
        AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid AND k.contype IN ('p', 'u'))
        AND NOT (ws.attnum = ANY (x.indkey::int2[]))
      ORDER BY 1, 2`,
    [schema],
  );
  const kinds: Record<string, string> = { p: 'primary key', u: 'unique key', f: 'foreign key', i: 'unique index' };
  for (const k of keys.rows) violations.push({ object: `${k.table}.${k.name}`, rule: `${kinds[k.kind] ?? k.kind} does not include workspace_id` });

  const views = await db.query<{ view: string; options: string[] | null }>(
    `SELECT c.relname AS view, c.reloptions AS options
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind IN ('v', 'm')`,
    [schema],
  );
  for (const v of views.rows) {
    const invoker = (v.options ?? []).some((o) => /^security_invoker=(true|on|1|yes)$/i.test(o));
    if (!invoker) violations.push({ object: v.view, rule: 'view is not security_invoker' });
  }
  return violations;
}

/** Checks the role the *current* transaction runs as (call it inside `withWorkspace`). */
export async function checkTenantRole(db: Queryable, schema = 'public'): Promise<Violation[]> {
  const { rows } = await db.query<{ role: string; superuser: boolean; bypassrls: boolean; owns: number }>(
    `SELECT r.rolname AS role, r.rolsuper AS superuser, r.rolbypassrls AS bypassrls,
            (SELECT count(*)::int FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND pg_has_role(current_user, c.relowner, 'USAGE')) AS owns
       FROM pg_roles r WHERE r.rolname = current_user`,
    [schema],
  );
  const role = rows[0];
  if (!role) return [{ object: 'current_user', rule: 'role not found' }];
  const violations: Violation[] = [];
  if (role.superuser) violations.push({ object: role.role, rule: 'tenant transactions run as a superuser' });
  if (role.bypassrls) violations.push({ object: role.role, rule: 'tenant transactions run as a BYPASSRLS role' });
  if (role.owns > 0) violations.push({ object: role.role, rule: `tenant transactions run as (a member of) the owner of ${role.owns} relations` });
  return violations;
}
