#!/usr/bin/env node
/**
 * The `bulkhead` command. `serve` runs the server; the rest are operator commands.
 * Configuration comes from the environment only (see README), parsed once and frozen.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { ConfigError, configurationTable, parseConfig } from './config.js';
import { serve, type ServeRole } from './cli/serve.js';
import { createApiKey, createTenant, createWorkspace, keyStatus, ratchetWorkspaceKey, resealWorkspace, rotateRoot, rotateWorkspaceKey, runMigrate, verifyAudit } from './cli/admin-commands.js';
import { allScopes, type Scope } from './identity/scopes.js';

const USAGE = `usage: bulkhead <command>

  serve [--role api|worker|all]             run the server (default role: all)
  migrate                                   apply database migrations
  tenant create --name N --slug S           create a tenant
  workspace create --tenant T --name N --environment E
  api-key create --workspace W --name N --scopes a,b [--cidr C]... [--expires-at ISO]
                                            print a new API key (shown once)
  audit verify [--workspace W]              verify audit chains (exit 1 if any is broken)
  audit verify --checkpoint FILE            verify the chain a signed checkpoint names against it
                                            (exit 1 on checkpoint_mismatch; docs/AUDIT.md)
  keys rotate-root                          rewrap every data key under the newest root key
                                            (development: generates that key in the data folder)
  keys rotate-workspace --workspace W       new data key for W; re-seals W's values under it
  keys reseal --workspace W                 re-seal values still under older data keys
  keys ratchet --workspace W --min N        refuse data keys below version N from now on
  keys status --workspace W                 key versions and values sealed below the current one
  config                                    print the configuration table
`;

class UsageError extends Error {}

function need(values: Record<string, unknown>, name: string): string {
  const value = values[name];
  if (typeof value !== 'string' || value === '') throw new UsageError(`--${name} is required`);
  return value;
}

const print = (value: unknown) => process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      role: { type: 'string' },
      name: { type: 'string' },
      slug: { type: 'string' },
      tenant: { type: 'string' },
      workspace: { type: 'string' },
      environment: { type: 'string' },
      scopes: { type: 'string' },
      cidr: { type: 'string', multiple: true },
      'expires-at': { type: 'string' },
      min: { type: 'string' },
      checkpoint: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const command = positionals.join(' ');
  if (values.help || command === '' || command === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (command === 'config') {
    process.stdout.write(`${configurationTable()}\n`);
    return 0;
  }
  const config = parseConfig(process.env);

  switch (command) {
    case 'serve': {
      const role = (values.role ?? 'all') as ServeRole;
      if (!['api', 'worker', 'all'].includes(role)) throw new UsageError('--role must be api, worker or all');
      await serve(config, role);
      return 0;
    }
    case 'migrate':
      print(await runMigrate(config));
      return 0;
    case 'tenant create':
      print(await createTenant(config, { name: need(values, 'name'), slug: need(values, 'slug') }));
      return 0;
    case 'workspace create':
      print(await createWorkspace(config, { tenantId: need(values, 'tenant'), name: need(values, 'name'), environment: need(values, 'environment') }));
      return 0;
    case 'api-key create': {
      const scopes = need(values, 'scopes').split(',').map((s) => s.trim());
      const unknown = scopes.filter((s) => !(allScopes as readonly string[]).includes(s));
      if (unknown.length > 0) throw new UsageError(`unknown scopes: ${unknown.join(', ')} (known: ${allScopes.join(', ')})`);
      print(await createApiKey(config, { workspaceId: need(values, 'workspace'), name: need(values, 'name'), scopes: scopes as Scope[], allowedCidrs: values.cidr ?? [], expiresAt: values['expires-at'] }));
      return 0;
    }
    case 'audit verify': {
      const checkpoint = values.checkpoint === undefined ? undefined : await readFile(values.checkpoint, 'utf8');
      const reports = await verifyAudit(config, values.workspace, checkpoint);
      print(reports);
      return reports.every((r) => r.valid) ? 0 : 1;
    }
    case 'keys rotate-root':
      print(await rotateRoot(config));
      return 0;
    case 'keys rotate-workspace':
      print(await rotateWorkspaceKey(config, need(values, 'workspace')));
      return 0;
    case 'keys reseal':
      print(await resealWorkspace(config, need(values, 'workspace')));
      return 0;
    case 'keys ratchet': {
      const min = Number(need(values, 'min'));
      if (!Number.isInteger(min) || min < 1) throw new UsageError('--min must be a positive integer');
      print(await ratchetWorkspaceKey(config, need(values, 'workspace'), min));
      return 0;
    }
    case 'keys status':
      print(await keyStatus(config, need(values, 'workspace')));
      return 0;
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof ConfigError) process.stderr.write(`${error.message}\n`);
    else if (error instanceof UsageError) process.stderr.write(`${error.message}\n\n${USAGE}`);
    else if (error instanceof Error && 'code' in error && typeof error.code === 'string') process.stderr.write(`${error.code}: ${error.message}\n`);
    else process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 2;
  },
);
