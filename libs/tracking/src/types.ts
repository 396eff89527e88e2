/**
 * MLflow entities as the REST API (`/api/2.0/mlflow/`) returns them, with int64 fields as numbers
 * and metric values decoded (`"NaN"` -> NaN).
 */

export type RunStatus = 'RUNNING' | 'SCHEDULED' | 'FINISHED' | 'FAILED' | 'KILLED';
/** The statuses a run can end with. */
export type EndStatus = 'FINISHED' | 'FAILED' | 'KILLED';

export interface Experiment {
  experimentId: string;
  name: string;
  artifactLocation: string;
  lifecycleStage: string;
  tags: Record<string, string>;
}

export interface RunInfo {
  runId: string;
  runName: string;
  experimentId: string;
  status: RunStatus;
  startTime: number;
  endTime?: number;
  /** `mlflow-artifacts:/<experiment>/<run>/artifacts` on a server that serves artifacts. */
  artifactUri: string;
  lifecycleStage: string;
}

/** One point of a metric's history. */
export interface MetricPoint {
  key: string;
  value: number;
  /** Milliseconds since the epoch. */
  timestamp: number;
  step: number;
}

/** A dataset as logged with runs/log-inputs. `source` is usually a JSON string like `{"uri": "..."}`. */
export interface Dataset {
  name: string;
  digest: string;
  sourceType: string;
  source: string;
  schema?: string;
  profile?: string;
}

export interface DatasetInput {
  dataset: Dataset;
  /** Input tags; MLflow's UI shows `mlflow.data.context` (`training`, `validation`...). */
  tags: Record<string, string>;
}

export interface Run {
  info: RunInfo;
  /** Latest value of each metric. */
  metrics: MetricPoint[];
  params: Record<string, string>;
  tags: Record<string, string>;
  inputs: DatasetInput[];
}

/** An entry of an artifact listing; `path` is relative to the run's artifact root. */
export interface ArtifactFile {
  path: string;
  isDir: boolean;
  fileSize?: number;
}
