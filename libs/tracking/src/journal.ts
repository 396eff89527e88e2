/**
 * The on-disk journal of one run: a JSON Lines file that is the source of truth for what the run
 * logged. Records are appended before they are sent; acknowledgements are appended once the
 * server stored them. A crash, a dead server or a lost answer leaves records unacknowledged, and
 * `sync` replays exactly those later.
 *
 * Lines:
 *   {"journal":"emseg-mlflow","version":1,"runId":...}   header (always the first line)
 *   {"seq":7,"type":"metric","key":"loss","value":0.31,"timestamp":1700000000123,"step":7}
 *   {"ack":7}                      every non-artifact record with seq <= 7 is delivered (or rejected)
 *   {"done":9}                     the artifact record 9 is uploaded
 *   {"rejected":8,"reason":"..."}  the server refused record 8 for good (it counts as handled)
 *   {"closed":1700000000999}       the writer stopped writing (run ended, process exiting)
 *
 * A torn last line (the process died mid-write) is ignored when reading.
 */
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, rmSync, writeSync } from 'node:fs';
import { writeFileAtomicSync } from '@emseg/fs';
import { TrackingError } from './errors.js';
import { decodeDouble, encodeJson } from './json-codec.js';
import type { BatchRecord, TrackingRecord, ArtifactRecord } from './records.js';

export const JOURNAL_FORMAT = 'emseg-mlflow';

export interface JournalHeader {
  journal: typeof JOURNAL_FORMAT;
  version: 1;
  runId: string;
  experimentId: string;
  artifactUri: string;
  /** The server the run was logged to (no credentials). */
  trackingUri: string;
  /** Set when the run used the embedded server: `sync` starts one on this store again. */
  embeddedStoreDir?: string;
  /** The writing process, so `sync` can refuse a journal that is still being written. */
  pid: number;
  host: string;
  createdAt: number;
}

/** Appends records and acknowledgements to a journal file with synchronous, whole-line writes. */
export class JournalWriter {
  private fd: number | undefined;
  private size: number;

  private constructor(
    readonly path: string,
    fd: number,
  ) {
    this.fd = fd;
    this.size = fstatSync(fd).size;
  }

  /** Creates a journal atomically (header written to a temp file, then renamed into place). */
  static create(path: string, header: JournalHeader): JournalWriter {
    writeFileAtomicSync(path, `${JSON.stringify(header)}\n`);
    return new JournalWriter(path, openSync(path, 'a'));
  }

  /** Opens an existing journal to append to it (sync does this). */
  static open(path: string): JournalWriter {
    return new JournalWriter(path, openSync(path, 'a'));
  }

  /** Bytes written so far: the offset the next record will start at. */
  get bytes(): number {
    return this.size;
  }

  get closed(): boolean {
    return this.fd === undefined;
  }

  /** Appends records (one write call for all of them). */
  append(records: readonly TrackingRecord[]): void {
    if (records.length === 0) return;
    let text = '';
    for (const record of records) text += `${encodeJson(record)}\n`;
    this.write(text);
  }

  /** Every non-artifact record with seq <= `seq` is handled. */
  ack(seq: number): void {
    this.write(`{"ack":${seq}}\n`);
  }

  /** The artifact record `seq` is uploaded. */
  done(seq: number): void {
    this.write(`{"done":${seq}}\n`);
  }

  /** The server refused record `seq` for good; it will not be retried. */
  reject(seq: number, reason: string): void {
    this.write(`${JSON.stringify({ rejected: seq, reason: reason.slice(0, 500) })}\n`);
  }

  /** Marks the journal as no longer written to (`{"closed":<ms>}`) and closes the file. */
  close(): void {
    if (this.fd === undefined) return;
    try {
      this.write(`{"closed":${Date.now()}}\n`);
    } finally {
      closeSync(this.fd);
      this.fd = undefined;
    }
  }

  /** Closes and deletes the journal (after everything in it was delivered). */
  remove(): void {
    this.close();
    rmSync(this.path, { force: true });
  }

  private write(text: string): void {
    if (this.fd === undefined) throw new TrackingError(`journal ${this.path} is closed`);
    const buffer = Buffer.from(text);
    let offset = 0;
    while (offset < buffer.length) offset += writeSync(this.fd, buffer, offset);
    this.size += buffer.length;
  }
}

/** What a journal says: its header and the records still to deliver. */
export interface JournalState {
  path: string;
  header: JournalHeader;
  /** Non-artifact records not yet acknowledged, in seq order. */
  pendingRecords: BatchRecord[];
  /** Artifact records not yet uploaded. */
  pendingArtifacts: ArtifactRecord[];
  /** Highest seq of any record (the next record gets lastSeq + 1). */
  lastSeq: number;
  /** All records the journal holds, delivered or not. */
  totalRecords: number;
  rejected: Array<{ seq: number; reason: string }>;
  /** Lines that could not be parsed (a torn last line after a crash). */
  damagedLines: number;
  /** Set when the run's final status record is in the journal. */
  endStatus?: string;
  /** True when the last writer closed the journal (false: still being written, or it crashed). */
  closed: boolean;
}

/** Reads and interprets a whole journal. Throws a TrackingError naming the file if it is not one. */
export function readJournal(path: string): JournalState {
  if (!existsSync(path)) throw new TrackingError(`journal ${path} does not exist`);
  const lines = readFileSync(path, 'utf8').split('\n');
  let header: JournalHeader | undefined;
  try {
    header = JSON.parse(lines[0] ?? '') as JournalHeader;
  } catch {
    header = undefined;
  }
  if (!header || header.journal !== JOURNAL_FORMAT || typeof header.runId !== 'string') {
    throw new TrackingError(`${path} is not an emseg MLflow journal (its first line should be a {"journal":"${JOURNAL_FORMAT}",...} header)`);
  }
  if (header.version !== 1) throw new TrackingError(`journal ${path} has version ${String(header.version)}; this client reads version 1`);

  const records: TrackingRecord[] = [];
  const done = new Set<number>();
  const rejected: Array<{ seq: number; reason: string }> = [];
  let acked = 0;
  let damagedLines = 0;
  let closed = false;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    if (line === '') continue;
    const entry = parseLine(line);
    if (!entry) {
      damagedLines++;
      continue;
    }
    closed = 'closed' in entry;
    if ('seq' in entry) records.push(entry);
    else if ('closed' in entry) continue;
    else if ('ack' in entry) acked = Math.max(acked, entry.ack);
    else if ('done' in entry) done.add(entry.done);
    else rejected.push({ seq: entry.rejected, reason: entry.reason });
  }
  const rejectedSeqs = new Set(rejected.map((r) => r.seq));
  const state: JournalState = {
    path,
    header,
    pendingRecords: [],
    pendingArtifacts: [],
    lastSeq: 0,
    totalRecords: records.length,
    rejected,
    damagedLines,
    closed,
  };
  for (const record of records) {
    state.lastSeq = Math.max(state.lastSeq, record.seq);
    if (record.type === 'status') state.endStatus = record.status;
    if (rejectedSeqs.has(record.seq)) continue;
    if (record.type === 'artifact') {
      if (!done.has(record.seq)) state.pendingArtifacts.push(record);
    } else if (record.seq > acked) {
      state.pendingRecords.push(record);
    }
  }
  state.pendingRecords.sort((a, b) => a.seq - b.seq);
  return state;
}

/**
 * Reads non-artifact records from byte `offset` on, up to `maxRecords` of them, stopping at
 * `endOffset`. Used by the delivery queue when it keeps too many records to hold them in memory.
 * Returns the records and the offset just after the last line consumed.
 */
export function readRecordsFrom(path: string, offset: number, endOffset: number, maxRecords: number): { records: BatchRecord[]; nextOffset: number } {
  const records: BatchRecord[] = [];
  const fd = openSync(path, 'r');
  try {
    let position = offset;
    while (position < endOffset && records.length < maxRecords) {
      const length = Math.min(endOffset - position, 4 << 20);
      const buffer = Buffer.alloc(length);
      const n = readSync(fd, buffer, 0, length, position);
      if (n <= 0) break;
      const lastNewline = buffer.lastIndexOf(NEWLINE, n - 1);
      if (lastNewline < 0) break; // no complete line: nothing this client wrote is that long
      let start = 0;
      while (start <= lastNewline && records.length < maxRecords) {
        const end = buffer.indexOf(NEWLINE, start);
        const entry = parseLine(buffer.toString('utf8', start, end));
        if (entry && 'seq' in entry && entry.type !== 'artifact') records.push(entry);
        start = end + 1;
      }
      position += start;
    }
    return { records, nextOffset: position };
  } finally {
    closeSync(fd);
  }
}

const NEWLINE = 0x0a;

type Entry = TrackingRecord | { ack: number } | { done: number } | { rejected: number; reason: string } | { closed: number };

function parseLine(line: string): Entry | undefined {
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  if (typeof value.ack === 'number') return { ack: value.ack };
  if (typeof value.closed === 'number') return { closed: value.closed };
  if (typeof value.done === 'number') return { done: value.done };
  if (typeof value.rejected === 'number') return { rejected: value.rejected, reason: String(value.reason ?? '') };
  if (typeof value.seq !== 'number' || typeof value.type !== 'string') return undefined;
  if (value.type === 'metric') value.value = decodeDouble(value.value);
  return value as unknown as TrackingRecord;
}
