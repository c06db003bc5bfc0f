// Benchmark "vault": opening a sealed credential with a cached data key, against a raw
// AES-256-GCM decrypt of the same bytes with the same key and associated data, in the same
// process and run. Target (issue 3): open keeps >= 50% of raw decrypt's operations per second.
//
// The vault's open does: header parse and version check, ring-state cache lookup, DEK cache
// lookup, associated-data construction, then the same decrypt.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TARGET = 0.5;
const load = (p) => import(path.join(root, 'dist', p));

export async function run({ durationSeconds, rounds, log }) {
  const { parseConfig } = await load('config.js');
  const { createCore } = await load('app.js');
  const { databaseRef } = await load('db/open.js');
  const { openPGlite } = await load('db/pglite.js');
  const { migrate } = await load('db/migrate.js');
  const { createLogger } = await load('logging.js');
  const { systemRuntime } = await load('runtime.js');
  const { valueAad } = await load('vault/envelope.js');

  log('\n== vault: open with a cached data key vs raw AES-256-GCM ==');
  const db = await openPGlite();
  await migrate(db, 'bulkhead_app');
  const config = { ...parseConfig({ LOG_LEVEL: 'silent' }), appRole: 'bulkhead_app' };
  const secrets = { adminToken: 'x'.repeat(40), apiKeyPepper: 'y'.repeat(40), rootKeys: [{ version: 1, key: randomBytes(32) }] };
  const core = createCore({ config, secrets, logger: createLogger({ level: 'silent' }), db: databaseRef(db), runtime: systemRuntime });
  const ctx = { actor: { type: 'cli', id: 'bench' } };
  const tenant = await core.tenancy.createTenant(ctx, { name: 'Bench', slug: 'bench' });
  const workspace = await core.tenancy.createWorkspace(ctx, tenant.id, { name: 'w', environment: 'production' });
  const place = { table: 'connections', rowId: 'con_bench', column: 'credentials' };
  const plaintext = JSON.stringify({ type: 'api_key', apiKey: randomBytes(24).toString('base64url') });

  const result = await core.withWorkspace(workspace.id, async (tx) => {
    const sealer = core.vault.workspace(tx);
    const sealed = await sealer.seal(place, plaintext);
    if ((await sealer.openText(place, sealed)) !== plaintext) throw new Error('round trip failed');
    return { sealed };
  });
  // Raw baseline: the same plaintext, nonce and associated data under a key of the same size,
  // decrypted with nothing around it (the DEK itself never leaves the vault).
  const rawKey = randomBytes(32);
  const aad = valueAad(workspace.id, place);
  const nonce = result.sealed.subarray(5, 17);
  const cipher = createCipheriv('aes-256-gcm', rawKey, nonce);
  cipher.setAAD(aad);
  const rawBody = Buffer.concat([cipher.update(Buffer.from(plaintext)), cipher.final()]);
  const rawTag = cipher.getAuthTag();
  const rawDecrypt = () => {
    const d = createDecipheriv('aes-256-gcm', rawKey, nonce);
    d.setAAD(aad);
    d.setAuthTag(rawTag);
    return Buffer.concat([d.update(rawBody), d.final()]);
  };

  const measure = async (fn) => {
    const until = performance.now() + durationSeconds * 1000;
    let ops = 0;
    while (performance.now() < until) {
      for (let i = 0; i < 1000; i++) await fn();
      ops += 1000;
    }
    return ops / durationSeconds;
  };
  const raw = [];
  const vault = [];
  await core.withWorkspace(workspace.id, async (tx) => {
    const sealer = core.vault.workspace(tx);
    await measure(() => sealer.open(place, result.sealed)); // warm-up
    for (let r = 0; r < rounds; r++) {
      raw.push(await measure(async () => rawDecrypt()));
      vault.push(await measure(() => sealer.open(place, result.sealed)));
    }
  });
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const rawOps = Math.round(mean(raw));
  const vaultOps = Math.round(mean(vault));
  const ratio = vaultOps / rawOps;
  const pass = ratio >= TARGET;
  log(`raw decrypt ${rawOps} ops/s | vault open ${vaultOps} ops/s | ratio ${(ratio * 100).toFixed(1)}% (target >= ${TARGET * 100}%: ${pass ? 'PASS' : 'FAIL'}) | DEK unwraps ${core.vault.stats.dekUnwraps}`);
  await core.relayLog.stop();
  await core.egress.close();
  await core.lastUsed.stop();
  await db.close();
  return { results: { benchmark: 'vault', durationSeconds, rounds, rawOpsPerSecond: rawOps, vaultOpsPerSecond: vaultOps, ratio, target: TARGET, pass, dekUnwraps: core.vault.stats.dekUnwraps }, pass };
}
