#!/usr/bin/env node
/**
 * The `bulkhead` command (`npx bulkhead …` in a clone, or on PATH after `npm link`). It runs the
 * build in dist/ when there is one, else the TypeScript source through tsx, so a fresh clone
 * needs no build step. `BULKHEAD_FROM_SOURCE=1` runs the source even when dist/ exists (a build
 * goes stale when the source changes; `npm run build` refreshes it).
 */
import { existsSync } from 'node:fs';

const dist = new URL('../dist/main.js', import.meta.url);
const source = new URL('../src/main.ts', import.meta.url);

if (existsSync(dist) && process.env.BULKHEAD_FROM_SOURCE !== '1') {
  await import(dist.href);
} else if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  await import(source.href);
} else {
  console.error('bulkhead: neither dist/main.js nor src/main.ts found; run `npm run build`');
  process.exitCode = 2;
}
