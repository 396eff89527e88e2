/**
 * Asynchronous, loss-free delivery of one run's records to the MLflow server.
 *
 * `push()` is all the training loop pays for: it appends a record to an in-memory array. A timer
 * (every `tickMs`) appends new records to the journal and wakes two retry lanes that send them:
 * REST records in seq order (log-batch within MLflow's limits, log-inputs, runs/update) and
 * artifact files. A delivered request is acknowledged in the journal; a failed one is retried
 * with exponential backoff, forever, while the records wait in the journal. A request the server
 * refuses (400) is split in halves until the one bad record is isolated and rejected, so a single
 * bad record never blocks the others. `flush()` retries now and waits up to a deadline.
 *
 * Memory stays bounded during a long outage: past `maxInMemory` waiting records, new records live
 * only in the journal and are read back from it in order once the server answers again.
 *
 * An outage is reported only once requests have been failing for `warnAfterMs`: one failed
 * request is not an outage. An artifact caller is not kept waiting through one, though: as soon as
 * an upload fails for a transient reason, the artifact is journaled and its caller's promise
 * resolves as deferred (the upload goes on in the background, and `sync` has it if the run ends
 * first). While a caller awaits an upload, the queue keeps the process alive, so Node never
 * drains its event loop and exits under an awaiting caller.
 */
import { rmSync, closeSync } from 'node:fs';
import { DEFAULT_BACKOFF, planRequest, toLogBatch, type BackoffPolicy, type PlannedRequest } from './batching.js';
import type { ArtifactBody, MlflowClient } from './client.js';
import { MlflowApiError, MlflowUnreachableError } from './errors.js';
import { readRecordsFrom, type JournalWriter } from './journal.js';
import type { ProblemKind } from './problems.js';
import type { ArtifactRecord, BatchRecord, TrackingRecord } from './records.js';
import { RetryLane, type LaneStep } from './retry-lane.js';

export interface DeliveryOptions {
  client: MlflowClient;
  runId: string;
  artifactUri: string;
  journal: JournalWriter;
  report: (kind: ProblemKind, message: string) => void;
  /** Highest seq already used (a replayed journal continues after it). Default 0. */
  lastSeq?: number;
  /** How often new records are journaled and sent. Default 200 ms. */
  tickMs?: number;
  /** Waiting records kept in memory before the journal alone holds them. Default 100 000. */
  maxInMemory?: number;
  backoff?: BackoffPolicy;
  /** Report the server as unavailable once requests have failed for this long. Default 5 s. */
  warnAfterMs?: number;
}

/** An artifact file waiting for upload, with what settles the caller's promise. */
export interface ArtifactJob {
  record: ArtifactRecord;
  body: ArtifactBody;
  settle: (error?: string) => void;
  /** Called instead, when the upload must wait for the server: the artifact is in the journal. */
  defer?: () => void;
}

export interface FlushResult {
  /** True when every record and artifact is on the server. */
  delivered: boolean;
  /** REST records still waiting (in memory or only in the journal). */
  pendingRecords: number;
  pendingArtifacts: number;
}

/** Unwritten records above this count are journaled right away, even if the loop never yields. */
const WRITE_NOW_AT = 20_000;
/** Unwritten records above this count get a tick as soon as the loop yields. */
const TICK_SOON_AT = 1_000;

export class DeliveryQueue {
  private seq: number;
  private unwritten: TrackingRecord[] = [];
  /** Journaled REST records not yet delivered, in seq order; `unsentHead` is the first live index. */
  private unsent: BatchRecord[] = [];
  private unsentHead = 0;
  /** While defined, records from this journal offset on are held only in the journal. */
  private spillOffset: number | undefined;
  private spilledCount = 0;
  private readonly artifacts: ArtifactJob[] = [];
  private readonly unwrittenJobs = new Set<ArtifactJob>();
  private readonly recordLane: RetryLane;
  private readonly artifactLane: RetryLane;
  private readonly timer: NodeJS.Timeout;
  private soon: NodeJS.Immediate | undefined;
  /** After a 400, requests carry at most this many records until the bad one is found. */
  private probeSize = Infinity;
  private halted = false;
  private stopped = false;
  /** When requests started failing (undefined while they succeed), and the last failure. */
  private failingSince: number | undefined;
  private lastFailure = '';
  /** True once the outage was reported. */
  private outage = false;
  private holds = 0;
  private holdTimer: NodeJS.Timeout | undefined;
  private journalBroken = false;
  private readonly maxInMemory: number;
  /** Records delivered (or rejected) since this queue started. */
  deliveredRecords = 0;
  rejectedRecords = 0;

  constructor(private readonly options: DeliveryOptions) {
    this.seq = options.lastSeq ?? 0;
    this.maxInMemory = options.maxInMemory ?? 100_000;
    const policy = options.backoff ?? DEFAULT_BACKOFF;
    this.recordLane = new RetryLane(() => this.sendRecords(), policy);
    this.artifactLane = new RetryLane(() => this.sendArtifact(), policy);
    this.timer = setInterval(() => this.tick(), options.tickMs ?? 200);
    this.timer.unref();
  }

  /** The seq for the next record. */
  nextSeq(): number {
    return ++this.seq;
  }

  /** Queues a record (its seq from `nextSeq()`). O(1); never throws, never blocks on I/O. */
  push(record: TrackingRecord): void {
    if (this.stopped) return;
    this.unwritten.push(record);
    const n = this.unwritten.length;
    if (n >= WRITE_NOW_AT) this.writeJournal();
    else if (n >= TICK_SOON_AT && !this.soon) {
      this.soon = setImmediate(() => {
        this.soon = undefined;
        this.tick();
      });
    }
  }

  /** Queues records replayed from a journal: already journaled, so they only need sending. */
  pushJournaled(records: readonly BatchRecord[]): void {
    for (const record of records) this.unsent.push(record);
  }

  /** Queues an artifact upload; `journaled` is true for jobs replayed from a journal. */
  pushArtifact(job: ArtifactJob, journaled = false): void {
    if (this.stopped) {
      job.settle('the run has ended');
      return;
    }
    this.artifacts.push(job);
    if (!journaled) {
      this.unwritten.push(job.record);
      this.unwrittenJobs.add(job);
    }
    if (this.failingSince !== undefined) this.deferArtifacts();
    this.artifactLane.kick();
  }

  /**
   * Keeps the process alive (a ref'd timer) until the returned function is called: for callers
   * awaiting an upload, whose retry timers alone would let the event loop drain.
   */
  hold(): () => void {
    if (this.stopped) return () => {};
    if (this.holds++ === 0) this.holdTimer = setInterval(() => {}, 1 << 30);
    let released = false;
    return () => {
      if (released || this.holds === 0) return;
      released = true;
      if (--this.holds === 0) clearInterval(this.holdTimer);
    };
  }

  /** Journals new records and wakes the senders. Runs on the timer. */
  tick(): void {
    if (this.stopped) return;
    this.writeJournal();
    this.announceOutage();
    if (this.hasSendableRecords()) this.recordLane.kick();
    if (this.artifacts.length > 0) this.artifactLane.kick();
  }

  /** Records and artifacts not yet on the server. */
  get pending(): { records: number; artifacts: number } {
    let unwrittenRecords = 0;
    for (const r of this.unwritten) if (r.type !== 'artifact') unwrittenRecords++;
    return {
      records: unwrittenRecords + (this.unsent.length - this.unsentHead) + this.spilledCount,
      artifacts: this.artifacts.length,
    };
  }

  /**
   * Sends everything now, retrying with backoff capped at 1 s, until all is delivered or
   * `timeoutMs` passes. Never throws.
   */
  async flush(timeoutMs: number): Promise<FlushResult> {
    const deadline = Date.now() + timeoutMs;
    this.recordLane.urgent++;
    this.artifactLane.urgent++;
    try {
      this.tick();
      this.recordLane.wake();
      this.artifactLane.wake();
      for (;;) {
        const { records, artifacts } = this.pending;
        const recordsDone = records === 0 || this.halted;
        if ((recordsDone && artifacts === 0) || this.stopped || Date.now() >= deadline) break;
        if (!recordsDone && !this.recordLane.busy) this.tick();
        if (artifacts > 0 && !this.artifactLane.busy) this.artifactLane.kick();
        await new Promise((resolve) => setTimeout(resolve, Math.max(1, Math.min(20, deadline - Date.now()))));
      }
    } finally {
      this.recordLane.urgent--;
      this.artifactLane.urgent--;
    }
    const { records, artifacts } = this.pending;
    return { delivered: records === 0 && artifacts === 0, pendingRecords: records, pendingArtifacts: artifacts };
  }

  /**
   * Journals anything unwritten, synchronously. For process exit, when no asynchronous work can
   * run any more. Never throws.
   */
  persistNow(): void {
    this.writeJournal();
  }

  /** Stops the timer and the senders; pending artifact callers learn their upload did not happen. */
  stop(): void {
    if (this.stopped) return;
    this.writeJournal();
    this.stopped = true;
    clearInterval(this.timer);
    clearInterval(this.holdTimer);
    this.holds = 0;
    if (this.soon) clearImmediate(this.soon);
    this.recordLane.stop();
    this.artifactLane.stop();
    for (const job of this.artifacts.splice(0)) {
      releaseBody(job, false);
      job.settle('not uploaded before the run ended; it stays in the journal for `sync`');
    }
  }

  // ------------------------------------------------------------------ journal

  private writeJournal(): void {
    if (this.unwritten.length === 0) return;
    const records = this.unwritten;
    this.unwritten = [];
    this.unwrittenJobs.clear();
    if (this.journalBroken) {
      for (const r of records) if (r.type !== 'artifact') this.unsent.push(r);
      return;
    }
    try {
      let split = records.length;
      if (this.spillOffset === undefined) {
        let room = this.maxInMemory - (this.unsent.length - this.unsentHead);
        for (let i = 0; i < records.length; i++) {
          const record = records[i];
          if (record.type === 'artifact') continue;
          if (room <= 0) {
            split = i;
            break;
          }
          room--;
        }
        const inMemory = split === records.length ? records : records.slice(0, split);
        this.options.journal.append(inMemory);
        for (const r of inMemory) if (r.type !== 'artifact') this.unsent.push(r);
        if (split < records.length) this.spillOffset = this.options.journal.bytes;
      } else {
        split = 0;
      }
      if (split < records.length) {
        const spilled = split === 0 ? records : records.slice(split);
        this.options.journal.append(spilled);
        for (const r of spilled) if (r.type !== 'artifact') this.spilledCount++;
      }
    } catch (err) {
      this.journalBroken = true;
      for (const r of records) if (r.type !== 'artifact') this.unsent.push(r);
      this.options.report('undelivered', `cannot write journal ${this.options.journal.path} (${(err as Error).message}); records are kept in memory only`);
    }
  }

  private journalNote(write: (journal: JournalWriter) => void): void {
    if (this.journalBroken || this.options.journal.closed) return;
    try {
      write(this.options.journal);
    } catch {
      this.journalBroken = true;
    }
  }

  /** Moves records held only in the journal back into memory, in order, when memory runs dry. */
  private refill(): void {
    if (this.unsentHead < this.unsent.length || this.spillOffset === undefined) return;
    this.unsent = [];
    this.unsentHead = 0;
    const end = this.options.journal.bytes;
    const { records, nextOffset } = readRecordsFrom(this.options.journal.path, this.spillOffset, end, Math.min(10_000, this.maxInMemory));
    this.unsent.push(...records);
    this.spilledCount = Math.max(0, this.spilledCount - records.length);
    this.spillOffset = nextOffset >= end || records.length === 0 ? undefined : nextOffset;
    if (this.spillOffset === undefined) this.spilledCount = 0;
  }

  private hasSendableRecords(): boolean {
    return !this.halted && (this.unsentHead < this.unsent.length || this.spillOffset !== undefined);
  }

  // ------------------------------------------------------------------ records lane

  private async sendRecords(): Promise<LaneStep> {
    if (this.halted) return 'halt';
    try {
      this.refill();
    } catch (err) {
      this.options.report('undelivered', `cannot read journal ${this.options.journal.path} (${(err as Error).message})`);
      this.spillOffset = undefined;
    }
    const view = this.unsentHead === 0 ? this.unsent : this.unsent.slice(this.unsentHead, this.unsentHead + 1000);
    const plan = planRequest(view, this.probeSize);
    if (!plan) return 'idle';
    try {
      await this.deliver(plan);
    } catch (err) {
      return this.onRecordFailure(plan, err);
    }
    this.recovered();
    this.consume(plan.records.length);
    const last = plan.records[plan.records.length - 1].seq;
    this.journalNote((j) => j.ack(last));
    this.deliveredRecords += plan.records.length;
    if (this.probeSize !== Infinity) this.probeSize = this.probeSize * 2 >= 1000 ? Infinity : this.probeSize * 2;
    return 'ok';
  }

  private async deliver(plan: PlannedRequest): Promise<void> {
    const { client, runId } = this.options;
    if (plan.kind === 'batch') await client.logBatch(runId, toLogBatch(plan.records));
    else if (plan.kind === 'inputs')
      await client.logInputs(
        runId,
        plan.records.flatMap((r) => r.inputs),
      );
    else await client.updateRun(runId, { status: plan.records[0].status, endTime: plan.records[0].endTime });
  }

  private consume(n: number): void {
    this.unsentHead += n;
    if (this.unsentHead >= this.unsent.length) {
      this.unsent = [];
      this.unsentHead = 0;
    } else if (this.unsentHead > 4096 && this.unsentHead * 2 > this.unsent.length) {
      this.unsent = this.unsent.slice(this.unsentHead);
      this.unsentHead = 0;
    }
  }

  private onRecordFailure(plan: PlannedRequest, err: unknown): LaneStep {
    if (isTransient(err)) {
      this.unavailable(err);
      return 'retry';
    }
    if (err instanceof MlflowApiError && runGone(err)) {
      this.halted = true;
      this.options.report(
        'run-unavailable',
        `run ${this.options.runId} no longer accepts records (${err.serverMessage}); ${this.pending.records} records stay in journal ${this.options.journal.path}`,
      );
      return 'halt';
    }
    const reason = err instanceof MlflowApiError ? err.serverMessage : String(err);
    if (plan.records.length > 1) {
      // Find the bad record: halve the request size until it is alone.
      this.probeSize = Math.ceil(plan.records.length / 2);
      return 'ok';
    }
    const record = plan.records[0];
    this.consume(1);
    this.rejectedRecords++;
    this.journalNote((j) => {
      j.reject(record.seq, reason);
      j.ack(record.seq);
    });
    this.options.report('rejected', `MLflow refused ${describe(record)} of run ${this.options.runId}: ${reason}`);
    return 'ok';
  }

  // ------------------------------------------------------------------ artifacts lane

  private async sendArtifact(): Promise<LaneStep> {
    const job = this.artifacts[0];
    if (!job) return 'idle';
    if (this.unwrittenJobs.has(job)) this.writeJournal();
    try {
      await this.options.client.uploadArtifact(this.options.artifactUri, job.record.artifactPath, job.body);
    } catch (err) {
      if (isTransient(err)) {
        this.unavailable(err);
        this.deferArtifacts();
        return 'retry';
      }
      const reason = err instanceof Error ? err.message : String(err);
      this.artifacts.shift();
      this.journalNote((j) => j.reject(job.record.seq, reason));
      releaseBody(job, true);
      job.settle(reason);
      this.options.report('artifact', `artifact ${job.record.artifactPath} of run ${this.options.runId} was not stored: ${reason}`);
      return 'ok';
    }
    this.recovered();
    this.artifacts.shift();
    this.journalNote((j) => j.done(job.record.seq));
    releaseBody(job, true);
    job.settle();
    return 'ok';
  }

  // ------------------------------------------------------------------ outage reporting

  private unavailable(err: unknown): void {
    this.failingSince ??= Date.now();
    this.lastFailure = err instanceof Error ? err.message : String(err);
    this.announceOutage();
  }

  /** Reports the outage once requests have been failing for `warnAfterMs`. */
  private announceOutage(): void {
    if (this.outage || this.failingSince === undefined) return;
    const failingMs = Date.now() - this.failingSince;
    if (failingMs < (this.options.warnAfterMs ?? 5000)) return;
    this.outage = true;
    this.options.report(
      'server-unavailable',
      `${this.lastFailure}; failing for ${(failingMs / 1000).toFixed(1)} s: records wait in journal ${this.options.journal.path} and are retried with backoff`,
    );
  }

  private recovered(): void {
    this.failingSince = undefined;
    if (!this.outage) return;
    this.outage = false;
    this.options.report(
      'recovered',
      `MLflow server ${this.options.client.trackingUri} answers again; delivering the waiting records of run ${this.options.runId}`,
    );
  }

  /** The server is failing: journal the waiting artifacts and let their callers go on. */
  private deferArtifacts(): void {
    this.writeJournal();
    for (const job of this.artifacts) job.defer?.();
  }
}

function isTransient(err: unknown): boolean {
  return err instanceof MlflowUnreachableError || (err instanceof MlflowApiError && err.transient);
}

/** The run was deleted or does not exist: nothing for it can be stored any more. */
function runGone(err: MlflowApiError): boolean {
  return err.status === 404 || err.errorCode === 'RESOURCE_DOES_NOT_EXIST' || /must be in the 'active' state/i.test(err.serverMessage);
}

function describe(record: BatchRecord): string {
  switch (record.type) {
    case 'metric':
      return `metric '${record.key}' (step ${record.step})`;
    case 'param':
      return `param '${record.key}'`;
    case 'tag':
      return `tag '${record.key}'`;
    case 'input':
      return `dataset input ${record.inputs.map((i) => `'${i.dataset.name}'`).join(', ')}`;
    case 'status':
      return `status ${record.status}`;
  }
}

/** Closes a snapshot descriptor and, once uploaded, deletes a spooled copy. */
function releaseBody(job: ArtifactJob, uploaded: boolean): void {
  const body = job.body;
  if (!(body instanceof Uint8Array) && body.fd !== undefined) {
    try {
      closeSync(body.fd);
    } catch {
      // already closed
    }
    body.fd = undefined;
  }
  if (uploaded && job.record.spooled) rmSync(job.record.localPath, { force: true });
}
