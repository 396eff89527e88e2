/**
 * Turning the queue of pending records into REST requests that the server accepts: runs/log-batch
 * within MLflow's limits, and runs/log-inputs and runs/update one at a time, all in seq order.
 * Pure functions.
 */
import { MLFLOW_LIMITS } from './limits.js';
import type { BatchRecord, InputRecord, MetricRecord, ParamRecord, StatusRecord, TagRecord } from './records.js';

export type PlannedRequest =
  | { kind: 'batch'; records: Array<MetricRecord | ParamRecord | TagRecord> }
  | { kind: 'inputs'; records: InputRecord[] }
  | { kind: 'status'; records: StatusRecord[] };

/** Room left for the JSON envelope of a log-batch body below the server's 1 MB limit. */
const BODY_BUDGET = MLFLOW_LIMITS.batchBytes - 16_000;

/**
 * The next request to send for `pending` (seq order), taking at most `maxRecords` records.
 * A log-batch stops before a limit would be exceeded, before a param or tag key repeats (the
 * server refuses repeated param keys in one request, and a repeated tag must keep its order),
 * and before an input or status record.
 *
 * @example planRequest([m1, m2, p1, status]) // { kind: 'batch', records: [m1, m2, p1] }
 */
export function planRequest(pending: readonly BatchRecord[], maxRecords = Infinity): PlannedRequest | undefined {
  const first = pending[0];
  if (!first) return undefined;
  if (first.type === 'input') return { kind: 'inputs', records: [first] };
  if (first.type === 'status') return { kind: 'status', records: [first] };

  const records: Array<MetricRecord | ParamRecord | TagRecord> = [];
  let metrics = 0;
  let params = 0;
  let tags = 0;
  let bytes = 0;
  const paramKeys = new Set<string>();
  const tagKeys = new Set<string>();
  for (const record of pending) {
    if (records.length >= maxRecords || records.length >= MLFLOW_LIMITS.entitiesPerBatch) break;
    if (record.type === 'input' || record.type === 'status') break;
    const size = approximateBytes(record);
    if (records.length > 0 && bytes + size > BODY_BUDGET) break;
    if (record.type === 'metric') {
      if (metrics >= MLFLOW_LIMITS.metricsPerBatch) break;
      metrics++;
    } else if (record.type === 'param') {
      if (params >= MLFLOW_LIMITS.paramsPerBatch || paramKeys.has(record.key)) break;
      paramKeys.add(record.key);
      params++;
    } else {
      if (tags >= MLFLOW_LIMITS.tagsPerBatch || tagKeys.has(record.key)) break;
      tagKeys.add(record.key);
      tags++;
    }
    bytes += size;
    records.push(record);
  }
  return { kind: 'batch', records };
}

/** The log-batch body fields for planned records. */
export function toLogBatch(records: ReadonlyArray<MetricRecord | ParamRecord | TagRecord>): {
  metrics: Array<{ key: string; value: number; timestamp: number; step: number }>;
  params: Array<{ key: string; value: string }>;
  tags: Array<{ key: string; value: string }>;
} {
  const metrics: Array<{ key: string; value: number; timestamp: number; step: number }> = [];
  const params: Array<{ key: string; value: string }> = [];
  const tags: Array<{ key: string; value: string }> = [];
  for (const r of records) {
    if (r.type === 'metric') metrics.push({ key: r.key, value: r.value, timestamp: r.timestamp, step: r.step });
    else if (r.type === 'param') params.push({ key: r.key, value: r.value });
    else tags.push({ key: r.key, value: r.value });
  }
  return { metrics, params, tags };
}

/** An upper bound of a record's bytes in the JSON body (strings may need escaping). */
function approximateBytes(record: MetricRecord | ParamRecord | TagRecord): number {
  const key = Buffer.byteLength(JSON.stringify(record.key));
  if (record.type === 'metric') return key + 90;
  return key + Buffer.byteLength(JSON.stringify(record.value)) + 30;
}

export interface BackoffPolicy {
  /** Delay after the first failure. */
  baseMs: number;
  /** Longest delay between attempts. */
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 250, maxMs: 10_000 };

/**
 * Exponential backoff with jitter: attempt 1 waits about baseMs, each further attempt doubles, up
 * to maxMs; the delay is scaled by a random factor in [0.5, 1) so that many clients do not retry
 * in lockstep.
 * @example backoffDelay(3, { baseMs: 250, maxMs: 10_000 }, () => 0.999) // ~1000 ms
 */
export function backoffDelay(attempt: number, policy: BackoffPolicy = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const exponential = policy.baseMs * 2 ** Math.max(0, Math.min(attempt - 1, 30));
  return Math.round(Math.min(policy.maxMs, exponential) * (0.5 + random() * 0.5));
}
