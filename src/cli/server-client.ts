/**
 * How a CLI command reaches the running server: its HTTP API with the admin token. Platform state
 * (tenants, workspaces, keys, the audit chains) has one writer, the server; a CLI that opened the
 * embedded database beside it would write a second copy that one of the two later overwrites.
 *
 * Where the server is: `--url`, else BULKHEAD_URL, else http://127.0.0.1:PORT. The admin token:
 * `--token`, else BULKHEAD_ADMIN_TOKEN, else the data folder's secrets.json (what a local
 * development server generated). Problems the server answers are thrown with its own `code`.
 */
import type { ClientConfig } from '../config.js';
import { readStoredAdminToken, secretsFile } from '../secrets.js';

/**
 * A failure the CLI prints as `code: message` and exits non-zero on. `code` is the server's own
 * (problem+json) or one of the CLI's side of the connection: `server_unreachable`,
 * `admin_token_missing`, `unexpected_response` (not a Bulkhead answer), `bad_request` (a bad --url).
 */
export class CliError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export interface ServerFlags {
  readonly url?: string | undefined;
  readonly token?: string | undefined;
}

export interface ServerClient {
  readonly url: string;
  request<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T>;
  /** Every item of a paginated list, following `nextCursor`. */
  all<T>(path: string): Promise<T[]>;
}

function baseUrl(flags: ServerFlags, config: ClientConfig): string {
  const raw = flags.url ?? config.serverUrl ?? `http://127.0.0.1:${String(config.port)}`;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CliError('bad_request', `--url must be an absolute http(s) URL, got "${raw}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CliError('bad_request', `--url must be an http(s) URL, got "${raw}"`);
  return url.toString().replace(/\/$/, '');
}

async function adminToken(flags: ServerFlags, config: ClientConfig): Promise<string> {
  const token = flags.token ?? config.adminToken ?? (await readStoredAdminToken(config.dataDir));
  if (token === undefined || token === '') {
    throw new CliError('admin_token_missing', `no admin token: pass --token, set BULKHEAD_ADMIN_TOKEN, or run where the server's data folder is (${secretsFile(config.dataDir)} was not found; set BULKHEAD_DATA_DIR to the server's)`);
  }
  return token;
}

interface ProblemBody {
  code?: unknown;
  detail?: unknown;
}

export async function serverClient(flags: ServerFlags, config: ClientConfig): Promise<ServerClient> {
  const url = baseUrl(flags, config);
  const token = await adminToken(flags, config);

  async function request<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    let response: Response;
    try {
      response = await fetch(`${url}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(60_000),
      });
    } catch (error) {
      const reason = error instanceof Error ? ((error.cause as Error | undefined)?.message ?? error.message) : String(error);
      throw new CliError('server_unreachable', `no Bulkhead server at ${url} (${reason}); start it with npm start, or use --offline where offered (see docs/CLI.md)`);
    }
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      throw new CliError('unexpected_response', `${url}${path} answered ${String(response.status)} with a body that is not JSON: is ${url} a Bulkhead server?`, response.status);
    }
    if (!response.ok) {
      const problem = (parsed ?? {}) as ProblemBody;
      if (typeof problem.code === 'string') {
        throw new CliError(problem.code, typeof problem.detail === 'string' ? problem.detail : response.statusText, response.status);
      }
      throw new CliError('unexpected_response', `${url}${path} answered ${String(response.status)} ${response.statusText}`, response.status);
    }
    return parsed as T;
  }

  return {
    url,
    request,
    async all<T>(path: string) {
      const items: T[] = [];
      let cursor: string | null = null;
      do {
        const query = `limit=200${cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`}`;
        const page: { data: T[]; nextCursor: string | null } = await request('GET', `${path}${path.includes('?') ? '&' : '?'}${query}`);
        items.push(...page.data);
        cursor = page.nextCursor;
      } while (cursor !== null);
      return items;
    },
  };
}
