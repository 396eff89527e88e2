/**
 * The journal (what is waiting, what was acknowledged, crash leftovers) and request planning
 * (MLflow's log-batch limits), without a server.
 */
import { appendFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readJournal } from '@emseg/tracking';
import { backoffDelay, planRequest } from '../src/batching.js';
import { JournalWriter, readRecordsFrom, type JournalHeader } from '../src/journal.js';
import type { BatchRecord, MetricRecord, ParamRecord, TagRecord } from '../src/records.js';
import { tempDir } from './support.js';

const dir = tempDir('journal');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const header = (runId: string): JournalHeader => ({
  journal: 'emseg-mlflow',
  version: 1,
  runId,
  experimentId: '1',
  artifactUri: `mlflow-artifacts:/1/${runId}/artifacts`,
  trackingUri: 'http://127.0.0.1:5000',
  pid: process.pid,
  host: 'test',
  createdAt: 0,
});

const metric = (seq: number, step = seq, key = 'loss'): MetricRecord => ({
  seq,
  type: 'metric',
  key,
  value: 1 / seq,
  timestamp: 1_700_000_000_000 + seq,
  step,
});
const param = (seq: number, key: string): ParamRecord => ({ seq, type: 'param', key, value: String(seq) });
const tag = (seq: number, key: string, value = 'v'): TagRecord => ({ seq, type: 'tag', key, value });

describe('journal', () => {
  it('reports exactly the records that were not acknowledged, and artifacts not done', () => {
    const path = join(dir, 'r1.jsonl');
    const journal = JournalWriter.create(path, header('r1'));
    journal.append([metric(1), metric(2), param(3, 'lr')]);
    journal.append([{ seq: 4, type: 'artifact', localPath: '/x/a.bin', artifactPath: 'a.bin', size: 3, mtimeMs: 0 }, metric(5)]);
    journal.ack(2);
    journal.append([
      { seq: 6, type: 'metric', key: 'nan', value: NaN, timestamp: 7, step: 0 },
      { seq: 7, type: 'status', status: 'KILLED', endTime: 9 },
    ]);
    journal.close();

    const state = readJournal(path);
    expect(state.header.runId).toBe('r1');
    expect(state.pendingRecords.map((r) => r.seq)).toEqual([3, 5, 6, 7]);
    expect(state.pendingArtifacts.map((r) => r.seq)).toEqual([4]);
    expect(state.lastSeq).toBe(7);
    expect(state.endStatus).toBe('KILLED');
    const nan = state.pendingRecords.find((r) => r.seq === 6) as MetricRecord;
    expect(nan.value).toBeNaN();

    const again = JournalWriter.open(path);
    again.ack(6);
    again.done(4);
    again.reject(7, 'refused');
    again.close();
    const after = readJournal(path);
    expect(after.pendingRecords).toEqual([]);
    expect(after.pendingArtifacts).toEqual([]);
    expect(after.rejected).toEqual([{ seq: 7, reason: 'refused' }]);
    expect(after.closed).toBe(true);
  });

  it('tells a journal still being written from a closed one', () => {
    const path = join(dir, 'open.jsonl');
    const journal = JournalWriter.create(path, header('open'));
    journal.append([metric(1)]);
    expect(readJournal(path).closed).toBe(false);
    journal.close();
    expect(readJournal(path).closed).toBe(true);
  });

  it('skips a torn last line left by a crash mid-write', () => {
    const path = join(dir, 'torn.jsonl');
    const journal = JournalWriter.create(path, header('torn'));
    journal.append([metric(1), metric(2)]);
    journal.close();
    appendFileSync(path, '{"seq":3,"type":"metr');
    const state = readJournal(path);
    expect(state.pendingRecords.map((r) => r.seq)).toEqual([1, 2]);
    expect(state.damagedLines).toBe(1);
  });

  it('names the file when it is not a journal', () => {
    const path = join(dir, 'other.jsonl');
    writeFileSync(path, '{"hello":1}\n');
    expect(() => readJournal(path)).toThrow(new RegExp(`${path}.*not an emseg MLflow journal`));
    expect(() => readJournal(join(dir, 'missing.jsonl'))).toThrow(/does not exist/);
  });

  it('reads records back from a byte offset, in bounded chunks', () => {
    const path = join(dir, 'spill.jsonl');
    const journal = JournalWriter.create(path, header('spill'));
    const start = journal.bytes;
    const records = Array.from({ length: 50 }, (_, i) => metric(i + 1));
    journal.append(records.slice(0, 20));
    journal.ack(3);
    journal.append(records.slice(20));
    const end = journal.bytes;
    expect(end).toBe(readFileSync(path).length);
    journal.close();

    const seen: number[] = [];
    let offset = start;
    while (offset < end) {
      const chunk = readRecordsFrom(path, offset, end, 7);
      expect(chunk.records.length).toBeLessThanOrEqual(7);
      seen.push(...chunk.records.map((r) => r.seq));
      expect(chunk.nextOffset).toBeGreaterThan(offset);
      offset = chunk.nextOffset;
    }
    expect(seen).toEqual(records.map((r) => r.seq));
  });
});

describe('request planning', () => {
  it('fills a log-batch up to 1000 metrics', () => {
    const pending = Array.from({ length: 2500 }, (_, i) => metric(i + 1));
    const first = planRequest(pending);
    expect(first?.kind).toBe('batch');
    expect(first?.records).toHaveLength(1000);
    expect(planRequest(pending.slice(2000))?.records).toHaveLength(500);
  });

  it('keeps at most 100 params and 100 tags per request, and never repeats a key in one request', () => {
    const params = Array.from({ length: 150 }, (_, i) => param(i + 1, `p${i}`));
    expect(planRequest(params)?.records).toHaveLength(100);
    const tags = Array.from({ length: 150 }, (_, i) => tag(i + 1, `t${i}`));
    expect(planRequest(tags)?.records).toHaveLength(100);
    expect(planRequest([param(1, 'lr'), metric(2), param(3, 'lr')])?.records.map((r) => r.seq)).toEqual([1, 2]);
    expect(planRequest([tag(1, 'phase', 'a'), tag(2, 'phase', 'b')])?.records.map((r) => r.seq)).toEqual([1]);
  });

  it('keeps a request under the 1 MB body limit', () => {
    const bigTags = Array.from({ length: 100 }, (_, i) => tag(i + 1, `t${i}`, 'x'.repeat(8000)));
    const bigParams = Array.from({ length: 100 }, (_, i) => param(101 + i, `p${i}`));
    for (const p of bigParams) p.value = 'y'.repeat(6000);
    const plan = planRequest([...bigTags, ...bigParams]);
    const bytes = JSON.stringify(plan?.records).length;
    expect(bytes).toBeLessThan(1_000_000);
    expect(plan?.records.length).toBeLessThan(200);
  });

  it('sends dataset inputs and the final status as their own requests, in order', () => {
    const input: BatchRecord = { seq: 2, type: 'input', inputs: [] };
    const status: BatchRecord = { seq: 4, type: 'status', status: 'FINISHED', endTime: 0 };
    const pending: BatchRecord[] = [metric(1), input, metric(3), status];
    expect(planRequest(pending)?.records.map((r) => r.seq)).toEqual([1]);
    expect(planRequest(pending.slice(1))?.kind).toBe('inputs');
    expect(planRequest(pending.slice(3))?.kind).toBe('status');
    expect(planRequest([])).toBeUndefined();
  });

  it('honours a smaller request size while a bad record is searched for', () => {
    const pending = Array.from({ length: 10 }, (_, i) => metric(i + 1));
    expect(planRequest(pending, 3)?.records).toHaveLength(3);
  });

  it('backs off exponentially with jitter, up to the cap', () => {
    const policy = { baseMs: 100, maxMs: 1000 };
    expect(backoffDelay(1, policy, () => 0)).toBe(50);
    expect(backoffDelay(1, policy, () => 0.999)).toBeCloseTo(100, -1);
    expect(backoffDelay(3, policy, () => 0.999)).toBeCloseTo(400, -1);
    expect(backoffDelay(20, policy, () => 0.999)).toBeLessThanOrEqual(1000);
  });
});
