/**
 * What a run logs, as journal records: one per metric point, param, tag, dataset input, status
 * change or artifact file. Every record gets a sequence number (`seq`) that orders delivery and
 * lets the journal say what has been delivered. Records carry everything needed to deliver them
 * again later, including the metric timestamp taken when it was logged: re-sending the exact same
 * (key, value, timestamp, step) is stored once by MLflow, which makes replays idempotent.
 */
import type { DatasetInput, EndStatus } from './types.js';

export interface MetricRecord {
  seq: number;
  type: 'metric';
  key: string;
  value: number;
  timestamp: number;
  step: number;
}

export interface ParamRecord {
  seq: number;
  type: 'param';
  key: string;
  value: string;
}

export interface TagRecord {
  seq: number;
  type: 'tag';
  key: string;
  value: string;
}

export interface InputRecord {
  seq: number;
  type: 'input';
  inputs: DatasetInput[];
}

export interface StatusRecord {
  seq: number;
  type: 'status';
  status: EndStatus;
  endTime: number;
}

/**
 * One artifact file. `localPath` is what `sync` re-uploads when the live process could not;
 * `size`/`mtimeMs` let it warn when the file changed since. `spooled` marks a copy the client made
 * itself (logArtifactData), deleted once uploaded.
 */
export interface ArtifactRecord {
  seq: number;
  type: 'artifact';
  localPath: string;
  artifactPath: string;
  size: number;
  mtimeMs: number;
  spooled?: boolean;
}

/** Records delivered in order through REST calls (everything but artifact files). */
export type BatchRecord = MetricRecord | ParamRecord | TagRecord | InputRecord | StatusRecord;
export type TrackingRecord = BatchRecord | ArtifactRecord;

/** Distributive Omit, so `RecordInput` stays a union of the record shapes without `seq`. */
type WithoutSeq<T> = T extends unknown ? Omit<T, 'seq'> : never;
export type RecordInput = WithoutSeq<TrackingRecord>;
