#!/usr/bin/env node
/**
 * The `bulkhead` command (docs/CLI.md). `serve` runs the server. The platform commands (tenant,
 * workspace, api-key, audit) go through the running server's HTTP API unless given --offline;
 * `migrate`, `keys …` and the --offline forms open the database themselves, which on the embedded
 * database means only while no server holds its data folder. Configuration comes from the
 * environment only (see README), parsed once and frozen.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { ConfigError, configurationTable, parseClientConfig, parseConfig } from './config.js';
import { serve, type ServeRole } from './cli/serve.js';
import * as offline from './cli/admin-commands.js';
import * as online from './cli/platform-commands.js';
import { serverClient } from './cli/server-client.js';
import { allScopes, type Scope } from './identity/scopes.js';

const USAGE = `usage: bulkhead <command> [flags]        (reference: docs/CLI.md)

Through the running server (its HTTP API; --offline opens the stopped database instead):
  tenant create --name N --slug S           create a tenant
  workspace create --tenant T --name N --environment E
  api-key create --workspace W --name N --scopes a,b [--cidr C]... [--expires-at ISO]
                                            print a new API key (shown once)
  audit verify [--workspace W]              verify audit chains (exit 1 if any is broken)
  audit verify --checkpoint FILE            verify the chain a signed checkpoint names against it
                                            (exit 1 on checkpoint_mismatch; docs/AUDIT.md)
    --url URL        the server (else BULKHEAD_URL, else http://127.0.0.1:$PORT)
    --token T        the admin token (else BULKHEAD_ADMIN_TOKEN, else the data folder's secrets.json)
    --offline        open the database directly; refused while a server holds the data folder

On the database itself (the embedded one only while no server runs):
  migrate                                   apply database migrations
  keys rotate-root                          rewrap every data key under the newest root key
                                            (development: generates that key in the data folder)
  keys rotate-workspace --workspace W       new data key for W; re-seals W's values under it
  keys reseal --workspace W                 re-seal values still under older data keys
  keys ratchet --workspace W --min N        refuse data keys below version N from now on
  keys status --workspace W                 key versions and values sealed below the current one

  serve [--role api|worker|all]             run the server (default role: all)
  config                                    print the configuration table
`;

/** Commands that talk to the running server unless given --offline. */
const SERVER_COMMANDS = new Set(['tenant create', 'workspace create', 'api-key create', 'audit verify']);

class UsageError extends Error {}

function need(values: Record<string, unknown>, name: string): string {
  const value = values[name];
  if (typeof value !== 'string' || value === '') throw new UsageError(`--${name} is required`);
  return value;
}

const print = (value: unknown) => process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);

function scopesOf(values: Record<string, unknown>): Scope[] {
  const scopes = need(values, 'scopes').split(',').map((s) => s.trim());
  const unknown = scopes.filter((s) => !(allScopes as readonly string[]).includes(s));
  if (unknown.length > 0) throw new UsageError(`unknown scopes: ${unknown.join(', ')} (known: ${allScopes.join(', ')})`);
  return scopes as Scope[];
}

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
      url: { type: 'string' },
      token: { type: 'string' },
      offline: { type: 'boolean' },
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
  const viaServer = SERVER_COMMANDS.has(command) && values.offline !== true;
  if (!viaServer && (values.url !== undefined || values.token !== undefined)) {
    throw new UsageError(`${command} opens the database itself: --url and --token do not apply${SERVER_COMMANDS.has(command) ? ' with --offline' : ''}`);
  }

  if (viaServer) {
    const server = await serverClient({ url: values.url, token: values.token }, parseClientConfig(process.env));
    switch (command) {
      case 'tenant create':
        print(await online.createTenant(server, { name: need(values, 'name'), slug: need(values, 'slug') }));
        return 0;
      case 'workspace create':
        print(await online.createWorkspace(server, { tenantId: need(values, 'tenant'), name: need(values, 'name'), environment: need(values, 'environment') }));
        return 0;
      case 'api-key create':
        print(await online.createApiKey(server, { workspaceId: need(values, 'workspace'), name: need(values, 'name'), scopes: scopesOf(values), allowedCidrs: values.cidr ?? [], expiresAt: values['expires-at'] }));
        return 0;
      default: {
        const checkpoint = values.checkpoint === undefined ? undefined : await readFile(values.checkpoint, 'utf8');
        const reports = await online.verifyAudit(server, values.workspace, checkpoint);
        print(reports);
        return reports.every((r) => r.valid) ? 0 : 1;
      }
    }
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
      print(await offline.runMigrate(config));
      return 0;
    case 'tenant create':
      print(await offline.createTenant(config, { name: need(values, 'name'), slug: need(values, 'slug') }));
      return 0;
    case 'workspace create':
      print(await offline.createWorkspace(config, { tenantId: need(values, 'tenant'), name: need(values, 'name'), environment: need(values, 'environment') }));
      return 0;
    case 'api-key create':
      print(await offline.createApiKey(config, { workspaceId: need(values, 'workspace'), name: need(values, 'name'), scopes: scopesOf(values), allowedCidrs: values.cidr ?? [], expiresAt: values['expires-at'] }));
      return 0;
    case 'audit verify': {
      const checkpoint = values.checkpoint === undefined ? undefined : await readFile(values.checkpoint, 'utf8');
      const reports = await offline.verifyAudit(config, values.workspace, checkpoint);
      print(reports);
      return reports.every((r) => r.valid) ? 0 : 1;
    }
    case 'keys rotate-root':
      print(await offline.rotateRoot(config));
      return 0;
    case 'keys rotate-workspace':
      print(await offline.rotateWorkspaceKey(config, need(values, 'workspace')));
      return 0;
    case 'keys reseal':
      print(await offline.resealWorkspace(config, need(values, 'workspace')));
      return 0;
    case 'keys ratchet': {
      const min = Number(need(values, 'min'));
      if (!Number.isInteger(min) || min < 1) throw new UsageError('--min must be a positive integer');
      print(await offline.ratchetWorkspaceKey(config, need(values, 'workspace'), min));
      return 0;
    }
    case 'keys status':
      print(await offline.keyStatus(config, need(values, 'workspace')));
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
