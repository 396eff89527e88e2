/**
 * Replaying journals: delivering what a run could not deliver itself (the server was down at the
 * end, the process was killed). Only unacknowledged records are sent; replaying one twice, or a
 * record the server already has, changes nothing on the server (same metric point = stored once,
 * same param value = accepted, tags and status = overwritten with the same value, artifacts =
 * overwritten with the same bytes).
 *
 * A journal from a run that used the embedded server is replayed into the same store (a server is
 * started on it); any other goes to the server it names, or to `trackingUri` when given.
 */
import { existsSync, readdirSync, rmSync, statSync, rmdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { processAlive } from '@emseg/fs';
import { DEFAULT_BACKOFF } from './batching.js';
import { MlflowClient } from './client.js';
import { checkServer } from './connect.js';
import { DeliveryQueue } from './delivery.js';
import { TrackingError } from './errors.js';
import { JournalWriter, readJournal, type JournalState } from './journal.js';
import type { ProblemHandler, TrackingProblem } from './problems.js';
import { startMlflowServer, type MlflowServer, type MlflowServerOptions } from './server.js';
import { settingsFromEnv, type Credentials } from './settings.js';
import type { EndStatus } from './types.js';

export interface SyncOptions extends Credentials {
  /** Send to this server instead of the one the journal names. */
  trackingUri?: string;
  /** Environment for credentials (MLFLOW_TRACKING_TOKEN...). Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** How long to keep retrying one journal (default 120 s). */
  timeoutMs?: number;
  /** Keep journals that were fully delivered (default: delete them). */
  keep?: boolean;
  /** Replay even if the process that wrote the journal still seems alive. */
  force?: boolean;
  /**
   * A journal without a final status whose writer is gone belongs to a run that was killed
   * without a chance to say so; end it with this status (default 'KILLED'; false leaves it).
   */
  orphanStatus?: EndStatus | false;
  onProblem?: ProblemHandler;
  /** Options for the server started for embedded-store journals. */
  server?: Omit<MlflowServerOptions, 'storeDir'>;
  connectTimeoutMs?: number;
}

export interface SyncReport {
  journal: string;
  runId: string;
  trackingUri: string;
  /** Records and artifacts found waiting. */
  waitingRecords: number;
  waitingArtifacts: number;
  /** Delivered now (records include rejected ones, which count as handled). */
  deliveredRecords: number;
  rejectedRecords: number;
  uploadedArtifacts: number;
  /** Still waiting after the timeout. */
  pendingRecords: number;
  pendingArtifacts: number;
  /** Everything in the journal is on the server (or refused for good). */
  complete: boolean;
  /** The journal was deleted (complete and not `keep`). */
  removed: boolean;
  /** Status given to an orphaned run, if any. */
  endedAs?: EndStatus;
  problems: TrackingProblem[];
}

/** The journal files a list of files and directories stands for (`*.jsonl` inside directories). */
export function findJournals(paths: readonly string[]): string[] {
  const out: string[] = [];
  for (const p of paths) {
    const path = resolve(p);
    if (!existsSync(path)) throw new TrackingError(`journal path ${path} does not exist`);
    if (statSync(path).isDirectory()) {
      for (const name of readdirSync(path).sort()) if (name.endsWith('.jsonl')) out.push(join(path, name));
    } else out.push(path);
  }
  return out;
}

/**
 * Replays journals (files or directories of them), one after the other. Servers started for
 * embedded stores are shared between journals of the same store and stopped at the end.
 */
export async function syncJournals(paths: readonly string[], options: SyncOptions = {}): Promise<SyncReport[]> {
  const servers = new Map<string, MlflowServer>();
  const reports: SyncReport[] = [];
  try {
    for (const journal of findJournals(paths)) {
      reports.push(await syncJournal(journal, options, servers));
    }
  } finally {
    await Promise.allSettled([...servers.values()].map((s) => s.stop()));
  }
  return reports;
}

/** Replays one journal. Throws TrackingError if it cannot (not a journal, still in use, no server). */
export async function syncJournal(path: string, options: SyncOptions = {}, servers = new Map<string, MlflowServer>()): Promise<SyncReport> {
  const state = readJournal(path);
  const { header } = state;
  if (!options.force && !state.closed && header.host === hostname() && header.pid !== process.pid && processAlive(header.pid)) {
    throw new TrackingError(`journal ${path} is still being written by process ${header.pid}; wait for it to end, or pass --force`);
  }
  const problems: TrackingProblem[] = [];
  const report = (kind: TrackingProblem['kind'], message: string): void => {
    const problem = { kind, message, runId: header.runId };
    problems.push(problem);
    (options.onProblem ?? (() => {}))(problem);
  };
  const orphanStatus = options.orphanStatus ?? 'KILLED';
  const addOrphanStatus = state.endStatus === undefined && orphanStatus !== false;
  const result: SyncReport = {
    journal: path,
    runId: header.runId,
    trackingUri: header.trackingUri,
    waitingRecords: state.pendingRecords.length,
    waitingArtifacts: state.pendingArtifacts.length,
    deliveredRecords: 0,
    rejectedRecords: 0,
    uploadedArtifacts: 0,
    pendingRecords: state.pendingRecords.length,
    pendingArtifacts: state.pendingArtifacts.length,
    complete: false,
    removed: false,
    problems,
  };
  if (state.damagedLines > 0) report('undelivered', `${state.damagedLines} damaged line(s) in ${path} were skipped (the writing process died mid-write)`);
  if (state.pendingRecords.length === 0 && state.pendingArtifacts.length === 0 && !addOrphanStatus) {
    result.complete = true;
    if (!options.keep) removeJournal(path);
    result.removed = !options.keep;
    return result;
  }

  const client = await connect(state, options, servers);
  result.trackingUri = client.trackingUri;
  const journal = JournalWriter.open(path);
  const queue = new DeliveryQueue({
    client,
    runId: header.runId,
    artifactUri: header.artifactUri,
    journal,
    report,
    lastSeq: state.lastSeq,
    backoff: DEFAULT_BACKOFF,
  });
  try {
    queue.pushJournaled(state.pendingRecords);
    let uploaded = 0;
    for (const record of state.pendingArtifacts) {
      if (!existsSync(record.localPath)) {
        journal.reject(record.seq, `local file ${record.localPath} no longer exists`);
        report('artifact', `artifact ${record.artifactPath}: local file ${record.localPath} no longer exists; not uploaded`);
        continue;
      }
      const stat = statSync(record.localPath);
      if (stat.size !== record.size || Math.abs(stat.mtimeMs - record.mtimeMs) > 1) {
        report('artifact', `artifact ${record.artifactPath}: ${record.localPath} changed since it was logged; uploading its current content`);
      }
      queue.pushArtifact(
        {
          record,
          body: { path: record.localPath, size: stat.size },
          settle: (error) => {
            if (error === undefined) uploaded++;
          },
        },
        true,
      );
    }
    if (addOrphanStatus) {
      queue.push({ seq: queue.nextSeq(), type: 'status', status: orphanStatus, endTime: Date.now() });
      result.endedAs = orphanStatus;
    }
    const flushed = await queue.flush(options.timeoutMs ?? 120_000);
    queue.stop();
    result.deliveredRecords = queue.deliveredRecords + queue.rejectedRecords;
    result.rejectedRecords = queue.rejectedRecords;
    result.uploadedArtifacts = uploaded;
    result.pendingRecords = flushed.pendingRecords;
    result.pendingArtifacts = flushed.pendingArtifacts;
    result.complete = flushed.delivered;
  } finally {
    queue.stop();
    journal.close();
  }
  if (result.complete && !options.keep) {
    removeJournal(path);
    result.removed = true;
  }
  return result;
}

async function connect(state: JournalState, options: SyncOptions, servers: Map<string, MlflowServer>): Promise<MlflowClient> {
  const env = settingsFromEnv(options.env ?? process.env);
  const credentials = {
    token: options.token ?? env.token,
    username: options.username ?? env.username,
    password: options.password ?? env.password,
  };
  let trackingUri = options.trackingUri ?? state.header.trackingUri;
  const storeDir = state.header.embeddedStoreDir;
  if (!options.trackingUri && storeDir) {
    let server = servers.get(storeDir);
    if (!server) {
      server = await startMlflowServer({ ...options.server, storeDir });
      servers.set(storeDir, server);
    }
    trackingUri = server.uri;
  }
  const client = new MlflowClient({ trackingUri, ...credentials });
  await checkServer(client, options.connectTimeoutMs ?? 10_000);
  return client;
}

function removeJournal(path: string): void {
  rmSync(path, { force: true });
  const spool = path.replace(/\.jsonl$/, '.spool');
  try {
    rmdirSync(spool);
  } catch {
    // absent, or still holds files of artifacts that were not uploaded
  }
}
