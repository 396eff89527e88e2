// Small helpers shared by the setup steps (Node built-ins only).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Where downloaded and built artifacts are cached across clones (outside node_modules). */
export const CACHE_DIR = process.env.EMSEG_CACHE_DIR || join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'emseg');

/** A setup failure that names the step and tells the user how to fix it. */
export class SetupError extends Error {
  constructor(message, fix) {
    super(message);
    this.fix = fix;
    this.step = '?';
  }
}

export async function step(name, fn) {
  const t0 = Date.now();
  try {
    const detail = await fn();
    console.error(`[setup] ${name}: ${detail ?? 'ok'} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (err) {
    if (err instanceof SetupError) err.step = name;
    throw err;
  }
}

/** Runs a command, streaming its output to stderr; throws SetupError on failure. */
export function run(cmd, args, { cwd = ROOT, env = process.env, fix, quiet = false } = {}) {
  const res = spawnSync(cmd, args, { cwd, env, stdio: quiet ? 'pipe' : ['ignore', 2, 2], encoding: 'utf8' });
  if (res.error) throw new SetupError(`could not start \`${cmd}\`: ${res.error.message}`, fix);
  if (res.status !== 0) {
    const tail = quiet ? `\n${(res.stdout ?? '') + (res.stderr ?? '')}`.slice(-4000) : '';
    throw new SetupError(`\`${cmd} ${args.join(' ')}\` exited with ${res.status}${tail}`, fix);
  }
  return res.stdout ?? '';
}

export function hashOf(...parts) {
  const h = createHash('sha256');
  for (const p of parts) h.update(existsSync(p) ? readFileSync(p) : Buffer.from(String(p)));
  return h.digest('hex').slice(0, 16);
}

export function readStamp(path) {
  return existsSync(path) ? readFileSync(path, 'utf8').trim() : null;
}

/** Writes a file atomically (temp file + rename). */
export function writeAtomic(path, content) {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, content);
  renameSync(tmp, path);
}

/**
 * `pip download` flags for one pinned binary wheel: no dependencies, binaries only, no pip cache
 * (the wheels are large and we cache what we extract, not the wheel); EMSEG_WHEELHOUSE=DIR takes
 * them from DIR instead of PyPI.
 */
export function pipDownloadArgs() {
  const args = ['--no-deps', '--only-binary=:all:', '--no-cache-dir', '--disable-pip-version-check', '--progress-bar', 'off'];
  if (process.env.EMSEG_WHEELHOUSE) args.push('--no-index', '--find-links', process.env.EMSEG_WHEELHOUSE);
  return args;
}
