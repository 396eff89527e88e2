import { ConfigError } from './errors.js';

export type JsonObject = { [key: string]: unknown };

export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Parses `key.path=value` overrides (as given on the command line with `--set`). Values are JSON
 * when they parse as JSON (`0.1`, `true`, `[120,160]`, `"x"`), plain strings otherwise.
 *
 * @example parseOverride('optimizer.lr=0.03') // { path: ['optimizer', 'lr'], value: 0.03 }
 */
export function parseOverride(text: string): { path: string[]; value: unknown } {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new ConfigError(`override "${text}" must look like key.path=value`);
  const path = text.slice(0, eq).split('.');
  if (path.some((p) => p === '')) throw new ConfigError(`override "${text}" has an empty key segment`);
  const raw = text.slice(eq + 1);
  let value: unknown = raw;
  try {
    value = JSON.parse(raw);
  } catch {
    // not JSON: keep the string
  }
  return { path, value };
}

/** Returns a copy of `obj` with `value` set at `path`, creating intermediate objects. */
export function setPath(obj: JsonObject, path: readonly string[], value: unknown): JsonObject {
  const [head, ...rest] = path;
  if (rest.length === 0) return { ...obj, [head]: value };
  const child = obj[head];
  if (child !== undefined && !isObject(child)) {
    throw new ConfigError(`cannot set ${path.join('.')}: "${head}" is not an object`);
  }
  return { ...obj, [head]: setPath(child ?? {}, rest, value) };
}

/** Deep merge of plain objects; arrays and scalars in `over` replace those in `base`. */
export function deepMerge(base: JsonObject, over: JsonObject): JsonObject {
  const out: JsonObject = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const prev = out[key];
    out[key] = isObject(prev) && isObject(value) ? deepMerge(prev, value) : value;
  }
  return out;
}

/**
 * Flattens a config to dotted keys with string values, the shape MLflow params take.
 *
 * @example flatten({ optimizer: { lr: 0.015, milestones: [120, 160] } })
 * // { 'optimizer.lr': '0.015', 'optimizer.milestones': '[120,160]' }
 */
export function flatten(obj: JsonObject, prefix = ''): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(obj)) {
    const name = prefix ? `${prefix}.${key}` : key;
    if (isObject(value)) Object.assign(out, flatten(value, name));
    else out[name] = typeof value === 'string' ? value : JSON.stringify(value);
  }
  return out;
}

/** The flattened keys whose values differ between two configs (`from`/`to` null where absent). */
export function configChanges(before: JsonObject, after: JsonObject): Array<{ key: string; from: string | null; to: string | null }> {
  const a = flatten(before);
  const b = flatten(after);
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  return keys.filter((k) => a[k] !== b[k]).map((k) => ({ key: k, from: a[k] ?? null, to: b[k] ?? null }));
}
