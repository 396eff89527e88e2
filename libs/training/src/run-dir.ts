/**
 * A run folder belongs to one run. `claimRunDir` enforces that before any work starts:
 *
 *   - the folder (and its parents) must be creatable and writable: a clear error, not ENOTDIR;
 *   - a lock (`.emseg-lock`: pid, host, start time) is taken with an exclusive create and held
 *     until the process exits, so two live runs can never share a folder; a lock whose process is
 *     gone is taken over, and the takeover is reported;
 *   - a folder that already holds a run is refused unless the caller resumes it (`resume`) or
 *     asks to clear it (`overwrite`; only ever an emseg run folder, never a folder of other files);
 *   - `run.json` records who owns the folder and every MLflow run that worked in it, so a resumed
 *     run can link to (and close) the run it continues.
 *
 * @example
 *   const claim = await claimRunDir(outDir, { app: 'finetune', runName, mode: args.resume ? 'resume' : 'new' });
 *   ...start the MLflow run...
 *   await claim.recordRun({ runId: run.id, trackingUri });
 */
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { processAlive, writeJsonAtomic } from '@emseg/fs';

export const RUN_RECORD = 'run.json';
export const RUN_LOCK = '.emseg-lock';

/** One MLflow run that worked in the folder (a resumed run adds one). */
export interface RunDirMlflowRun {
  runId: string;
  trackingUri: string;
  experiment?: string;
  startedAt: string;
}

/** `run.json`: which app made the folder, for which run, and the MLflow runs that worked in it. */
export interface RunDirRecord {
  format: 'emseg-run/1';
  app: string;
  runName: string;
  createdAt: string;
  runs: RunDirMlflowRun[];
}

export type RunDirMode = 'new' | 'resume' | 'overwrite';

export interface RunDirClaim {
  dir: string;
  /** The folder's record before this run (a resumed run's predecessor), or null for a new folder. */
  previous: RunDirRecord | null;
  /** Appends this run's MLflow run to run.json. */
  recordRun(run: Omit<RunDirMlflowRun, 'startedAt'>): Promise<void>;
  /** Releases the lock (also done when the process exits). */
  release(): void;
}

/** A run folder that cannot be used as asked; the message says why and what to do. */
export class RunDirError extends Error {
  override name = 'RunDirError';
}

interface LockInfo {
  pid: number;
  host: string;
  app: string;
  startedAt: string;
}

/** Creates `dir` (and parents), translating ENOTDIR / EACCES / EEXIST into errors that name the culprit. */
function ensureWritableDir(dir: string, flag: string): void {
  let existing = dir;
  while (!existsSync(existing) && dirname(existing) !== existing) existing = dirname(existing);
  if (existsSync(existing) && !statSync(existing).isDirectory()) {
    throw new RunDirError(`${flag} ${dir}: ${existing} is a file, not a folder; choose another ${flag}`);
  }
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS')
      throw new RunDirError(`${flag} ${dir}: no permission to create it in ${existing}; choose a folder you can write`);
    if (code === 'ENOTDIR' || code === 'EEXIST') throw new RunDirError(`${flag} ${dir}: a part of the path is a file, not a folder; choose another ${flag}`);
    throw err;
  }
}

function readRecord(dir: string): RunDirRecord | null {
  const path = join(dir, RUN_RECORD);
  if (!existsSync(path)) return null;
  try {
    const record = JSON.parse(readFileSync(path, 'utf8')) as RunDirRecord;
    if (record.format !== 'emseg-run/1' || !Array.isArray(record.runs)) throw new Error('not an emseg-run/1 record');
    return record;
  } catch (err) {
    throw new RunDirError(
      `${path} is damaged (${(err as Error).message}); it records the run that owns this folder: restore it, or pass --overwrite to clear the folder`,
    );
  }
}

/**
 * Folders written before run.json existed: they hold checkpoints/ and, from pretraining, the
 * MLflow run in mlflow-run.json. Read as a record so they can still be resumed.
 */
function legacyRecord(dir: string, app: string): RunDirRecord | null {
  if (!existsSync(join(dir, 'checkpoints'))) return null;
  const runs: RunDirMlflowRun[] = [];
  try {
    const old = JSON.parse(readFileSync(join(dir, 'mlflow-run.json'), 'utf8')) as { runId?: string; trackingUri?: string };
    if (old.runId && old.trackingUri) runs.push({ runId: old.runId, trackingUri: old.trackingUri, startedAt: '' });
  } catch {
    // no MLflow record: resumable all the same
  }
  return { format: 'emseg-run/1', app, runName: '', createdAt: '', runs };
}

function describeOwner(record: RunDirRecord | null, entries: string[]): string {
  if (!record) return `${entries.length} file(s) (${entries.slice(0, 3).join(', ')}${entries.length > 3 ? ', ...' : ''})`;
  const last = record.runs.at(-1);
  return `the ${record.app} run${record.runName ? ` "${record.runName}"` : ''}${last ? ` (MLflow run ${last.runId})` : ''}`;
}

/** Takes the folder's lock or throws naming the live process that holds it. */
function lock(dir: string, app: string, onNote: (m: string) => void): () => void {
  const path = join(dir, RUN_LOCK);
  const info: LockInfo = { pid: process.pid, host: hostname(), app, startedAt: new Date().toISOString() };
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, `${JSON.stringify(info)}\n`);
      closeSync(fd);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw err;
      let holder: LockInfo | null = null;
      try {
        holder = JSON.parse(readFileSync(path, 'utf8')) as LockInfo;
      } catch {
        holder = null; // being written this instant, or damaged: treat as held unless old
      }
      const sameHost = holder?.host === info.host;
      if (holder && (!sameHost || processAlive(holder.pid))) {
        throw new RunDirError(
          `${dir} is in use by ${holder.app} process ${holder.pid} on ${holder.host} (since ${holder.startedAt}); a run folder belongs to one run at a time: wait for it to end, or choose another --out${sameHost ? '' : ` (if that process is gone, delete ${path})`}`,
        );
      }
      if (!holder && Date.now() - statSync(path).mtimeMs < 10_000)
        throw new RunDirError(`${dir} is being claimed by another process right now (lock ${path}); choose another --out`);
      onNote(`${dir}: took over the lock of ${holder ? `process ${holder.pid}, which is no longer running` : 'an unreadable lock file'}`);
      rmSync(path, { force: true });
    }
  }
  let held = true;
  const release = (): void => {
    if (!held) return;
    held = false;
    process.off('exit', release);
    try {
      unlinkSync(path);
    } catch {
      // already gone (the folder was removed): nothing to release
    }
  };
  process.on('exit', release);
  return release;
}

export interface ClaimOptions {
  /** 'pretrain', 'finetune', ...: a folder is resumed only by the app that made it. */
  app: string;
  runName: string;
  mode: RunDirMode;
  /** The flag that names the folder in messages (default `--out`). */
  flag?: string;
  /** Things worth saying (a stale lock taken over, a folder cleared). */
  onNote?: (message: string) => void;
}

/** Claims `dir` for one run (see the file comment); throws a RunDirError that says what to do. */
export async function claimRunDir(dirArg: string, options: ClaimOptions): Promise<RunDirClaim> {
  const dir = resolve(dirArg);
  const flag = options.flag ?? '--out';
  const note = options.onNote ?? ((m: string) => void process.stderr.write(`${m}\n`));
  if (options.mode === 'resume' && !existsSync(dir))
    throw new RunDirError(`--resume: ${dir} does not exist; pass the run folder of the interrupted run as ${flag}`);
  ensureWritableDir(dir, flag);
  const release = lock(dir, options.app, note);
  try {
    const record = readRecord(dir) ?? legacyRecord(dir, options.app);
    // A claim that failed before its run started (bad data, say) leaves only run.json and the
    // config: that folder is still free for the next attempt.
    const abandoned = (name: string) => record !== null && record.runs.length === 0 && (name === RUN_RECORD || name === 'config.json');
    const entries = readdirSync(dir).filter((name) => name !== RUN_LOCK && !(options.mode !== 'resume' && abandoned(name)));
    let previous: RunDirRecord | null = null;
    if (options.mode === 'resume') {
      if (!record)
        throw new RunDirError(
          `--resume: ${dir} is not a run folder (no ${RUN_RECORD}, no checkpoints/); pass the run folder of the interrupted run as ${flag}`,
        );
      if (record.app !== options.app) throw new RunDirError(`--resume: ${dir} holds a ${record.app} run, not a ${options.app} run`);
      previous = record;
    } else if (entries.length > 0) {
      if (options.mode === 'new') {
        throw new RunDirError(
          `${flag} ${dir} already holds ${describeOwner(record, entries)}; a run folder belongs to one run: pass --resume to continue it, --overwrite to clear it and start over, or choose another ${flag}`,
        );
      }
      if (!record)
        throw new RunDirError(`--overwrite: ${dir} holds ${describeOwner(null, entries)} and is not an emseg run folder (no ${RUN_RECORD}); not clearing it`);
      for (const name of entries) rmSync(join(dir, name), { recursive: true, force: true });
      note(`--overwrite: cleared ${dir} (it held ${describeOwner(record, entries)})`);
    }
    // `previous` stays as found; `current` grows by this run's MLflow run.
    const current: RunDirRecord = previous
      ? structuredClone(previous)
      : { format: 'emseg-run/1', app: options.app, runName: options.runName, createdAt: new Date().toISOString(), runs: [] };
    if (!previous) await writeJsonAtomic(join(dir, RUN_RECORD), current);
    return {
      dir,
      previous,
      async recordRun(run) {
        current.runs.push({ ...run, startedAt: new Date().toISOString() });
        await writeJsonAtomic(join(dir, RUN_RECORD), current);
      },
      release,
    };
  } catch (err) {
    release();
    throw err;
  }
}

/** `latest.json` of runs written under `runsRoot` (the parent of their run folders). */
export function latestRecordPath(runDir: string): string {
  return join(dirname(resolve(runDir)), 'latest.json');
}
