/**
 * A run being tracked: the object a training loop talks to.
 *
 * Training-side calls (`logMetric`, `logParams`, `setTags`, `logInput`, `logArtifact*`) never
 * throw and never wait for the network: they validate, queue and return. Bad input and server
 * trouble become {@link TrackingProblem}s (stderr by default, and `run.problems`). Only `end()`
 * and `flush()` wait, for a bounded time, and they never throw either.
 *
 * @example
 *   const run = await Tracker.start({ experiment: 'urisc', runName: 'unet-r50', params: { lr: 1e-3 } });
 *   for (let step = 0; step < steps; step++) run.logMetric('train/loss', loss, step);
 *   await run.logArtifact('out/encoder', 'encoders');
 *   await run.end('FINISHED');
 */
import { rmSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { writeFileAtomicSync } from '@emseg/fs';
import { joinArtifactPath, listLocalFiles, snapshotFile, validateArtifactPath, type ArtifactUploadResult } from './artifacts.js';
import type { ArtifactBody, MlflowClient } from './client.js';
import type { DeliveryQueue, FlushResult } from './delivery.js';
import { TrackingInputError } from './errors.js';
import type { JournalWriter } from './journal.js';
import { MLFLOW_LIMITS } from './limits.js';
import type { ProblemHandler, ProblemKind, TrackingProblem } from './problems.js';
import { bindToProcess } from './process-hooks.js';
import type { ArtifactRecord } from './records.js';
import type { SecretRedactor } from './secrets.js';
import { TAG } from './system-tags.js';
import type { DatasetInput, EndStatus, RunInfo } from './types.js';
import { codePointLength, validateKey, validateMetric, validateParam, validateTag } from './validate.js';

/** A dataset a run used, for runs/log-inputs (shown in MLflow's "Datasets used"). */
export interface DatasetInfo {
  /** e.g. 'urisc-track2-train' (at most 500 characters). */
  name: string;
  /** A short content hash that changes when the data changes (at most 36 characters). */
  digest: string;
  /** Where the data lives: a path or URI (stored as `{"uri": ...}`), or a JSON-able object. */
  source: string | Record<string, unknown>;
  /** 'local' (default), 'http', 's3'... */
  sourceType?: string;
  /** Optional schema and profile, as JSON strings or JSON-able objects. */
  schema?: string | Record<string, unknown>;
  profile?: string | Record<string, unknown>;
  /** `mlflow.data.context`: 'training', 'validation', 'testing'... */
  context?: string;
}

export interface RunEndResult {
  status: EndStatus;
  /** True when everything the run logged is on the server. */
  delivered: boolean;
  pendingRecords: number;
  pendingArtifacts: number;
  /** The journal that still holds undelivered records (replay it with `sync`), if any. */
  journalPath?: string;
}

/** What a run needs from the tracker that started it. */
export interface RunContext {
  client: MlflowClient;
  info: RunInfo;
  journal: JournalWriter;
  queue: DeliveryQueue;
  redactor: SecretRedactor;
  onProblem: ProblemHandler;
  /** Deadline for end() and flush() (ms). */
  flushTimeoutMs: number;
  /** Deadline for the flush when a signal or crash ends the run (ms). */
  signalFlushTimeoutMs: number;
  keepJournal: boolean;
  handleProcessEvents: boolean;
  /** Where logArtifactData keeps its copies until uploaded. */
  spoolDir: string;
  startChild: (parent: TrackedRun, options: ChildRunOptions) => Promise<TrackedRun>;
  /** Called after the run ended (the owning tracker closes itself). */
  onEnded?: () => Promise<void>;
}

/** Options of a nested run (its parent is the run that starts it). */
export interface ChildRunOptions {
  runName?: string;
  description?: string;
  tags?: Record<string, string>;
  params?: Record<string, unknown>;
}

const MAX_KEPT_PROBLEMS = 1000;

export class TrackedRun {
  readonly id: string;
  readonly experimentId: string;
  readonly name: string;
  /** `mlflow-artifacts:/<experiment>/<run>/artifacts` */
  readonly artifactUri: string;
  readonly client: MlflowClient;
  /** Problems reported so far (first 1000), newest last. */
  readonly problems: TrackingProblem[] = [];

  private state: 'running' | 'ending' | 'ended' = 'running';
  private ending: Promise<RunEndResult> | undefined;
  private statusQueued = false;
  private readonly metricKeys = new Set<string>();
  private readonly params = new Map<string, string>();
  private readonly children = new Set<TrackedRun>();
  private readonly reported = new Set<string>();
  private readonly unbind: () => void;
  private readonly ended: Promise<RunEndResult>;
  private resolveEnded: (result: RunEndResult) => void = () => {};

  constructor(private readonly context: RunContext) {
    this.ended = new Promise((resolveEnded) => {
      this.resolveEnded = resolveEnded;
    });
    this.id = context.info.runId;
    this.experimentId = context.info.experimentId;
    this.name = context.info.runName;
    this.artifactUri = context.info.artifactUri;
    this.client = context.client;
    this.unbind = bindToProcess(
      {
        endForProcessEvent: (status, reason) => this.end(status, { timeoutMs: context.signalFlushTimeoutMs, reason }),
        persistOnExit: (code) => this.persistOnExit(code),
      },
      context.handleProcessEvents,
    );
  }

  /** The journal file of this run. */
  get journalPath(): string {
    return this.context.journal.path;
  }

  /** 'running' until end() is called, then 'ending', then 'ended'. */
  get lifecycle(): 'running' | 'ending' | 'ended' {
    return this.state;
  }

  // ------------------------------------------------------------------ metrics, params, tags

  /**
   * Logs one metric point. `timestamp` (ms since the epoch) defaults to now; it is fixed here so
   * that re-delivering the point never duplicates it.
   */
  logMetric(key: string, value: number, step = 0, timestamp = Date.now()): void {
    if (this.state !== 'running') return this.afterEnd(`metric '${key}'`);
    if (!this.metricKeys.has(key) || typeof value !== 'number' || !Number.isSafeInteger(step) || !Number.isSafeInteger(timestamp) || timestamp < 0) {
      try {
        validateMetric(key, value, step, timestamp);
      } catch (err) {
        return this.invalid(err);
      }
      this.metricKeys.add(key);
    }
    const queue = this.context.queue;
    queue.push({ seq: queue.nextSeq(), type: 'metric', key, value, timestamp, step });
  }

  /** Logs several metrics at the same step and timestamp. */
  logMetrics(values: Record<string, number>, step = 0, timestamp = Date.now()): void {
    for (const key in values) this.logMetric(key, values[key], step, timestamp);
  }

  /**
   * Logs params (stringified: numbers with String(), objects as JSON). Params are immutable:
   * re-logging the same value is a no-op, a different value is refused (reported, not thrown).
   */
  logParams(params: Record<string, unknown>): void {
    for (const [key, value] of Object.entries(params)) this.logParam(key, value);
  }

  logParam(key: string, value: unknown): void {
    if (this.state !== 'running') return this.afterEnd(`param '${key}'`);
    let text: string;
    try {
      text = this.context.redactor.redactEntry(key, validateParam(key, value));
    } catch (err) {
      return this.invalid(err);
    }
    const previous = this.params.get(key);
    if (previous === text) return;
    if (previous !== undefined) {
      return this.report(
        'rejected',
        `param '${key}' of run ${this.id} is already ${JSON.stringify(previous)}; params are immutable, so ${JSON.stringify(text)} was not logged (use a metric or a tag for values that change)`,
      );
    }
    this.params.set(key, text);
    const queue = this.context.queue;
    queue.push({ seq: queue.nextSeq(), type: 'param', key, value: text });
  }

  /** Sets tags (the latest value wins). */
  setTags(tags: Record<string, string>): void {
    for (const [key, value] of Object.entries(tags)) this.setTag(key, value);
  }

  setTag(key: string, value: string): void {
    if (this.state !== 'running') return this.afterEnd(`tag '${key}'`);
    this.pushTag(key, value);
  }

  /** Records a dataset the run used (name, digest, source); the same dataset twice is stored once. */
  logInput(dataset: DatasetInfo): void {
    if (this.state !== 'running') return this.afterEnd(`dataset '${String(dataset?.name)}'`);
    let input: DatasetInput;
    try {
      input = toDatasetInput(dataset);
    } catch (err) {
      return this.invalid(err);
    }
    const queue = this.context.queue;
    queue.push({ seq: queue.nextSeq(), type: 'input', inputs: [input] });
  }

  // ------------------------------------------------------------------ artifacts

  /**
   * Uploads a file as `<artifactDir>/<file name>`, or a directory as `<artifactDir>/<dir name>/...`.
   * The content is pinned when called (see snapshotFile). The promise resolves when the upload
   * finished, or as soon as the file is journaled when the server does not answer (`deferred`:
   * uploaded later, by end() or `sync`), or when the run ended without it; it never rejects.
   */
  logArtifact(localPath: string, artifactDir = ''): Promise<ArtifactUploadResult> {
    return this.logLocal(localPath, artifactDir, true);
  }

  /** Uploads the contents of a directory under `artifactDir` (MLflow's log_artifacts). */
  logArtifacts(localDir: string, artifactDir = ''): Promise<ArtifactUploadResult> {
    return this.logLocal(localDir, artifactDir, false);
  }

  /** Uploads in-memory content (a config, a report) as the artifact file `artifactFile`. */
  logArtifactData(data: string | Uint8Array, artifactFile: string): Promise<ArtifactUploadResult> {
    if (this.state !== 'running') {
      this.afterEnd(`artifact '${artifactFile}'`);
      return Promise.resolve({ uploaded: [], deferred: [], failed: [{ artifactPath: artifactFile, reason: 'the run has ended' }] });
    }
    try {
      validateArtifactPath(artifactFile, 'artifact file', false);
      const bytes = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      const seq = this.context.queue.nextSeq();
      const spool = join(this.context.spoolDir, `${seq}-${basename(artifactFile)}`);
      writeFileAtomicSync(spool, bytes);
      const record: ArtifactRecord = {
        seq,
        type: 'artifact',
        localPath: spool,
        artifactPath: artifactFile,
        size: bytes.length,
        mtimeMs: Date.now(),
        spooled: true,
      };
      return this.queueUploads([{ record, body: bytes }]);
    } catch (err) {
      this.invalid(err);
      return Promise.resolve({ uploaded: [], deferred: [], failed: [{ artifactPath: String(artifactFile), reason: (err as Error).message }] });
    }
  }

  private logLocal(localPath: string, artifactDir: string, keepName: boolean): Promise<ArtifactUploadResult> {
    if (this.state !== 'running') {
      this.afterEnd(`artifact '${localPath}'`);
      return Promise.resolve({ uploaded: [], deferred: [], failed: [{ artifactPath: artifactDir, reason: 'the run has ended' }] });
    }
    const uploads: Array<{ record: ArtifactRecord; body: ArtifactBody }> = [];
    const failed: ArtifactUploadResult['failed'] = [];
    try {
      validateArtifactPath(artifactDir, 'artifact directory');
      const absolute = resolve(localPath);
      const name = basename(absolute);
      const files = listLocalFilesOrFile(absolute);
      if (files.isDirectory && files.entries.length === 0) this.report('artifact', `directory ${absolute} has no files; nothing uploaded to run ${this.id}`);
      for (const file of files.entries) {
        const artifactPath = files.isDirectory ? joinArtifactPath(artifactDir, keepName ? name : '', file.relativePath) : joinArtifactPath(artifactDir, name);
        try {
          const snapshot = snapshotFile(file.path);
          const record: ArtifactRecord = {
            seq: this.context.queue.nextSeq(),
            type: 'artifact',
            localPath: file.path,
            artifactPath,
            size: snapshot.size,
            mtimeMs: snapshot.mtimeMs,
          };
          uploads.push({ record, body: snapshot.body });
        } catch (err) {
          failed.push({ artifactPath, reason: (err as Error).message });
          this.report('artifact', `cannot read ${file.path} for run ${this.id}: ${(err as Error).message}`);
        }
      }
    } catch (err) {
      const reason = err instanceof TrackingInputError ? err.message : `cannot read ${localPath}: ${(err as Error).message}`;
      this.report(err instanceof TrackingInputError ? 'invalid-input' : 'artifact', reason);
      return Promise.resolve({ uploaded: [], deferred: [], failed: [{ artifactPath: artifactDir, reason }] });
    }
    return this.queueUploads(uploads).then((result) => ({ ...result, failed: [...failed, ...result.failed] }));
  }

  /**
   * Queues the uploads; resolves when each file is uploaded, refused, or deferred (the server is
   * unreachable and the file waits in the journal). Until then the process stays alive.
   */
  private queueUploads(uploads: Array<{ record: ArtifactRecord; body: ArtifactBody }>): Promise<ArtifactUploadResult> {
    const { queue, journal } = this.context;
    const release = queue.hold();
    type Outcome = { artifactPath: string; reason?: string; deferred?: true };
    const settled = uploads.map(
      ({ record, body }) =>
        new Promise<Outcome>((resolveUpload) => {
          const artifactPath = record.artifactPath;
          queue.pushArtifact({
            record,
            body,
            settle: (reason) => resolveUpload({ artifactPath, reason }),
            defer: () => resolveUpload({ artifactPath, deferred: true }),
          });
        }),
    );
    return Promise.all(settled).then((results) => {
      release();
      const result: ArtifactUploadResult = {
        uploaded: results.filter((r) => !r.deferred && r.reason === undefined).map((r) => r.artifactPath),
        deferred: results.filter((r) => r.deferred).map((r) => r.artifactPath),
        failed: results.filter((r) => r.reason !== undefined).map((r) => ({ artifactPath: r.artifactPath, reason: r.reason! })),
      };
      if (result.deferred.length > 0) {
        const first = result.deferred[0];
        this.report(
          'deferred',
          `${result.deferred.length} artifact file(s) of run ${this.id} (${first}${result.deferred.length > 1 ? ', ...' : ''}) are not on ${this.client.trackingUri} yet: the server does not answer. They wait in journal ${journal.path} and are uploaded when it answers again (at the latest by \`npx nx run tracking:sync -- --journal ${journal.path}\`)`,
        );
      }
      return result;
    });
  }

  // ------------------------------------------------------------------ nesting, flushing, ending

  /** Starts a nested run (tag mlflow.parentRunId = this run). Ending this run ends it too. */
  async startChild(options: ChildRunOptions = {}): Promise<TrackedRun> {
    const child = await this.context.startChild(this, options);
    this.children.add(child);
    void child.whenEnded().then(() => this.children.delete(child));
    return child;
  }

  /** Sends everything queued now; waits up to `timeoutMs` (default: the tracker's flush timeout). Never throws. */
  flush(timeoutMs = this.context.flushTimeoutMs): Promise<FlushResult> {
    return this.context.queue.flush(timeoutMs);
  }

  /**
   * Ends the run: ends open child runs, queues the final status, flushes (up to `timeoutMs`), and
   * deletes the journal when everything was delivered (otherwise it stays for `sync`, and a
   * problem says so). Idempotent: later calls return the first call's result. Never throws.
   */
  end(status: EndStatus = 'FINISHED', options: { timeoutMs?: number; reason?: string } = {}): Promise<RunEndResult> {
    this.ending ??= this.finish(status, options.timeoutMs ?? this.context.flushTimeoutMs, options.reason);
    return this.ending;
  }

  /** Resolves when the run has ended (by end(), a signal or a crash). */
  whenEnded(): Promise<RunEndResult> {
    return this.ended;
  }

  private async finish(status: EndStatus, timeoutMs: number, reason?: string): Promise<RunEndResult> {
    this.state = 'ending';
    const { queue, journal } = this.context;
    let result: RunEndResult = { status, delivered: false, pendingRecords: 0, pendingArtifacts: 0, journalPath: journal.path };
    try {
      await Promise.allSettled([...this.children].map((child) => child.end(status, { timeoutMs, reason })));
      if (reason) this.pushTag(TAG.error, truncate(reason, MLFLOW_LIMITS.tagValueLength));
      this.queueStatus(status);
      const flushed = await queue.flush(timeoutMs);
      queue.stop();
      result = { status, delivered: flushed.delivered, pendingRecords: flushed.pendingRecords, pendingArtifacts: flushed.pendingArtifacts };
      if (flushed.delivered && !this.context.keepJournal) {
        journal.remove();
        rmSync(this.context.spoolDir, { recursive: true, force: true });
      } else {
        journal.close();
        result.journalPath = journal.path;
      }
      if (!flushed.delivered) {
        this.report(
          'undelivered',
          `run ${this.id} ended ${status} with ${flushed.pendingRecords} records and ${flushed.pendingArtifacts} artifacts not yet on ${this.client.trackingUri}; they are kept in ${journal.path}: deliver them with \`npx nx run tracking:sync -- --journal ${journal.path}\``,
        );
      }
    } catch (err) {
      this.report('undelivered', `ending run ${this.id} failed: ${(err as Error).message}; journal ${journal.path}`);
    } finally {
      this.state = 'ended';
      this.unbind();
    }
    try {
      await this.context.onEnded?.();
    } catch (err) {
      this.report('undelivered', `closing the tracker of run ${this.id} failed: ${(err as Error).message}`);
    }
    this.resolveEnded(result);
    return result;
  }

  private queueStatus(status: EndStatus): void {
    if (this.statusQueued) return;
    this.statusQueued = true;
    const queue = this.context.queue;
    queue.push({ seq: queue.nextSeq(), type: 'status', status, endTime: Date.now() });
  }

  /**
   * Process exit with the run still open: journal everything, with a final status, synchronously.
   * A run nobody ended did not finish, whatever the exit code: it ends FAILED (KILLED after a
   * SIGINT/SIGTERM exit code), with the reason in `emseg.error`. A run whose end() was under way
   * keeps the status it was given.
   */
  private persistOnExit(exitCode: number): void {
    if (this.state === 'ended') return;
    let what = 'was still ending';
    if (this.state === 'running') {
      const ended: EndStatus = exitCode === 130 || exitCode === 143 ? 'KILLED' : 'FAILED';
      this.pushTag(TAG.error, `the process exited (exit code ${exitCode}) before ending the run`);
      this.queueStatus(ended);
      what = `was never ended: recorded as ${ended}`;
    }
    const queue = this.context.queue;
    queue.persistNow();
    const pending = queue.pending;
    this.context.journal.close();
    process.stderr.write(
      `[tracking] process exiting while run ${this.id} ${what}; ${pending.records} records and ${pending.artifacts} artifacts are not on the server yet: deliver them with \`npx nx run tracking:sync -- --journal ${this.context.journal.path}\`\n`,
    );
  }

  // ------------------------------------------------------------------ problems

  private pushTag(key: string, value: string): void {
    let text: string;
    try {
      text = this.context.redactor.redactEntry(key, validateTag(key, value));
    } catch (err) {
      return this.invalid(err);
    }
    const queue = this.context.queue;
    queue.push({ seq: queue.nextSeq(), type: 'tag', key, value: text });
  }

  private invalid(err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    this.report('invalid-input', `run ${this.id}: ${message} (not logged)`);
  }

  private afterEnd(what: string): void {
    this.report('after-end', `run ${this.id} has ended; ${what} was not logged`);
  }

  /** Reports a problem once per distinct message; a throwing handler is ignored. */
  private report(kind: ProblemKind, message: string): void {
    const text = this.context.redactor.redact(message);
    if (this.reported.has(text)) return;
    if (this.reported.size < 10_000) this.reported.add(text);
    const problem: TrackingProblem = { kind, message: text, runId: this.id };
    if (this.problems.length < MAX_KEPT_PROBLEMS) this.problems.push(problem);
    try {
      this.context.onProblem(problem);
    } catch {
      // A problem handler must not break training.
    }
  }

  /** Reporter for the delivery queue. */
  static reporter(getRun: () => TrackedRun | undefined, fallback: ProblemHandler, runId: string): (kind: ProblemKind, message: string) => void {
    return (kind, message) => {
      const run = getRun();
      if (run) run.report(kind, message);
      else fallback({ kind, message, runId });
    };
  }
}

function listLocalFilesOrFile(path: string): { isDirectory: boolean; entries: Array<{ path: string; relativePath: string }> } {
  // statSync through listLocalFiles: a missing path throws ENOENT with the path in the message.
  try {
    return { isDirectory: true, entries: listLocalFiles(path) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') return { isDirectory: false, entries: [{ path, relativePath: basename(path) }] };
    throw err;
  }
}

/** Validates a DatasetInfo and converts it to MLflow's dataset input. */
export function toDatasetInput(info: DatasetInfo): DatasetInput {
  if (!info || typeof info !== 'object') throw new TrackingInputError('dataset', info, 'expected { name, digest, source }');
  const field = `dataset '${String(info.name)}'`;
  const text = (name: string, value: unknown, limit: number, required: boolean): string | undefined => {
    if (value === undefined && !required) return undefined;
    const s = typeof value === 'string' ? value : value !== null && typeof value === 'object' ? JSON.stringify(value) : undefined;
    if (s === undefined || (required && s === '')) throw new TrackingInputError(`${field} ${name}`, value, 'expected a non-empty string');
    if (codePointLength(s) > limit) throw new TrackingInputError(`${field} ${name}`, s, `longer than MLflow's limit of ${limit} characters`);
    return s;
  };
  const name = text('name', info.name, MLFLOW_LIMITS.datasetNameLength, true)!;
  const digest = text('digest', info.digest, MLFLOW_LIMITS.datasetDigestLength, true)!;
  const source = typeof info.source === 'string' ? JSON.stringify({ uri: info.source }) : info.source;
  const dataset: DatasetInput['dataset'] = {
    name,
    digest,
    sourceType: text('source type', info.sourceType ?? guessSourceType(info.source), 100, true)!,
    source: text('source', source, MLFLOW_LIMITS.datasetSourceLength, true)!,
  };
  const schema = text('schema', info.schema, MLFLOW_LIMITS.datasetSchemaLength, false);
  const profile = text('profile', info.profile, MLFLOW_LIMITS.datasetProfileLength, false);
  if (schema !== undefined) dataset.schema = schema;
  if (profile !== undefined) dataset.profile = profile;
  const tags: Record<string, string> = {};
  if (info.context !== undefined) {
    validateKey('input tag', 'mlflow.data.context');
    tags['mlflow.data.context'] = text('context', info.context, MLFLOW_LIMITS.inputTagValueLength, true)!;
  }
  return { dataset, tags };
}

function guessSourceType(source: unknown): string {
  const uri = typeof source === 'string' ? source : typeof source === 'object' && source !== null ? String((source as { uri?: unknown }).uri ?? '') : '';
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(uri)?.[1]?.toLowerCase();
  if (scheme === 'https') return 'http';
  return scheme ?? 'local';
}

function truncate(text: string, limit: number): string {
  const chars = [...text];
  return chars.length <= limit ? text : `${chars.slice(0, limit - 3).join('')}...`;
}
