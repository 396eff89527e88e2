/**
 * MLflow's server-side limits (mlflow/utils/validation.py, MLflow 3.17). The client enforces them
 * itself so that a bad value fails with a clear error at the call site instead of a 400 later,
 * and so that no batch it builds is ever refused for its size.
 */
export const MLFLOW_LIMITS = {
  /** runs/log-batch: metrics per request. */
  metricsPerBatch: 1000,
  /** runs/log-batch: params per request (also tags per request). */
  paramsPerBatch: 100,
  tagsPerBatch: 100,
  /** runs/log-batch: metrics + params + tags per request. */
  entitiesPerBatch: 1000,
  /** runs/log-batch: JSON body size in bytes. */
  batchBytes: 1_000_000,
  /** Keys of metrics, params and tags (characters). */
  keyLength: 250,
  /** Param values (characters). The server would silently truncate longer ones. */
  paramValueLength: 6000,
  /** Tag values (characters). */
  tagValueLength: 8000,
  experimentNameLength: 500,
  datasetNameLength: 500,
  datasetDigestLength: 36,
  datasetSourceLength: 65_535,
  datasetSchemaLength: 1_048_575,
  datasetProfileLength: 16_777_215,
  inputTagKeyLength: 255,
  inputTagValueLength: 500,
} as const;
