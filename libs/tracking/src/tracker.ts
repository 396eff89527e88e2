/**
 * The entry point apps use: connect to a tracking server (or start the embedded one), start runs.
 *
 * Where runs go:
 *  - `trackingUri` option, else MLFLOW_TRACKING_URI: that server (credentials from the options or
 *    MLFLOW_TRACKING_TOKEN / MLFLOW_TRACKING_USERNAME + MLFLOW_TRACKING_PASSWORD);
 *  - neither: the embedded default. The project's MLflow server is started on a free loopback
 *    port for as long as the tracker lives, on the store `npm run mlflow` shows
 *    (`.emseg/mlflow/` of the workspace, or EMSEG_MLFLOW_DIR).
 *
 * @example
 *   // one run, the tracker closes with it:
 *   const run = await Tracker.start({ experiment: 'moco', runName: 'r50-cem', params: flattenParams(config) });
 *   // several runs on one connection:
 *   const tracker = await Tracker.connect();
 *   const run = await tracker.startRun({ experiment: 'urisc' });
 *   ...
 *   await tracker.close();
 */
import { hostname } from 'node:os';
import { join } from 'node:path';
import { downloadArtifacts, parseRunsUri } from './artifacts.js';
import { DEFAULT_BACKOFF, type BackoffPolicy } from './batching.js';
import { MlflowClient } from './client.js';
import { DeliveryQueue } from './delivery.js';
import { checkServer } from './connect.js';
import { TrackingError } from './errors.js';
import { JOURNAL_FORMAT, JournalWriter } from './journal.js';
import { warnOnStderr, type ProblemHandler } from './problems.js';
import { TrackedRun, type ChildRunOptions } from './run.js';
import { defaultStoreDir, startMlflowServer, type MlflowServer, type MlflowServerOptions } from './server.js';
import { settingsFromEnv, type Credentials, type TrackingSettings } from './settings.js';
import { systemTags } from './system-tags.js';
import { EXPERIMENT_KIND_TAG, EXPERIMENT_KIND_TRAINING } from './ui-links.js';
import { validateExperimentName, validateParam, validateRunId, validateTag } from './validate.js';

export interface TrackerOptions extends Credentials {
  /** http(s) URI of a tracking server. Default: MLFLOW_TRACKING_URI; unset means the embedded server. */
  trackingUri?: string;
  /** Environment to read MLFLOW_* from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Store of the embedded server. Default: `defaultStoreDir()` (`<workspace>/.emseg/mlflow`). */
  storeDir?: string;
  /** Embedded server tuning (port, workers, timeouts...). */
  server?: Omit<MlflowServerOptions, 'storeDir'>;
  /** Where run journals live. Default `<store dir>/journal`. */
  journalDir?: string;
  /** How long to keep trying to reach the server when starting (default 10 s). */
  connectTimeoutMs?: number;
  /** Deadline of end() and flush() (default 60 s). */
  flushTimeoutMs?: number;
  /** Deadline of the flush when SIGINT/SIGTERM or a crash ends runs (default 10 s). */
  signalFlushTimeoutMs?: number;
  /** End runs as KILLED on SIGINT/SIGTERM and FAILED on uncaught errors (default true). */
  handleProcessEvents?: boolean;
  /** Keep journals of fully delivered runs (default false: they are deleted). */
  keepJournal?: boolean;
  /** Where problems go (default: a `[tracking]` line on stderr). */
  onProblem?: ProblemHandler;
  /** Delivery tuning: timer period, records held in memory, retry backoff, how long requests fail before an outage is reported. */
  delivery?: { tickMs?: number; maxInMemory?: number; backoff?: BackoffPolicy; warnAfterMs?: number };
}

export interface StartRunOptions {
  /** Experiment name (created if missing). Default: MLFLOW_EXPERIMENT_NAME, else 'Default'. */
  experiment?: string;
  /** Shown in the UI; MLflow makes one up when omitted. */
  runName?: string;
  /** Run description (mlflow.note.content). */
  description?: string;
  tags?: Record<string, string>;
  /** Params logged at start (stringified; see stringifyParam). Invalid ones make start() throw. */
  params?: Record<string, unknown>;
  /** Makes this a nested run of that run (mlflow.parentRunId). */
  parentRunId?: string;
  /** mlflow.source.name; default: the entry script. */
  sourceName?: string;
}

export class Tracker {
  private readonly runs = new Set<TrackedRun>();
  private closed = false;

  private constructor(
    readonly client: MlflowClient,
    private readonly settings: TrackingSettings,
    private readonly options: TrackerOptions,
    readonly journalDir: string,
    /** The embedded server, when this tracker started one. */
    readonly server: MlflowServer | undefined,
  ) {}

  /** The server's URI (no credentials). */
  get trackingUri(): string {
    return this.client.trackingUri;
  }

  /**
   * Connects to the configured server, or starts the embedded one, and checks that it answers
   * (and accepts the credentials). Throws a TrackingError that says what to fix.
   */
  static async connect(options: TrackerOptions = {}): Promise<Tracker> {
    const env = options.env ?? process.env;
    const fromEnv = settingsFromEnv(env);
    const settings: TrackingSettings = {
      trackingUri: options.trackingUri ?? fromEnv.trackingUri,
      experimentName: fromEnv.experimentName,
      token: options.token ?? fromEnv.token,
      username: options.username ?? fromEnv.username,
      password: options.password ?? fromEnv.password,
    };
    if (settings.trackingUri) {
      const client = new MlflowClient({ trackingUri: settings.trackingUri, token: settings.token, username: settings.username, password: settings.password });
      await checkServer(client, options.connectTimeoutMs ?? 10_000);
      const journalDir = options.journalDir ?? join(options.storeDir ?? defaultStoreDir(process.cwd(), env), 'journal');
      return new Tracker(client, settings, options, journalDir, undefined);
    }
    const storeDir = options.storeDir ?? defaultStoreDir(process.cwd(), env);
    const server = await startMlflowServer({ ...options.server, storeDir });
    try {
      const client = new MlflowClient({ trackingUri: server.uri });
      await checkServer(client, options.connectTimeoutMs ?? 10_000);
      return new Tracker(client, settings, options, options.journalDir ?? join(storeDir, 'journal'), server);
    } catch (err) {
      await server.stop();
      throw err;
    }
  }

  /** Connects and starts one run; the tracker closes (embedded server stops) when that run ends. */
  static async start(options: TrackerOptions & StartRunOptions = {}): Promise<TrackedRun> {
    validateRunOptions(options);
    const tracker = await Tracker.connect(options);
    try {
      return await tracker.open(options, { onEnded: () => tracker.close() });
    } catch (err) {
      await tracker.close();
      throw err;
    }
  }

  /**
   * Creates a run (getting or creating its experiment) with the system tags (user, source, git
   * commit, note), the given tags and params. Invalid names or values throw TrackingInputError
   * before anything is created.
   */
  startRun(options: StartRunOptions = {}): Promise<TrackedRun> {
    return this.open(options, {});
  }

  private async open(options: StartRunOptions, extra: { onEnded?: () => Promise<void>; experimentId?: string }): Promise<TrackedRun> {
    if (this.closed) throw new TrackingError('this tracker is closed');
    const { experimentName, tags, params } = validateRunOptions(options, this.settings.experimentName);
    const onProblem = this.options.onProblem ?? warnOnStderr;
    const experiment = extra.experimentId ? { experimentId: extra.experimentId } : await this.openExperiment(experimentName, onProblem);
    const redactor = this.client.redactor;
    const runTags: Record<string, string> = {};
    for (const [key, value] of Object.entries({ ...systemTags(options), ...tags })) runTags[key] = redactor.redactEntry(key, value);
    const created = await this.client.createRun({ experimentId: experiment.experimentId, runName: options.runName, tags: runTags });
    const info = created.info;

    const journal = JournalWriter.create(join(this.journalDir, `${info.runId}.jsonl`), {
      journal: JOURNAL_FORMAT,
      version: 1,
      runId: info.runId,
      experimentId: info.experimentId,
      artifactUri: info.artifactUri,
      trackingUri: this.client.trackingUri,
      ...(this.server ? { embeddedStoreDir: this.server.storeDir } : {}),
      pid: process.pid,
      host: hostname(),
      createdAt: Date.now(),
    });
    let run: TrackedRun | undefined;
    const queue = new DeliveryQueue({
      client: this.client,
      runId: info.runId,
      artifactUri: info.artifactUri,
      journal,
      report: TrackedRun.reporter(() => run, onProblem, info.runId),
      tickMs: this.options.delivery?.tickMs,
      maxInMemory: this.options.delivery?.maxInMemory,
      backoff: this.options.delivery?.backoff ?? DEFAULT_BACKOFF,
      warnAfterMs: this.options.delivery?.warnAfterMs,
    });
    run = new TrackedRun({
      client: this.client,
      info,
      journal,
      queue,
      redactor,
      onProblem,
      flushTimeoutMs: this.options.flushTimeoutMs ?? 60_000,
      signalFlushTimeoutMs: this.options.signalFlushTimeoutMs ?? 10_000,
      keepJournal: this.options.keepJournal ?? false,
      handleProcessEvents: this.options.handleProcessEvents ?? true,
      spoolDir: join(this.journalDir, `${info.runId}.spool`),
      startChild: (parent, childOptions) => this.startChildRun(parent, childOptions),
      onEnded: async () => {
        this.runs.delete(run!);
        await extra.onEnded?.();
      },
    });
    this.runs.add(run);
    run.logParams(params);
    return run;
  }

  /**
   * Gets or creates the experiment, marked as a model-training experiment (EXPERIMENT_KIND_TAG) so
   * that MLflow's UI opens it on its runs table; an existing one without the tag gets it. Failing
   * to tag (e.g. no permission) is reported, not thrown.
   */
  private async openExperiment(name: string, onProblem: ProblemHandler): Promise<{ experimentId: string }> {
    const experiment = await this.client.getOrCreateExperiment(name, { [EXPERIMENT_KIND_TAG]: EXPERIMENT_KIND_TRAINING });
    if (experiment.tags[EXPERIMENT_KIND_TAG] === undefined) {
      try {
        await this.client.setExperimentTag(experiment.experimentId, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND_TRAINING);
      } catch (err) {
        onProblem({
          kind: 'rejected',
          message: `cannot tag experiment '${name}' (${experiment.experimentId}) with ${EXPERIMENT_KIND_TAG}=${EXPERIMENT_KIND_TRAINING}: ${(err as Error).message}; the MLflow UI may open it on the GenAI overview`,
        });
      }
    }
    return experiment;
  }

  /** Downloads a run's artifact (file or directory) under destDir; returns the local path. */
  downloadArtifacts(runId: string, path: string, destDir: string): Promise<string> {
    return downloadArtifacts(this.client, validateRunId(runId), path, destDir);
  }

  /** Downloads `runs:/<run_id>/<path>` under destDir; returns the local path. */
  downloadRunsUri(uri: string, destDir: string): Promise<string> {
    const { runId, path } = parseRunsUri(uri);
    return downloadArtifacts(this.client, runId, path, destDir);
  }

  /** Ends runs still open (as KILLED), then stops the embedded server. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.runs].map((run) => run.end('KILLED', { reason: 'the tracker was closed while the run was open' })));
    await this.server?.stop();
  }

  private startChildRun(parent: TrackedRun, options: ChildRunOptions): Promise<TrackedRun> {
    return this.open({ ...options, parentRunId: parent.id }, { experimentId: parent.experimentId });
  }
}

/** Validates what start() gets, throwing TrackingInputError before anything is created. */
function validateRunOptions(
  options: StartRunOptions,
  envExperiment?: string,
): { experimentName: string; tags: Record<string, string>; params: Record<string, unknown> } {
  const experimentName = validateExperimentName(options.experiment ?? envExperiment ?? 'Default');
  const tags: Record<string, string> = {};
  for (const [key, value] of Object.entries(options.tags ?? {})) tags[key] = validateTag(key, value);
  if (options.runName !== undefined) validateTag('mlflow.runName', options.runName);
  if (options.description !== undefined) validateTag('mlflow.note.content', options.description);
  if (options.parentRunId !== undefined) validateRunId(options.parentRunId, 'parentRunId');
  const params = options.params ?? {};
  for (const [key, value] of Object.entries(params)) validateParam(key, value);
  return { experimentName, tags, params };
}
