/**
 * Links into the MLflow UI (3.x routes), for apps to print next to a run.
 *
 * @example
 *   runUiUrl('http://127.0.0.1:5000', '1', 'ab12...')   // 'http://127.0.0.1:5000/#/experiments/1/runs/ab12...'
 *   experimentUiUrl('http://127.0.0.1:5000', '1')       // 'http://127.0.0.1:5000/#/experiments/1/runs'
 */
import type { MlflowClient } from './client.js';
import { redactUri } from './secrets.js';

/**
 * The experiment tag MLflow 3.x's UI reads to choose an experiment's page: without it, it guesses,
 * and an experiment without traces may open on the GenAI overview instead of the runs table.
 */
export const EXPERIMENT_KIND_TAG = 'mlflow.experimentKind';
/** The kind for model training (MLflow's `ExperimentKind.CUSTOM_MODEL_DEVELOPMENT`). */
export const EXPERIMENT_KIND_TRAINING = 'custom_model_development';

/** The UI page of one run. */
export function runUiUrl(trackingUri: string, experimentId: string, runId: string): string {
  return `${experimentUiUrl(trackingUri, experimentId)}/${encodeURIComponent(runId)}`;
}

/** The runs table of an experiment. */
export function experimentUiUrl(trackingUri: string, experimentId: string): string {
  return `${redactUri(trackingUri).replace(/\/+$/, '')}/#/experiments/${encodeURIComponent(experimentId)}/runs`;
}

/** The UI page of run `runId` on `client`'s server, or null when that server does not know the run. */
export async function runUiLink(client: MlflowClient, runId: string): Promise<string | null> {
  try {
    const run = await client.getRun(runId);
    return runUiUrl(client.trackingUri, run.info.experimentId, runId);
  } catch {
    return null;
  }
}
