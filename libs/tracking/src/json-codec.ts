/**
 * JSON as MLflow's protobuf-JSON REST API speaks it: non-finite doubles travel as the strings
 * `"NaN"`, `"Infinity"`, `"-Infinity"` (plain JSON.stringify would turn them into `null`), and
 * responses use snake_case with int64 fields as numbers.
 */
import type { ArtifactFile, Dataset, DatasetInput, Experiment, MetricPoint, Run, RunInfo, RunStatus } from './types.js';

/** JSON.stringify that keeps NaN and infinities as MLflow expects them. */
export function encodeJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v));
}

/** A double from MLflow JSON: a number, or one of the strings "NaN", "Infinity", "-Infinity". */
export function decodeDouble(value: unknown): number {
  if (typeof value === 'number') return value;
  if (value === 'NaN') return NaN;
  if (value === 'Infinity') return Infinity;
  if (value === '-Infinity') return -Infinity;
  if (typeof value === 'string' && value.trim() !== '' && !Number.isNaN(Number(value))) return Number(value);
  return NaN;
}

/** int64 fields may come as numbers or decimal strings. */
export function decodeInt(value: unknown, fallback = 0): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'string' && /^-?\d+$/.test(value)) return Number(value);
  return fallback;
}

type Json = Record<string, unknown>;
type KeyValue = { key?: unknown; value?: unknown };

function keyValues(list: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (Array.isArray(list)) for (const kv of list as KeyValue[]) if (typeof kv.key === 'string') out[kv.key] = String(kv.value ?? '');
  return out;
}

export function decodeMetric(m: Json): MetricPoint {
  return { key: String(m.key), value: decodeDouble(m.value), timestamp: decodeInt(m.timestamp), step: decodeInt(m.step) };
}

export function decodeExperiment(e: Json): Experiment {
  return {
    experimentId: String(e.experiment_id),
    name: String(e.name),
    artifactLocation: String(e.artifact_location ?? ''),
    lifecycleStage: String(e.lifecycle_stage ?? 'active'),
    tags: keyValues(e.tags),
  };
}

export function decodeRunInfo(i: Json): RunInfo {
  const info: RunInfo = {
    runId: String(i.run_id ?? i.run_uuid),
    runName: String(i.run_name ?? ''),
    experimentId: String(i.experiment_id),
    status: String(i.status ?? 'RUNNING') as RunStatus,
    startTime: decodeInt(i.start_time),
    artifactUri: String(i.artifact_uri ?? ''),
    lifecycleStage: String(i.lifecycle_stage ?? 'active'),
  };
  if (i.end_time !== undefined) info.endTime = decodeInt(i.end_time);
  return info;
}

function decodeDataset(d: Json): Dataset {
  const dataset: Dataset = {
    name: String(d.name),
    digest: String(d.digest),
    sourceType: String(d.source_type),
    source: String(d.source),
  };
  if (typeof d.schema === 'string') dataset.schema = d.schema;
  if (typeof d.profile === 'string') dataset.profile = d.profile;
  return dataset;
}

export function decodeRun(r: Json): Run {
  const data = (r.data ?? {}) as Json;
  const inputs = ((r.inputs ?? {}) as Json).dataset_inputs;
  return {
    info: decodeRunInfo((r.info ?? {}) as Json),
    metrics: Array.isArray(data.metrics) ? (data.metrics as Json[]).map(decodeMetric) : [],
    params: keyValues(data.params),
    tags: keyValues(data.tags),
    inputs: Array.isArray(inputs)
      ? (inputs as Json[]).map((di): DatasetInput => ({ dataset: decodeDataset((di.dataset ?? {}) as Json), tags: keyValues(di.tags) }))
      : [],
  };
}

export function decodeArtifactFile(f: Json): ArtifactFile {
  const file: ArtifactFile = { path: String(f.path), isDir: f.is_dir === true };
  if (f.file_size !== undefined) file.fileSize = decodeInt(f.file_size);
  return file;
}

/** The snake_case wire form of a dataset input for runs/log-inputs. */
export function encodeDatasetInput(input: DatasetInput): Json {
  const d = input.dataset;
  const dataset: Json = { name: d.name, digest: d.digest, source_type: d.sourceType, source: d.source };
  if (d.schema !== undefined) dataset.schema = d.schema;
  if (d.profile !== undefined) dataset.profile = d.profile;
  return { tags: Object.entries(input.tags).map(([key, value]) => ({ key, value })), dataset };
}
