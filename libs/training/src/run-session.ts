/**
 * The start of every training command, once: claim the run folder (see run-dir.ts), compare the
 * configuration with the interrupted run's on --resume and write the new one (`config.json`), then
 * start the MLflow run with the backend tags, the flattened config and the config file as an
 * artifact, record it in run.json and link it to the run it resumes.
 *
 * @example
 *   return withRunDir({ app: 'pretrain', runName, dir, resume, overwrite }, async (session) => {
 *     const run = await session.startRun({ experiment, trackingUri, cfg, configFile, description });
 *     ...
 *   });
 */
import { join, resolve } from 'node:path';
import { flatten } from '@emseg/config';
import { writeJsonAtomic } from '@emseg/fs';
import { backendInfo, backendTags } from '@emseg/tf';
import { Tracker, type TrackedRun } from '@emseg/tracking';
import { claimRunDir, latestRecordPath, type RunDirClaim } from './run-dir.js';
import { changedSinceLastRun, describeChanges, linkResumedRun, type ConfigChange } from './run-lineage.js';

export interface RunSessionOptions {
  /** 'pretrain', 'finetune', ...: tagged `emseg.app`, and a folder is resumed only by its app. */
  app: string;
  runName: string;
  /** The run folder (`--out`). */
  dir: string;
  resume: boolean;
  overwrite: boolean;
  /** Notes for the user (default: stderr). */
  log?: (message: string) => void;
}

export interface StartRunOptions {
  experiment: string;
  /** `--tracking-uri`, else MLFLOW_TRACKING_URI, else the project store. */
  trackingUri?: string;
  /** The resolved configuration: logged as params (flattened) and compared on resume. */
  cfg: object;
  /** The config file it came from (tag `emseg.config`). */
  configFile: string;
  description: string;
  params?: Record<string, unknown>;
  tags?: Record<string, string>;
}

export interface RunSession {
  claim: RunDirClaim;
  /** The run folder. */
  dir: string;
  /** What changed in the configuration since the run this one resumes ([] for a new run). */
  changes: ConfigChange[];
  /** Starts the MLflow run (see the file comment); the caller ends it. */
  startRun(options: StartRunOptions): Promise<TrackedRun>;
  /**
   * Records the finished run in `file` (default: latest.json beside the run folder), atomically:
   * `{ runId, trackingUri, outDir, ...fields, finishedAt }`. Returns the file written.
   */
  recordLatest(fields: Record<string, unknown>, file?: string): Promise<string>;
}

/** Claims the run folder, runs `body` in it and releases the folder's lock afterwards. */
export async function withRunDir<T>(options: RunSessionOptions, body: (session: RunSession) => Promise<T>): Promise<T> {
  const log = options.log ?? ((m: string) => void process.stderr.write(`${m}\n`));
  // The folder belongs to this run from here on (locked until the process exits).
  const claim = await claimRunDir(options.dir, {
    app: options.app,
    runName: options.runName,
    mode: options.resume ? 'resume' : options.overwrite ? 'overwrite' : 'new',
    onNote: log,
  });
  try {
    const changes: ConfigChange[] = [];
    let started: TrackedRun | undefined;
    const session: RunSession = {
      claim,
      dir: claim.dir,
      changes,
      async startRun(o) {
        if (options.resume) changes.push(...changedSinceLastRun(join(claim.dir, 'config.json'), o.cfg));
        if (changes.length > 0)
          log(`--resume: the configuration differs from the interrupted run's: ${describeChanges(changes)} (logged as tag emseg.resume.configChanges)`);
        const configPath = join(claim.dir, 'config.json');
        await writeJsonAtomic(configPath, o.cfg);
        const info = backendInfo();
        log(`backend: ${info.package} (TensorFlow ${info.tensorflowVersion ?? 'pure JS'}, ${info.gpu ? 'GPU' : 'CPU'})`);
        const run = await Tracker.start({
          trackingUri: o.trackingUri,
          experiment: o.experiment,
          runName: options.runName,
          handleProcessEvents: false, // the command ends the run itself, after saving a checkpoint
          description: o.description,
          tags: { ...backendTags(), 'emseg.app': options.app, 'emseg.config': resolve(o.configFile), 'emseg.outDir': claim.dir, ...o.tags },
          params: { ...flatten(o.cfg as Record<string, unknown>), ...o.params },
        });
        log(`MLflow run ${run.id} in experiment "${o.experiment}" at ${run.client.trackingUri}`);
        await run.logArtifact(configPath);
        await claim.recordRun({ runId: run.id, trackingUri: run.client.trackingUri, experiment: o.experiment });
        // A resumed run is a new MLflow run (params such as train.steps may change); it links back.
        const resumedFrom = options.resume ? await linkResumedRun(run, claim, changes, log) : null;
        if (resumedFrom) log(`resuming: this run continues MLflow run ${resumedFrom} (tag emseg.resumedFrom)`);
        started = run;
        return run;
      },
      async recordLatest(fields, file) {
        if (!started) throw new Error('recordLatest: the run has not been started (call startRun first)');
        const path = file ? resolve(file) : latestRecordPath(claim.dir);
        await writeJsonAtomic(path, {
          runId: started.id,
          trackingUri: started.client.trackingUri,
          outDir: claim.dir,
          ...fields,
          finishedAt: new Date().toISOString(),
        });
        return path;
      },
    };
    return await body(session);
  } finally {
    claim.release();
  }
}
