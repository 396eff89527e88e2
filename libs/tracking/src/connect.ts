/** Connecting: waiting for a tracking server to answer before the first run starts. */
import { backoffDelay, type BackoffPolicy } from './batching.js';
import type { MlflowClient } from './client.js';
import { MlflowApiError, MlflowUnreachableError, NotMlflowServerError } from './errors.js';

/**
 * Checks that the server answers and accepts our credentials, retrying connection failures and
 * 5xx answers with backoff for up to `timeoutMs`.
 */
export async function checkServer(client: MlflowClient, timeoutMs: number): Promise<void> {
  const started = Date.now();
  const policy: BackoffPolicy = { baseMs: 200, maxMs: 2000 };
  for (let attempt = 1; ; attempt++) {
    try {
      await client.getExperimentByName('Default');
      return;
    } catch (err) {
      const retryable = err instanceof MlflowUnreachableError || (err instanceof MlflowApiError && err.status >= 500);
      const elapsed = Date.now() - started;
      if (err instanceof MlflowApiError && err.status === 404 && !err.errorCode && !(err instanceof NotMlflowServerError)) {
        // MLflow names the missing thing (error_code); a bare 404 means the API is not there.
        throw new NotMlflowServerError(
          err.endpoint,
          404,
          `a body without MLflow's error_code (${JSON.stringify(err.serverMessage.slice(0, 120))})`,
          client.trackingUri,
        );
      }
      if (!retryable) throw err;
      if (elapsed >= timeoutMs) {
        const reason = err instanceof MlflowUnreachableError ? err.reason : err instanceof Error ? err.message : String(err);
        throw new MlflowUnreachableError(
          client.trackingUri,
          'GET experiments/get-by-name',
          `${reason}; tried ${attempt} times over ${(elapsed / 1000).toFixed(1)} s. Check MLFLOW_TRACKING_URI, start a server with \`npm run mlflow\`, or unset MLFLOW_TRACKING_URI to log to the embedded local store`,
        );
      }
      await new Promise((r) => setTimeout(r, Math.min(backoffDelay(attempt, policy), Math.max(0, timeoutMs - elapsed))));
    }
  }
}
