/**
 * What the block benchmarks (bench-blocks.mjs, acceptance.mjs) share: the built CLI run as a child
 * with the peak RSS of its process tree sampled from /proc, digests of every file of an output
 * store, a redis-server on a free port with its traffic counters, and the report written
 * atomically.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { loadavg } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const MAIN = join(root, 'apps', 'finetune', 'dist', 'main.js');
export const round = (v, d = 2) => Number(v.toFixed(d));
export const load = () => loadavg().map((v) => round(v));
export const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

/** A built library of the workspace (`tsc -b` first). */
export const lib = (name) => import(join(root, 'libs', name, 'dist', 'index.js'));

/** Peak RSS (MB) of every `predict` / `worker` process in the tree under `pid`, sampled every `everyMs` until `stop()`. */
export function sampleTree(pid, everyMs = 200) {
  const peaks = new Map();
  const tree = () => {
    const parent = new Map();
    for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
      try {
        const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
        parent.set(Number(p), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
      } catch {
        /* gone */
      }
    }
    const found = new Set([pid]);
    for (let grew = true; grew;) {
      grew = false;
      for (const [p, pp] of parent)
        if (found.has(pp) && !found.has(p)) {
          found.add(p);
          grew = true;
        }
    }
    return found;
  };
  const tick = () => {
    for (const p of tree()) {
      try {
        const hwm = Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1]) / 1024;
        const command = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').slice(2, 3).join(' ');
        if (command && hwm) peaks.set(p, { pid: p, command, peakMB: round(Math.max(hwm, peaks.get(p)?.peakMB ?? 0), 1) });
      } catch {
        /* gone */
      }
    }
  };
  const timer = setInterval(tick, everyMs);
  return () => {
    clearInterval(timer);
    return [...peaks.values()].filter((p) => p.command === 'predict' || p.command === 'worker');
  };
}

/**
 * Runs the built CLI with `args`; `done` resolves with its status, signal, output, wall time and
 * the peak RSS of its processes. `onStderr(line)` sees each line of its stderr.
 */
export function cli(args, { env = {}, sampleMs = 200, onStderr } = {}) {
  const t0 = performance.now();
  const child = spawn(process.execPath, [MAIN, ...args], { cwd: root, env: { ...process.env, ...env } });
  const stop = sampleTree(child.pid, sampleMs);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => {
    stderr += d;
    if (onStderr) for (const line of String(d).split('\n')) onStderr(line);
  });
  const done = new Promise((ok) =>
    child.on('close', (status, signal) => ok({ status, signal, stdout, stderr, seconds: (performance.now() - t0) / 1000, processes: stop() })),
  );
  return { child, stderr: () => stderr, done };
}

/** Waits until `read()` matches `pattern` (polling every 100 ms), or fails after `ms`. */
export async function until(read, pattern, ms = 900_000) {
  const t0 = Date.now();
  for (;;) {
    const m = read().match(pattern);
    if (m) return m;
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${pattern}`);
    await sleep(100);
  }
}

/** relative path -> sha256 of every file of an output store (its job state excluded). */
export function chunkDigests(dir) {
  const files = new Map();
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.name === '.emseg-job') continue;
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else files.set(relative(dir, p), createHash('sha256').update(readFileSync(p)).digest('hex'));
    }
  };
  walk(dir);
  return files;
}

/** One digest of all of an output store's files (equal exactly when every file is). */
export function storeDigest(dir) {
  const h = createHash('sha256');
  for (const [path, digest] of [...chunkDigests(dir)].sort(([a], [b]) => a.localeCompare(b))) h.update(`${path}\0${digest}\n`);
  return h.digest('hex').slice(0, 16);
}

const freePort = () =>
  new Promise((done) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => done(port));
    });
  });

/** A redis-server on 127.0.0.1 at a free port, no persistence (`dir` for its files). */
export async function startRedis(dir) {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise((done, fail) => {
    const timer = setTimeout(() => fail(new Error('redis-server did not start in 10 s')), 10_000);
    child.once('error', (err) => fail(new Error(`cannot start redis-server (${err.message}); node tools/setup/setup.mjs installs it`)));
    child.stdout.on('data', (d) => String(d).includes('Ready to accept') && (clearTimeout(timer), done()));
  });
  return { url: `redis://127.0.0.1:${port}`, stop: () => child.kill('SIGTERM') };
}

/** Bytes in + out and commands processed by the Redis at `url` so far. */
export async function redisStats(url) {
  const { Redis } = await import('ioredis');
  const r = new Redis(url);
  const info = await r.info('stats');
  r.disconnect();
  const get = (k) => Number(new RegExp(`^${k}:(\\d+)`, 'm').exec(info)[1]);
  return { bytes: get('total_net_input_bytes') + get('total_net_output_bytes'), commands: get('total_commands_processed') };
}

/** Prints the report and writes it atomically to `file`. */
export async function writeReport(file, report) {
  const { writeJsonAtomic } = await lib('fs');
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  await writeJsonAtomic(file, report);
}
