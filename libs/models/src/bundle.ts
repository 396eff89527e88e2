import { existsSync, statSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { tf, type NamedTensorMap } from '@emseg/tf';
import { publishDirectory } from '@emseg/fs';
import {
  ENCODER_FORMAT_VERSION,
  ENCODER_JSON,
  MODEL_JSON,
  WEIGHTS_BIN,
  normalizationFor,
  parseEncoderJson,
  type EncoderBundleMeta,
  type EncoderJson,
} from './encoder-json.js';
import type { Encoder } from './encoder.js';
import { createEncoder } from './registry.js';
import { assignWeights } from './variables.js';

type ModelArtifacts = Parameters<Parameters<typeof tf.io.withSaveHandler>[0]>[0];
type WeightsManifestEntry = NonNullable<ModelArtifacts['weightSpecs']>[number];

export interface SaveEncoderOptions {
  /** Replace an existing bundle directory (atomically). Default false: an existing one is an error. */
  overwrite?: boolean;
}

/**
 * Saves `encoder` as an encoder bundle, the reusable artifact:
 * ```
 * dir/encoder.json   what it is and how it was trained (EncoderJson)
 * dir/model.json     TensorFlow.js layers format: topology + weights manifest
 * dir/weights.bin    all weights, BN running statistics included
 * ```
 * The directory appears atomically (written as a temporary sibling, then renamed).
 *
 * @example
 * await saveEncoderBundle('out/encoder', encoder, {
 *   normalization: { mean: 0.573, std: 0.127 },
 *   training: { method: 'mocov2', steps: 1000, mlflowRunId: run.id },
 * });
 */
export async function saveEncoderBundle(dir: string, encoder: Encoder, meta: EncoderBundleMeta, options: SaveEncoderOptions = {}): Promise<EncoderJson> {
  const encoderJson: EncoderJson = {
    formatVersion: ENCODER_FORMAT_VERSION,
    architecture: encoder.architecture,
    inputChannels: encoder.inChannels,
    featureStrides: encoder.featureStrides,
    featureChannels: encoder.featureChannels,
    normalization: normalizationFor(encoder.inChannels, meta.normalization, 'saveEncoderBundle meta'),
    pixelSizeNm: meta.pixelSizeNm ?? null,
    training: {
      method: meta.training.method,
      dataDigest: meta.training.dataDigest ?? null,
      steps: meta.training.steps ?? null,
      config: meta.training.config ?? null,
      mlflowRunId: meta.training.mlflowRunId ?? null,
    },
    weights: { format: 'tfjs-layers', modelJson: MODEL_JSON },
    createdAt: new Date().toISOString(),
  };
  parseEncoderJson(encoderJson, 'saveEncoderBundle meta'); // same checks as loading

  let artifacts: ModelArtifacts | undefined;
  await encoder.model.save(
    tf.io.withSaveHandler(async (a) => {
      artifacts = a;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  if (!artifacts?.weightData || !artifacts.weightSpecs) throw new Error('saveEncoderBundle: the model produced no weights');
  const weights = new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts.weightData));
  const modelJson = {
    format: 'layers-model',
    generatedBy: `TensorFlow.js tfjs-layers v${tf.version_layers}`,
    convertedBy: null,
    modelTopology: artifacts.modelTopology,
    weightsManifest: [{ paths: [WEIGHTS_BIN], weights: artifacts.weightSpecs }],
  };
  const target = resolve(dir);
  if (existsSync(target) && !options.overwrite) throw new Error(`${target} already exists; remove it or save with { overwrite: true }`);
  if (existsSync(target) && !statSync(target).isDirectory()) throw new Error(`${target} exists and is not a directory`);
  await publishDirectory(
    target,
    async (tmp) => {
      await writeFile(join(tmp, WEIGHTS_BIN), weights);
      await writeFile(join(tmp, MODEL_JSON), JSON.stringify(modelJson));
      await writeFile(join(tmp, ENCODER_JSON), `${JSON.stringify(encoderJson, null, 2)}\n`);
    },
    { replace: true },
  );
  return encoderJson;
}

export interface LoadEncoderOptions {
  /**
   * Turns a `runs:/<run_id>/<path>` URI into a local directory (downloading it), e.g. the MLflow
   * client's artifact download. Without it, such a reference is an error.
   */
  resolveUri?: (uri: string) => Promise<string>;
  /** Channels the caller's images have; a bundle with other inputChannels is an error. */
  inChannels?: number;
  /** Fixed input size for the rebuilt encoder, or null (default) for any size. */
  inputSize?: [number, number] | null;
}

export interface LoadedEncoder {
  encoder: Encoder;
  meta: EncoderJson;
  /** The local bundle directory. */
  dir: string;
}

/**
 * `ref` -> local directory: itself, or a URI (`runs:/<run_id>/<path>`) that `resolveUri` turns into
 * one. The URI's syntax is the resolver's to check (the MLflow client's `parseRunsUri`), so there is
 * one `runs:/` parser.
 */
async function resolveBundleDir(ref: string, options: LoadEncoderOptions): Promise<string> {
  if (!/^[a-z][a-z0-9+.-]*:\//i.test(ref)) return ref;
  if (!options.resolveUri) {
    throw new Error(
      `encoder reference "${ref}" is ${ref.startsWith('runs:') ? 'an MLflow runs:/ URI' : 'a URI'}, but no resolver was given: pass loadEncoder(ref, { resolveUri }) with a function that downloads the artifact directory (the MLflow client), or download it and pass the directory`,
    );
  }
  return options.resolveUri(ref);
}

/** Reads and validates `<dir>/encoder.json`. */
export async function readEncoderJson(dir: string): Promise<EncoderJson> {
  const file = join(dir, ENCODER_JSON);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`encoder bundle ${dir} does not exist or is not a directory`);
  if (!existsSync(file)) throw new Error(`${dir} is not an encoder bundle: ${ENCODER_JSON} is missing`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message})`);
  }
  return parseEncoderJson(parsed, file);
}

/** Reads model.json and its weight files; returns the decoded tensors (caller disposes). */
async function readLayersWeights(dir: string): Promise<NamedTensorMap> {
  const file = join(dir, MODEL_JSON);
  if (!existsSync(file)) throw new Error(`encoder bundle ${dir}: weights file ${MODEL_JSON} is missing`);
  let manifest: Array<{ paths: string[]; weights: WeightsManifestEntry[] }>;
  try {
    const json = JSON.parse(await readFile(file, 'utf8')) as { weightsManifest?: unknown };
    if (!Array.isArray(json.weightsManifest)) throw new Error('no weightsManifest array');
    manifest = json.weightsManifest as typeof manifest;
  } catch (err) {
    throw new Error(`${file}: not a TensorFlow.js layers model.json (${(err as Error).message})`);
  }
  const buffers: Uint8Array[] = [];
  const specs: WeightsManifestEntry[] = [];
  for (const group of manifest) {
    for (const path of group.paths) {
      const weightsFile = join(dir, path);
      if (!existsSync(weightsFile)) throw new Error(`encoder bundle ${dir}: weights file ${path} (listed in ${MODEL_JSON}) is missing`);
      buffers.push(await readFile(weightsFile));
    }
    specs.push(...group.weights);
  }
  const expected = specs.reduce((sum, s) => sum + s.shape.reduce((a, b) => a * b, 1) * 4, 0);
  const actual = buffers.reduce((sum, b) => sum + b.byteLength, 0);
  if (specs.some((s) => s.dtype !== 'float32' || s.quantization)) {
    throw new Error(`encoder bundle ${dir}: only unquantised float32 weights are supported`);
  }
  if (actual !== expected) {
    throw new Error(
      `encoder bundle ${dir}: weight files hold ${actual} bytes but ${MODEL_JSON} describes ${expected} (truncated or mismatched ${WEIGHTS_BIN}?)`,
    );
  }
  const data = new Uint8Array(actual);
  let offset = 0;
  for (const b of buffers) {
    data.set(b, offset);
    offset += b.byteLength;
  }
  return tf.io.decodeWeights(data.buffer, specs);
}

/**
 * Loads an encoder bundle into a fresh encoder of its architecture (`createEncoder(meta.architecture)`)
 * by weight name, so it can be used alone
 * (MoCo, probing) or under a U-Net (`unet({ encoder })`).
 * `ref` is a bundle directory or an MLflow `runs:/<run_id>/<path>` URI (needs `resolveUri`).
 *
 * @example
 * const { encoder, meta } = await loadEncoder('runs:/4f2.../encoder', { resolveUri: mlflow.download, inChannels: 1 });
 */
export async function loadEncoder(ref: string, options: LoadEncoderOptions = {}): Promise<LoadedEncoder> {
  const dir = resolve(await resolveBundleDir(ref, options));
  const meta = await readEncoderJson(dir);
  if (options.inChannels !== undefined && options.inChannels !== meta.inputChannels) {
    throw new Error(`encoder bundle ${dir} takes ${meta.inputChannels}-channel input, but the images have ${options.inChannels} channel(s)`);
  }
  const weights = await readLayersWeights(dir);
  const encoder = createEncoder(meta.architecture, { inChannels: meta.inputChannels, inputSize: options.inputSize ?? null, initialize: false });
  try {
    assignWeights(encoder.model, weights, `encoder bundle ${dir} (${meta.architecture})`);
  } catch (err) {
    encoder.dispose();
    throw err;
  } finally {
    tf.dispose(weights);
  }
  return { encoder, meta, dir };
}
