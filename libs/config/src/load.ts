import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Ajv, type ErrorObject, type SchemaObject } from 'ajv';
import { ConfigError } from './errors.js';
import { deepMerge, isObject, parseOverride, setPath, type JsonObject } from './dotted.js';

/**
 * A JSON Schema describing a config of type T. (ajv's JSONSchemaType is exact but rejects common
 * patterns such as nullable numbers with bounds; validation at load time is what makes the result a T.)
 */
export type Schema<T> = SchemaObject & { readonly __config?: T };

export interface LoadOptions {
  /**
   * A JSON config file; it may name a base file with `"extends": "./other.json"` (resolved relative
   * to it). Top-level keys starting with `$` (`$comment`) are documentation and are dropped.
   */
  file?: string;
  /** Values under the file (e.g. a built-in preset). */
  base?: JsonObject;
  /** `key.path=value` overrides applied last (command-line `--set`). */
  overrides?: readonly string[];
}

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true });

/** Reads a JSON config file, following `extends` chains. */
export function readConfigFile(file: string, seen: string[] = []): JsonObject {
  const path = resolve(file);
  if (seen.includes(path)) throw new ConfigError(`${file}: "extends" cycle (${[...seen, path].join(' -> ')})`);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(data)) throw new ConfigError(`${file} must contain a JSON object, got ${Array.isArray(data) ? 'an array' : typeof data}`);
  // Keys starting with "$" ("$comment", "$schema") document a file; they are not settings.
  const { extends: parent, ...rest } = Object.fromEntries(Object.entries(data).filter(([k]) => !k.startsWith('$')));
  if (parent === undefined) return rest;
  if (typeof parent !== 'string') throw new ConfigError(`${file}: "extends" must be a relative file path`);
  return deepMerge(readConfigFile(resolve(dirname(path), parent), [...seen, path]), rest);
}

function describe(err: ErrorObject): string {
  const where = err.instancePath ? err.instancePath.slice(1).replaceAll('/', '.') : '(root)';
  switch (err.keyword) {
    case 'additionalProperties':
      return `${where === '(root)' ? '' : `${where}.`}${String(err.params.additionalProperty)} is not a known setting`;
    case 'enum':
      return `${where} must be one of ${(err.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    default:
      return `${where} ${err.message ?? 'is invalid'}`;
  }
}

/**
 * Builds a run configuration: `base` <- `file` (with `extends`) <- `overrides`, then validates it
 * against `schema` with ajv (filling schema defaults). Errors name the source and every bad field.
 *
 * @example
 * const cfg = loadConfig(mocoSchema, { file: 'configs/pretrain/quick.json', overrides: ['optimizer.lr=0.03'] });
 */
export function loadConfig<T>(schema: Schema<T>, options: LoadOptions = {}): T {
  let data: JsonObject = options.base ?? {};
  if (options.file) data = deepMerge(data, readConfigFile(options.file));
  for (const text of options.overrides ?? []) {
    const { path, value } = parseOverride(text);
    data = setPath(data, path, value);
  }
  const validate = ajv.compile(schema);
  const copy = structuredClone(data);
  if (!validate(copy)) {
    const source = options.file ?? 'config';
    const problems = (validate.errors ?? []).map((e) => `  - ${describe(e)}`).join('\n');
    throw new ConfigError(`${source}: invalid configuration\n${problems}`);
  }
  return copy as T;
}
