// Helpers shared by the benchmarks: child processes that print their URL, HTTP polling, and
// autocannon runs summarised as { requestsPerSecond, p99Ms, errors, non2xx }.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';

/** Spawns `node args…` and resolves once it printed "listening on <url>". */
export async function startChild(args, env, { timeoutMs = 30_000 } = {}) {
  const startedAt = performance.now();
  const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`no URL within ${timeoutMs} ms:\n${output}`)); }, timeoutMs);
    const onData = (chunk) => {
      output += chunk.toString();
      const match = /listening on (http:\/\/\S+)/.exec(output);
      if (match) { clearTimeout(timer); resolve(match[1]); }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (chunk) => { output += chunk.toString(); });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`child exited with ${code}:\n${output}`)); });
  });
  return {
    url,
    child,
    startedAt,
    output: () => output,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await once(child, 'exit');
      clearTimeout(timer);
    },
  };
}

/** Polls `url` until it answers 200; returns ms since `since` (a performance.now() value). */
export async function msUntilOk(url, since, { timeoutMs = 30_000 } = {}) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      const response = await fetch(url);
      await response.arrayBuffer();
      if (response.status === 200) return performance.now() - since;
    } catch { /* not listening yet */ }
    if (performance.now() > deadline) throw new Error(`${url} not 200 within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export async function json(method, url, token, body) {
  const response = await fetch(url, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${url} → ${response.status}: ${text}`);
  return JSON.parse(text);
}

/** One autocannon run; every non-2xx or socket error is counted and reported, never hidden. */
export async function load({ url, method = 'GET', headers = {}, body, durationSeconds, connections }) {
  const result = await autocannon({ url, method, headers, body, duration: durationSeconds, connections, pipelining: 1 });
  return {
    requestsPerSecond: Math.round(result.requests.average),
    p99Ms: result.latency.p99,
    requests: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
  };
}

/** Resident set size of a process in MiB, from /proc (Linux); null elsewhere rather than a guess. */
export function rssMb(pid) {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Math.round(Number(match[1]) / 1024) : null;
  } catch {
    return null;
  }
}

export const ratio = (value, baseline) => (baseline > 0 ? value / baseline : NaN);
export const pct = (r) => `${(r * 100).toFixed(1)}%`;
export const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

/**
 * A closed-loop load generator on undici (the client the relay itself uses): `concurrency`
 * workers each send the next request as soon as the last one answered, for `durationSeconds`.
 * Reports throughput and latency percentiles; every non-2xx or error is counted.
 */
export async function undiciLoad({ url, method = 'GET', headers = {}, body, durationSeconds, concurrency }) {
  const { Agent, request } = await import('undici');
  const dispatcher = new Agent({ connections: concurrency, keepAliveTimeout: 30_000 });
  const latencies = [];
  let errors = 0;
  let non2xx = 0;
  const until = performance.now() + durationSeconds * 1000;
  const worker = async () => {
    while (performance.now() < until) {
      const started = performance.now();
      try {
        const response = await request(url, { dispatcher, method, headers, body });
        await response.body.arrayBuffer();
        if (response.statusCode < 200 || response.statusCode > 299) non2xx++;
        latencies.push(performance.now() - started);
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  await dispatcher.close();
  latencies.sort((a, b) => a - b);
  const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return { requestsPerSecond: Math.round(latencies.length / durationSeconds), p50Ms: at(0.5), p99Ms: at(0.99), requests: latencies.length, errors, non2xx };
}
