/**
 * Client-side validation with MLflow's own rules (mlflow/utils/validation.py), so bad input fails
 * at the call site with a message that names the field, the value and what was expected.
 * Pure functions: they throw {@link TrackingInputError} or return normalised values.
 */
import { TrackingInputError } from './errors.js';
import { MLFLOW_LIMITS } from './limits.js';

/** Python's `re.match(r"^[/\w.\- :]*$")` with Unicode `\w`. */
const NAME_CHARS = /^[\p{L}\p{N}_/.\- :]*$/u;
const NAME_RULE = 'names may only contain alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), colons (:) and slashes (/)';

/** Length in Unicode code points, as Python's `len(str)` counts. */
export function codePointLength(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/**
 * Python's `posixpath.normpath`, which MLflow uses to refuse names that would alias other names
 * when stored as files: `normpath('a//b/./c/')` is `'a/b/c'`, `normpath('')` is `'.'`.
 */
export function pythonNormpath(path: string): string {
  if (path === '') return '.';
  let initialSlashes = path.startsWith('/') ? 1 : 0;
  if (initialSlashes && path.startsWith('//') && !path.startsWith('///')) initialSlashes = 2;
  const parts: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part !== '..' || (!initialSlashes && parts.length === 0) || parts[parts.length - 1] === '..') parts.push(part);
    else if (parts.length > 0) parts.pop();
  }
  return '/'.repeat(initialSlashes) + parts.join('/') || '.';
}

/**
 * Checks a metric, param or tag key. `kind` only shapes the message: `metric key`, `param key`.
 * @example validateKey('metric', 'train/loss') // ok
 * @example validateKey('param', 'a/../b')      // throws: would resolve to 'b'
 */
export function validateKey(kind: 'metric' | 'param' | 'tag' | 'input tag', key: unknown): string {
  const field = `${kind} key`;
  if (typeof key !== 'string' || key === '') throw new TrackingInputError(field, key, 'expected a non-empty string');
  if (codePointLength(key) > MLFLOW_LIMITS.keyLength) {
    throw new TrackingInputError(field, key, `longer than MLflow's limit of ${MLFLOW_LIMITS.keyLength} characters`);
  }
  if (!NAME_CHARS.test(key)) throw new TrackingInputError(field, key, NAME_RULE);
  const norm = pythonNormpath(key);
  if (norm !== key || norm === '.' || norm.startsWith('..') || norm.startsWith('/')) {
    throw new TrackingInputError(
      field,
      key,
      `names are stored as file paths and must not resolve to another name (this one resolves to ${JSON.stringify(norm)}): no leading '/' or '..', no '//', './' or trailing '/'`,
    );
  }
  return key;
}

/**
 * Turns a param value into the string MLflow stores: strings as they are, numbers and booleans
 * with `String()`, `null` as `'null'`, arrays and objects as JSON.
 * @example stringifyParam(0.015) // '0.015'
 * @example stringifyParam([120, 160]) // '[120,160]'
 */
export function stringifyParam(key: string, value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (value === null) return 'null';
  if (value === undefined || typeof value === 'function' || typeof value === 'symbol') {
    throw new TrackingInputError(`param '${key}'`, value, 'expected a string, number, boolean, null, array or plain object');
  }
  try {
    return JSON.stringify(value);
  } catch (err) {
    throw new TrackingInputError(`param '${key}'`, value, `not JSON-serialisable (${(err as Error).message})`);
  }
}

/** Validates a param and returns its stored string value. Params are immutable once logged. */
export function validateParam(key: string, value: unknown): string {
  validateKey('param', key);
  const text = stringifyParam(key, value);
  const length = codePointLength(text);
  if (length > MLFLOW_LIMITS.paramValueLength) {
    throw new TrackingInputError(
      `param '${key}'`,
      text,
      `value is ${length} characters, MLflow's limit is ${MLFLOW_LIMITS.paramValueLength} (log long values as an artifact instead)`,
    );
  }
  return text;
}

/** Validates a tag; values are strings of at most 8000 characters. */
export function validateTag(key: string, value: unknown): string {
  validateKey('tag', key);
  if (typeof value !== 'string') throw new TrackingInputError(`tag '${key}'`, value, 'expected a string value');
  const length = codePointLength(value);
  if (length > MLFLOW_LIMITS.tagValueLength) {
    throw new TrackingInputError(`tag '${key}'`, value, `value is ${length} characters, MLflow's limit is ${MLFLOW_LIMITS.tagValueLength}`);
  }
  return value;
}

/**
 * Validates one metric point. Values may be NaN or infinite (MLflow stores NaN as such and clamps
 * infinities to +-1.7976931348623157e308); steps are integers, timestamps non-negative integer ms.
 */
export function validateMetric(key: string, value: unknown, step: unknown, timestamp: unknown): void {
  validateKey('metric', key);
  if (typeof value !== 'number') throw new TrackingInputError(`metric '${key}' value`, value, 'expected a number');
  if (typeof step !== 'number' || !Number.isSafeInteger(step)) {
    throw new TrackingInputError(`metric '${key}' step`, step, 'expected an integer');
  }
  if (typeof timestamp !== 'number' || !Number.isSafeInteger(timestamp) || timestamp < 0) {
    throw new TrackingInputError(`metric '${key}' timestamp`, timestamp, 'expected non-negative integer milliseconds since the epoch');
  }
}

/** Validates an experiment name: non-empty, at most 500 characters. */
export function validateExperimentName(name: unknown): string {
  if (typeof name !== 'string' || name.trim() === '') {
    throw new TrackingInputError('experiment name', name, 'expected a non-empty string');
  }
  if (codePointLength(name) > MLFLOW_LIMITS.experimentNameLength) {
    throw new TrackingInputError('experiment name', name, `longer than MLflow's limit of ${MLFLOW_LIMITS.experimentNameLength} characters`);
  }
  return name;
}

/** Validates an MLflow run id (32 hex characters as the SQL store makes them, or any [\w-] id). */
export function validateRunId(runId: unknown, field = 'run id'): string {
  if (typeof runId !== 'string' || !/^[a-zA-Z0-9][\w-]{0,255}$/.test(runId)) {
    throw new TrackingInputError(field, runId, 'expected an MLflow run id such as 0d8f3c0a9b5e4f6b8a7c6d5e4f3a2b1c');
  }
  return runId;
}

/**
 * Flattens a nested config object into dotted param keys, leaving arrays whole (as JSON) and
 * skipping `undefined`.
 * @example flattenParams({ optimizer: { lr: 0.015, milestones: [120, 160] } })
 *   // { 'optimizer.lr': 0.015, 'optimizer.milestones': [120, 160] }
 */
export function flattenParams(config: Record<string, unknown>, prefix = ''): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(config)) {
    if (value === undefined) continue;
    const name = prefix ? `${prefix}.${key}` : key;
    if (value !== null && typeof value === 'object' && !Array.isArray(value) && Object.getPrototypeOf(value) === Object.prototype) {
      Object.assign(out, flattenParams(value as Record<string, unknown>, name));
    } else {
      out[name] = value;
    }
  }
  return out;
}
