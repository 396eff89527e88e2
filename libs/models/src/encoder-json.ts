import { encoderSpec, listEncoders } from './registry.js';

/** The encoder.json format this code writes and reads. */
export const ENCODER_FORMAT_VERSION = 1;
export const ENCODER_JSON = 'encoder.json';
export const MODEL_JSON = 'model.json';
export const WEIGHTS_BIN = 'weights.bin';

/** Input normalisation the encoder was trained with: x' = (x - mean[c]) / std[c], x in [0, 1]. */
export interface Normalization {
  mean: number[];
  std: number[];
}

/** How the encoder weights came to be. */
export interface EncoderTraining {
  /** e.g. "mocov2", "random-init", "pytorch-import", "unet-finetune". */
  method: string;
  /** Digest of the training data (as logged to MLflow), or null. */
  dataDigest: string | null;
  /** Optimisation steps, or null when unknown. */
  steps: number | null;
  /** The run configuration (JSON), or null. */
  config: Record<string, unknown> | null;
  /** MLflow run that produced it, or null. */
  mlflowRunId: string | null;
}

/** The contents of encoder.json. */
export interface EncoderJson {
  formatVersion: typeof ENCODER_FORMAT_VERSION;
  /** A registered encoder name (`listEncoders()`), e.g. `resnet50`, `plain-conv`. */
  architecture: string;
  inputChannels: number;
  featureStrides: number[];
  featureChannels: number[];
  normalization: Normalization;
  /** Physical pixel size of the training images in nm, or null when unknown. */
  pixelSizeNm: number | null;
  training: EncoderTraining;
  /** Where the weights are: TensorFlow.js layers format, names per the naming contract. */
  weights: { format: 'tfjs-layers'; modelJson: typeof MODEL_JSON };
  createdAt: string;
}

/** What a caller says about an encoder when saving it; the rest comes from the encoder. */
export interface EncoderBundleMeta {
  /** A number applies to every channel. */
  normalization: { mean: number | number[]; std: number | number[] };
  pixelSizeNm?: number | null;
  training: Partial<EncoderTraining> & { method: string };
}

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Throws `<file>: field <path> ...` errors, so every message names the file and the field. */
class Checker {
  constructor(private readonly file: string) {}

  fail(field: string, expected: string, value: unknown): never {
    throw new Error(`${this.file}: field ${field} must be ${expected}, got ${JSON.stringify(value) ?? String(value)}`);
  }

  object(obj: Json, field: string): Json {
    const v = obj[field.split('.').pop()!];
    if (!isObject(v)) this.fail(field, 'an object', v);
    return v;
  }

  string(obj: Json, key: string, field = key): string {
    const v = obj[key];
    if (typeof v !== 'string' || v.length === 0) this.fail(field, 'a non-empty string', v);
    return v;
  }

  nullableString(obj: Json, key: string, field: string): string | null {
    const v = obj[key];
    if (v === null) return null;
    if (typeof v !== 'string' || v.length === 0) this.fail(field, 'a non-empty string or null', v);
    return v;
  }

  positiveInt(obj: Json, key: string, field = key): number {
    const v = obj[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) this.fail(field, 'a positive integer', v);
    return v;
  }

  numbers(obj: Json, key: string, field: string, length: number, positive: boolean): number[] {
    const v = obj[key];
    const ok = Array.isArray(v) && v.length === length && v.every((n) => typeof n === 'number' && Number.isFinite(n) && (!positive || n > 0));
    if (!ok) this.fail(field, `an array of ${length} finite${positive ? ' positive' : ''} number(s) (one per input channel)`, v);
    return v as number[];
  }
}

/** Expands a scalar normalisation to one value per channel and checks it. */
export function normalizationFor(channels: number, meta: EncoderBundleMeta['normalization'], source = 'normalization'): Normalization {
  const expand = (v: number | number[]) => (typeof v === 'number' ? new Array<number>(channels).fill(v) : [...v]);
  const candidate = { mean: expand(meta.mean), std: expand(meta.std) };
  const c: Checker = new Checker(source);
  c.numbers(candidate, 'mean', 'normalization.mean', channels, false);
  c.numbers(candidate, 'std', 'normalization.std', channels, true);
  return candidate;
}

/**
 * Checks parsed encoder.json contents and returns them typed. `file` names the file in errors.
 * Rejects other format versions, unknown architectures, and strides/channels that do not match
 * the architecture.
 */
export function parseEncoderJson(value: unknown, file: string): EncoderJson {
  const c: Checker = new Checker(file);
  if (!isObject(value)) c.fail('(root)', 'a JSON object', value);
  if (value.formatVersion !== ENCODER_FORMAT_VERSION) {
    throw new Error(
      `${file}: formatVersion ${JSON.stringify(value.formatVersion)} is not supported; this emseg reads encoder bundles of formatVersion ${ENCODER_FORMAT_VERSION}`,
    );
  }
  const architecture = c.string(value, 'architecture');
  if (!listEncoders().includes(architecture)) {
    throw new Error(`${file}: unknown architecture "${architecture}": expected one of ${listEncoders().join(', ')}`);
  }
  const spec = encoderSpec(architecture);
  const inputChannels = c.positiveInt(value, 'inputChannels');
  const strides = value.featureStrides;
  if (!Array.isArray(strides) || strides.join() !== spec.featureStrides.join()) {
    c.fail('featureStrides', `[${spec.featureStrides}] for ${architecture}`, strides);
  }
  const channels = value.featureChannels;
  if (!Array.isArray(channels) || channels.join() !== spec.featureChannels.join()) {
    c.fail('featureChannels', `[${spec.featureChannels}] for ${architecture}`, channels);
  }
  const norm = c.object(value, 'normalization');
  const normalization = {
    mean: c.numbers(norm, 'mean', 'normalization.mean', inputChannels, false),
    std: c.numbers(norm, 'std', 'normalization.std', inputChannels, true),
  };
  const pixel = value.pixelSizeNm;
  if (pixel !== null && !(typeof pixel === 'number' && Number.isFinite(pixel) && pixel > 0)) {
    c.fail('pixelSizeNm', 'a positive number or null', pixel);
  }
  const t = c.object(value, 'training');
  const steps = t.steps;
  if (steps !== null && !(typeof steps === 'number' && Number.isInteger(steps) && steps >= 0)) {
    c.fail('training.steps', 'a non-negative integer or null', steps);
  }
  if (t.config !== null && !isObject(t.config)) c.fail('training.config', 'an object or null', t.config);
  const training: EncoderTraining = {
    method: c.string(t, 'method', 'training.method'),
    dataDigest: c.nullableString(t, 'dataDigest', 'training.dataDigest'),
    steps: steps as number | null,
    config: t.config as Record<string, unknown> | null,
    mlflowRunId: c.nullableString(t, 'mlflowRunId', 'training.mlflowRunId'),
  };
  const weights = c.object(value, 'weights');
  if (weights.format !== 'tfjs-layers' || weights.modelJson !== MODEL_JSON) {
    c.fail('weights', `{"format": "tfjs-layers", "modelJson": "${MODEL_JSON}"}`, weights);
  }
  return {
    formatVersion: ENCODER_FORMAT_VERSION,
    architecture: spec.name,
    inputChannels,
    featureStrides: [...spec.featureStrides],
    featureChannels: [...spec.featureChannels],
    normalization,
    pixelSizeNm: pixel as number | null,
    training,
    weights: { format: 'tfjs-layers', modelJson: MODEL_JSON },
    createdAt: typeof value.createdAt === 'string' ? value.createdAt : '',
  };
}
