/**
 * Where to log and as whom, from options and MLflow's environment conventions:
 * MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_NAME, MLFLOW_TRACKING_TOKEN (bearer token),
 * MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (basic auth). Credentials may also sit in the
 * URI's userinfo (`https://user:pass@host`); they are moved into the Authorization header and never
 * kept in the URI that is printed or stored.
 */
import { TrackingInputError } from './errors.js';
import { redactUri } from './secrets.js';

export interface Credentials {
  /** Bearer token (MLFLOW_TRACKING_TOKEN). Takes precedence over username/password. */
  token?: string;
  username?: string;
  password?: string;
}

export interface TrackingSettings extends Credentials {
  /** http(s) URI of a tracking server; undefined means "use the embedded local server". */
  trackingUri?: string;
  /** Experiment name (MLFLOW_EXPERIMENT_NAME). */
  experimentName?: string;
}

/** Reads the MLFLOW_* variables; empty strings count as unset. */
export function settingsFromEnv(env: NodeJS.ProcessEnv = process.env): TrackingSettings {
  const get = (name: string): string | undefined => {
    const value = env[name];
    return value === undefined || value.trim() === '' ? undefined : value;
  };
  return {
    trackingUri: get('MLFLOW_TRACKING_URI'),
    experimentName: get('MLFLOW_EXPERIMENT_NAME'),
    token: get('MLFLOW_TRACKING_TOKEN'),
    username: get('MLFLOW_TRACKING_USERNAME'),
    password: get('MLFLOW_TRACKING_PASSWORD'),
  };
}

/** A parsed tracking URI: the base URL without credentials, plus any userinfo it carried. */
export interface ServerAddress {
  /** `http://127.0.0.1:5000` or `https://host/prefix`, no trailing slash, no userinfo. */
  baseUrl: string;
  username?: string;
  password?: string;
}

/**
 * Parses an http(s) tracking URI. Other MLflow URI kinds (`file:`, `sqlite:`, `databricks`) need
 * MLflow's Python store code; this client only speaks REST, so they are refused with a hint.
 */
export function parseTrackingUri(uri: string): ServerAddress {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new TrackingInputError('tracking URI', redactUri(uri), 'expected an http(s) URL such as http://127.0.0.1:5000');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new TrackingInputError(
      'tracking URI',
      redactUri(uri),
      'libs/tracking talks to an MLflow tracking server over REST, so it needs an http(s) URL; start a server with `npm run mlflow` and point MLFLOW_TRACKING_URI at it, or unset MLFLOW_TRACKING_URI to log to the embedded local store',
    );
  }
  const username = url.username ? decodeURIComponent(url.username) : undefined;
  const password = url.password ? decodeURIComponent(url.password) : undefined;
  url.username = '';
  url.password = '';
  url.hash = '';
  return { baseUrl: url.toString().replace(/\/+$/, ''), username, password };
}
