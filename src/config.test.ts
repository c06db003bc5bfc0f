import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, configurationTable, parseConfig } from './config.js';
import { resolveSecrets } from './secrets.js';

const problemsOf = (env: Record<string, string>): string[] => {
  try {
    parseConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
  return [];
};

describe('configuration', () => {
  it('lists every problem at once', () => {
    const problems = problemsOf({ PORT: 'abc', LOG_LEVEL: 'loud', DATABASE_URL: 'mysql://x', BULKHEAD_ROOT_KEYS: '1:short', BULKHEAD_RATE_LIMIT_KEY_PER_MINUTE: '0' });
    expect(problems).toHaveLength(5);
    for (const name of ['PORT', 'LOG_LEVEL', 'DATABASE_URL', 'BULKHEAD_ROOT_KEYS', 'BULKHEAD_RATE_LIMIT_KEY_PER_MINUTE']) {
      expect(problems.some((p) => p.startsWith(name))).toBe(true);
    }
  });

  it('requires the database and every secret in production, and never defaults a secret', () => {
    const problems = problemsOf({ BULKHEAD_ENV: 'production' });
    expect(problems.map((p) => p.split(' ')[0]).sort()).toEqual(['BULKHEAD_ADMIN_TOKEN', 'BULKHEAD_API_KEY_PEPPER', 'BULKHEAD_AUDIT_SIGNING_KEYS', 'BULKHEAD_ROOT_KEYS', 'DATABASE_URL']);
    const dev = parseConfig({});
    expect([dev.adminToken, dev.apiKeyPepper, dev.rootKeys, dev.auditSigningKeys]).toEqual([undefined, undefined, undefined, undefined]);
    expect(problemsOf({ BULKHEAD_ADMIN_TOKEN: 'short' })).toEqual(['BULKHEAD_ADMIN_TOKEN must be at least 32 characters']);
  });

  it("is documented in the README by the table the parser's own definitions produce", async () => {
    const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8');
    expect(readme).toContain(configurationTable());
  });

  it('is frozen', () => {
    const config = parseConfig({ PORT: '9000' });
    expect(config.port).toBe(9000);
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.rateLimits)).toBe(true);
  });

  it('parses versioned root keys, the highest being current', () => {
    const k = (b: number) => Buffer.alloc(32, b).toString('base64');
    const config = parseConfig({ BULKHEAD_ROOT_KEYS: `2:${k(2)},1:${k(1)}` });
    expect(config.rootKeys?.map((r) => r.version)).toEqual([1, 2]);
    expect(problemsOf({ BULKHEAD_ROOT_KEYS: `1:${k(1)},1:${k(2)}` })).toEqual(['BULKHEAD_ROOT_KEYS key versions must be unique']);
  });
});

describe('development secrets', () => {
  it('are generated once into the data folder with mode 0600 and reused', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'bk-secrets-'));
    try {
      const config = parseConfig({ BULKHEAD_DATA_DIR: dir });
      const first = await resolveSecrets(config);
      expect([...first.generated].sort()).toEqual(['adminToken', 'apiKeyPepper', 'auditSigningKeys', 'rootKeys']);
      const file = path.join(dir, 'secrets.json');
      expect((await stat(file)).mode & 0o777).toBe(0o600);
      const second = await resolveSecrets(config);
      expect(second.generated).toEqual([]);
      expect(second.secrets.adminToken).toBe(first.secrets.adminToken);
      expect(second.secrets.rootKeys[0]?.key.equals(first.secrets.rootKeys[0]?.key ?? Buffer.alloc(0))).toBe(true);
      expect(second.secrets.auditSigningKeys[0]?.seed?.equals(first.secrets.auditSigningKeys[0]?.seed ?? Buffer.alloc(0))).toBe(true);
      // An environment value wins over the stored one.
      const fromEnv = await resolveSecrets(parseConfig({ BULKHEAD_DATA_DIR: dir, BULKHEAD_ADMIN_TOKEN: 'x'.repeat(40) }));
      expect(fromEnv.secrets.adminToken).toBe('x'.repeat(40));
      expect(JSON.parse(await readFile(file, 'utf8'))).toHaveProperty('adminToken', first.secrets.adminToken);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('an existing data folder from before audit checkpoints gains a signing key and keeps the rest', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'bk-secrets-'));
    try {
      const config = parseConfig({ BULKHEAD_DATA_DIR: dir });
      const first = await resolveSecrets(config);
      const file = path.join(dir, 'secrets.json');
      const { auditSigningKeys: _dropped, ...older } = JSON.parse(await readFile(file, 'utf8')) as Record<string, string>;
      await writeFile(file, JSON.stringify(older));
      const upgraded = await resolveSecrets(config);
      expect(upgraded.generated).toEqual(['auditSigningKeys']);
      expect(upgraded.secrets.adminToken).toBe(first.secrets.adminToken);
      expect(upgraded.secrets.auditSigningKeys.map((k) => k.version)).toEqual([1]);
      expect(JSON.parse(await readFile(file, 'utf8'))).toHaveProperty('auditSigningKeys');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
