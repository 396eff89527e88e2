/**
 * The local side of artifacts: which files a path stands for, what they are called in the run,
 * taking a consistent snapshot of them, and downloading a run's artifacts (by run id and path, or
 * by a `runs:/<run_id>/<path>` URI, as a fine-tuning run does to fetch a pretrained encoder).
 */
import { openSync, readdirSync, readFileSync, statSync, fstatSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import type { ArtifactBody, MlflowClient } from './client.js';
import { MlflowApiError, TrackingError, TrackingInputError } from './errors.js';
import { pythonNormpath } from './validate.js';

/** What happened to the files of one logArtifact call. Never rejected: failures are listed. */
export interface ArtifactUploadResult {
  /** Artifact paths (relative to the run's artifact root) now on the server. */
  uploaded: string[];
  /**
   * Not uploaded yet because the server does not answer: journaled, retried in the background
   * and by end(); `sync` uploads them if the run ends first.
   */
  deferred: string[];
  failed: Array<{ artifactPath: string; reason: string }>;
}

/** Files up to this size are read into memory when logged (a true snapshot); larger ones are held open. */
export const SNAPSHOT_IN_MEMORY_BYTES = 1 << 20;

/**
 * Checks an artifact path: relative, '/'-separated, without '.', '..' or empty segments.
 * '' (the artifact root) is allowed when `allowRoot`.
 * @example validateArtifactPath('checkpoints/epoch-3') // 'checkpoints/epoch-3'
 */
export function validateArtifactPath(path: string, field = 'artifact path', allowRoot = true): string {
  if (typeof path !== 'string') throw new TrackingInputError(field, path, 'expected a string');
  if (path === '' && allowRoot) return '';
  const norm = pythonNormpath(path);
  if (path === '' || norm !== path || norm.startsWith('..') || norm.startsWith('/') || path.includes('\\') || norm === '.') {
    throw new TrackingInputError(field, path, "expected a relative '/'-separated path without '.', '..', '//' or a trailing '/' (e.g. 'checkpoints/epoch-3')");
  }
  return path;
}

/** Joins artifact path parts, skipping empty ones. */
export function joinArtifactPath(...parts: string[]): string {
  return parts.filter((p) => p !== '').join('/');
}

/** Every regular file under `dir` (recursively, following links), sorted, with '/'-separated relative paths. */
export function listLocalFiles(dir: string): Array<{ path: string; relativePath: string }> {
  const out: Array<{ path: string; relativePath: string }> = [];
  const walk = (current: string): void => {
    const entries = readdirSync(current).sort();
    for (const name of entries) {
      const full = join(current, name);
      const stat = statSync(full);
      if (stat.isDirectory()) walk(full);
      else if (stat.isFile()) out.push({ path: full, relativePath: relative(dir, full).split(sep).join('/') });
    }
  };
  walk(dir);
  return out;
}

/**
 * Pins a file's content at the moment it is logged: small files are read into memory; larger
 * ones are opened, so a later atomic replace (write temp + rename, as checkpoints are written)
 * does not change what gets uploaded.
 */
export function snapshotFile(path: string): { body: ArtifactBody; size: number; mtimeMs: number } {
  const stat = statSync(path);
  if (stat.size <= SNAPSHOT_IN_MEMORY_BYTES) {
    const bytes = readFileSync(path);
    return { body: bytes, size: bytes.length, mtimeMs: stat.mtimeMs };
  }
  const fd = openSync(path, 'r');
  const opened = fstatSync(fd);
  return { body: { path, fd, size: opened.size }, size: opened.size, mtimeMs: opened.mtimeMs };
}

/** A parsed `runs:/<run_id>/<path>` URI. */
export interface RunsUri {
  runId: string;
  /** Artifact path inside the run ('' for the artifact root). */
  path: string;
}

/**
 * Parses MLflow's run-relative artifact URI.
 * @example parseRunsUri('runs:/0d8f3c0a9b5e4f6b8a7c6d5e4f3a2b1c/encoder') // { runId: '0d8f...', path: 'encoder' }
 */
export function parseRunsUri(uri: string): RunsUri {
  const match = /^runs:\/+([^/]+)(?:\/(.*))?$/.exec(uri);
  if (!match) throw new TrackingInputError('runs URI', uri, "expected 'runs:/<run_id>/<artifact path>'");
  const path = (match[2] ?? '').replace(/\/+$/, '');
  return { runId: match[1], path: validateArtifactPath(path, 'runs URI path') };
}

/**
 * Downloads the artifact `path` of a run (a file or a whole directory) under `destDir`, keeping
 * its path: `downloadArtifacts(client, id, 'encoder', '/tmp/x')` writes `/tmp/x/encoder/...` and
 * returns `/tmp/x/encoder`. Files are written atomically. Throws a TrackingError naming the run
 * and path when there is no such artifact.
 */
export async function downloadArtifacts(client: MlflowClient, runId: string, path: string, destDir: string): Promise<string> {
  validateArtifactPath(path);
  const run = await client.getRun(runId);
  const root = resolve(destDir);
  const target = (artifactPath: string): string => {
    const local = resolve(root, ...artifactPath.split('/'));
    if (local !== root && !local.startsWith(root + sep)) throw new TrackingError(`artifact path '${artifactPath}' of run ${runId} would escape ${root}`);
    return local;
  };
  const entries = await client.listArtifacts(runId, path);
  if (entries.length === 0) {
    if (path === '') return root;
    try {
      await client.downloadArtifact(run.info.artifactUri, path, target(path));
    } catch (err) {
      if (err instanceof MlflowApiError && err.status === 404) {
        throw new TrackingError(`run ${runId} has no artifact '${path}' (server ${client.trackingUri})`);
      }
      throw err;
    }
    return target(path);
  }
  const pending = [...entries];
  while (pending.length > 0) {
    const entry = pending.shift()!;
    if (entry.isDir) pending.push(...(await client.listArtifacts(runId, entry.path)));
    else await client.downloadArtifact(run.info.artifactUri, entry.path, target(entry.path));
  }
  return target(path);
}
