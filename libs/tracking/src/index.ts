/**
 * @emseg/tracking: MLflow tracking for emseg runs, over REST, against a real MLflow server.
 * No TensorFlow here. See README.md for the guide.
 */
export { Tracker } from './tracker.js';
export type { TrackerOptions, StartRunOptions } from './tracker.js';
export { TrackedRun, toDatasetInput } from './run.js';
export type { ChildRunOptions, DatasetInfo, RunEndResult } from './run.js';
export type { FlushResult } from './delivery.js';
export type { ArtifactUploadResult, RunsUri } from './artifacts.js';
export { downloadArtifacts, parseRunsUri } from './artifacts.js';

export { MlflowClient, artifactProxyRoot } from './client.js';
export type { MlflowClientOptions, CreateRunRequest, LogBatchRequest, SearchRunsRequest, ArtifactBody } from './client.js';
export type { ArtifactFile, Dataset, DatasetInput, EndStatus, Experiment, MetricPoint, Run, RunInfo, RunStatus } from './types.js';

export { startMlflowServer, defaultStoreDir, findMlflowExecutable, freeLoopbackPort } from './server.js';
export type { MlflowServer, MlflowServerOptions } from './server.js';

export { syncJournal, syncJournals, findJournals } from './sync.js';
export type { SyncOptions, SyncReport } from './sync.js';
export { readJournal } from './journal.js';
export type { JournalHeader, JournalState } from './journal.js';

export { settingsFromEnv, parseTrackingUri } from './settings.js';
export type { Credentials, TrackingSettings } from './settings.js';
export { flattenParams, stringifyParam, validateKey, validateParam, validateTag, validateMetric, validateExperimentName } from './validate.js';
export { redactUri, isSecretKey, REDACTED } from './secrets.js';
export { MLFLOW_LIMITS } from './limits.js';
export { TAG } from './system-tags.js';
export { runUiLink, runUiUrl, experimentUiUrl, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND_TRAINING } from './ui-links.js';
export type { ProblemHandler, ProblemKind, TrackingProblem } from './problems.js';
export { TrackingError, TrackingInputError, MlflowApiError, MlflowUnreachableError, MlflowServerStartError, NotMlflowServerError } from './errors.js';
