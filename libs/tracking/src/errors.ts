/**
 * Errors thrown by libs/tracking. Every message names the thing that was wrong (field, key, URI,
 * file) and what was expected, and never contains a credential.
 */

/** Base class: catch this to handle any tracking failure. */
export class TrackingError extends Error {
  override name = 'TrackingError';
}

/**
 * Input rejected before it reached the server: an invalid key, an over-long value, a bad step.
 * `field` names the argument (`param 'lr'`, `metric key`, `experiment name`).
 */
export class TrackingInputError extends TrackingError {
  override name = 'TrackingInputError';
  constructor(
    readonly field: string,
    readonly value: unknown,
    readonly expected: string,
  ) {
    super(`invalid ${field} ${preview(value)}: ${expected}`);
  }
}

/** The MLflow server answered with an HTTP error (after any retries). */
export class MlflowApiError extends TrackingError {
  override name = 'MlflowApiError';
  constructor(
    /** `POST runs/log-batch`, `PUT mlflow-artifacts/...`. */
    readonly endpoint: string,
    readonly status: number,
    /** MLflow's `error_code` (`INVALID_PARAMETER_VALUE`, `RESOURCE_DOES_NOT_EXIST`...) when given. */
    readonly errorCode: string | undefined,
    readonly serverMessage: string,
    readonly trackingUri: string,
  ) {
    super(`MLflow server ${trackingUri} answered ${status}${errorCode ? ` ${errorCode}` : ''} to ${endpoint}: ${serverMessage}${hint(status)}`);
  }

  /** Worth retrying later: the server is overloaded, restarting or (for 401/403) misconfigured. */
  get transient(): boolean {
    return this.status >= 500 || this.status === 408 || this.status === 429 || this.status === 401 || this.status === 403;
  }
}

/**
 * The URI answers HTTP, but not as MLflow does (a web page, another service, a wrong path): the
 * tracking URI is probably wrong. The page itself is never part of the message.
 */
export class NotMlflowServerError extends MlflowApiError {
  override name = 'NotMlflowServerError';
  constructor(endpoint: string, status: number, answer: string, trackingUri: string) {
    super(endpoint, status, undefined, answer, trackingUri);
    this.message =
      `${trackingUri} does not look like an MLflow tracking server: ${endpoint} answered ${status} with ${answer}, not MLflow's JSON. ` +
      'Check MLFLOW_TRACKING_URI (or --tracking-uri): it should be the root URL of an MLflow server, e.g. http://127.0.0.1:5000';
  }
}

/** No HTTP answer at all: connection refused, DNS failure, timeout. */
export class MlflowUnreachableError extends TrackingError {
  override name = 'MlflowUnreachableError';
  constructor(
    readonly trackingUri: string,
    readonly endpoint: string,
    readonly reason: string,
  ) {
    super(`cannot reach the MLflow tracking server at ${trackingUri} (${endpoint}: ${reason})`);
  }
}

/** The local MLflow server process could not be started. `logTail` holds its last output lines. */
export class MlflowServerStartError extends TrackingError {
  override name = 'MlflowServerStartError';
  constructor(
    message: string,
    readonly logTail: string,
  ) {
    super(logTail ? `${message}\n--- last lines of the server log ---\n${logTail}` : message);
  }
}

function hint(status: number): string {
  if (status === 401 || status === 403) {
    return ' (check MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)';
  }
  return '';
}

/** A short, single-line rendering of a bad value for error messages. */
export function preview(value: unknown): string {
  let text: string;
  if (typeof value === 'string') text = JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value);
  else if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) text = String(value);
  else {
    try {
      text = JSON.stringify(value) ?? String(value);
    } catch {
      text = Object.prototype.toString.call(value);
    }
    if (text.length > 80) text = `${text.slice(0, 80)}...`;
  }
  return text;
}
