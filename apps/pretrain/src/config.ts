/**
 * The pretraining configuration. `method` picks the self-supervised method (methods.ts); each method
 * reads its own section (`moco`, `byol`), the rest is shared. Every number of the CEM500K recipe
 * (DESIGN.md section 4) is a key here; `configs/pretrain/cem500k.json` reproduces the paper,
 * `quick.json` runs on 2 CPU cores in minutes, `byol-quick.json` is quick.json with BYOL.
 */
import type { Schema } from '@emseg/config';
import { listEncoders } from '@emseg/models';
import { listMethods, type MethodName } from './methods.js';

/** The pretraining configuration (named for its first method; it configures every method). */
export interface MocoConfig {
  /** The self-supervised method: `mocov2` (default) or `byol`. Tagged `emseg.method`. */
  method: MethodName;
  encoder: {
    /** A registered encoder (`listEncoders()`): resnet18, resnet34, resnet50, plain-conv, ... */
    architecture: string;
    inChannels: number;
  };
  data: {
    /** Side of the square crops fed to the network (CEM500K: 224). */
    cropSize: number;
    /** Dataset normalisation on [0,1] grey values (CEM500K: 0.573 / 0.127); carried by the bundle. */
    mean: number;
    std: number;
    /** Pixel size of the crops in nm, if known (recorded in the encoder bundle). */
    pixelSizeNm: number | null;
    /** Loader threads' worth of prefetched batches. */
    prefetch: number;
    /**
     * Crops whose header check fails when the crop manifest is built: "fail" (default) stops before
     * training, "skip" trains without them. Either way they are listed in `<out>/bad-crops.log`.
     */
    badCrops: 'fail' | 'skip';
  };
  /** The view augmentation, in @emseg/data's AugmentationSpec shape (CEM500K recipe by default). */
  augmentation: {
    rotation: { maxDegrees: number; p: number };
    resizedCrop: { scale: [number, number]; ratio: [number, number] };
    brightness: number;
    contrast: number;
    blur: { sigma: [number, number]; p: number };
    horizontalFlip: number;
    verticalFlip: number;
    noise: { variance: [number, number]; p: number };
  };
  moco: {
    /** Output dimension of the projection head (128). */
    dim: number;
    /** Hidden width of the projection MLP; null = the encoder's feature width (2048 for ResNet-50). */
    mlpHidden: number | null;
    /**
     * Queue size K (65536); must be a multiple of the batch size. "auto": the largest multiple of the
     * batch size up to a quarter of the crops, resolved at run start (queue-fit.ts).
     */
    queueSize: number | 'auto';
    /** Key-encoder momentum m (0.999). */
    momentum: number;
    /** Softmax temperature T (0.2). */
    temperature: number;
    /** Sub-batches the shuffled key batch is normalised in (single-device shuffle-BN). */
    shuffleGroups: number;
  };
  /** BYOL (Grill et al. 2020); defaults are the paper's (4096 -> 256 MLPs, tau 0.996). */
  byol: {
    /** Hidden width of the projector MLP (4096). */
    projectorHidden: number;
    /** Output dimension of the projector and the predictor (256). */
    dim: number;
    /** Hidden width of the predictor MLP (4096). */
    predictorHidden: number;
    /** Target decay rate at step 0; it rises to 1 on a cosine over the run (0.996; 0.99 for short runs). */
    tauBase: number;
  };
  optimizer: {
    lr: number;
    momentum: number;
    weightDecay: number;
    schedule: 'step' | 'cosine';
    /** Epochs at which the step schedule multiplies the rate by `gamma` (120, 160). */
    milestones: number[];
    gamma: number;
    warmupEpochs: number;
  };
  train: {
    batchSize: number;
    epochs: number;
    /** Stop after this many steps even if epochs remain (null = run all epochs). */
    maxSteps: number | null;
    checkpointEvery: number;
    logEvery: number;
    seed: number;
  };
  probe: {
    /** Fit the linear probe every N steps (needs --probe DIR); 0 = only at the end. */
    every: number;
    steps: number;
    patchSize: number;
  };
}

const num = (minimum: number, extra: object = {}) => ({ type: 'number', minimum, ...extra }) as const;
const int = (minimum: number, extra: object = {}) => ({ type: 'integer', minimum, ...extra }) as const;
const prob = { type: 'number', minimum: 0, maximum: 1 } as const;
/** A [min, max] pair within [lo, hi]. */
const range = (lo: number, hi: number) => ({ type: 'array', minItems: 2, maxItems: 2, items: [num(lo, { maximum: hi }), num(lo, { maximum: hi })] }) as const;

export const mocoSchema: Schema<MocoConfig> = {
  type: 'object',
  additionalProperties: false,
  required: ['encoder', 'data', 'augmentation', 'moco', 'optimizer', 'train', 'probe'],
  properties: {
    method: { type: 'string', enum: listMethods(), default: 'mocov2' },
    encoder: {
      type: 'object',
      additionalProperties: false,
      required: ['architecture', 'inChannels'],
      properties: {
        architecture: { type: 'string', enum: listEncoders() },
        inChannels: { type: 'integer', enum: [1] },
      },
    },
    data: {
      type: 'object',
      additionalProperties: false,
      required: ['cropSize', 'mean', 'std', 'pixelSizeNm', 'prefetch'],
      properties: {
        cropSize: int(32, { maximum: 1024, multipleOf: 32 }),
        mean: num(0, { maximum: 1 }),
        std: { type: 'number', exclusiveMinimum: 0 },
        pixelSizeNm: { type: 'number', exclusiveMinimum: 0, nullable: true },
        prefetch: int(1, { maximum: 64 }),
        badCrops: { type: 'string', enum: ['fail', 'skip'], default: 'fail' },
      },
    },
    augmentation: {
      type: 'object',
      additionalProperties: false,
      required: ['rotation', 'resizedCrop', 'brightness', 'contrast', 'blur', 'horizontalFlip', 'verticalFlip', 'noise'],
      properties: {
        rotation: { type: 'object', additionalProperties: false, required: ['maxDegrees', 'p'], properties: { maxDegrees: num(0, { maximum: 180 }), p: prob } },
        resizedCrop: {
          type: 'object',
          additionalProperties: false,
          required: ['scale', 'ratio'],
          properties: { scale: range(0, 1), ratio: range(0, 100) },
        },
        brightness: num(0, { maximum: 1 }),
        contrast: num(0, { maximum: 1 }),
        blur: { type: 'object', additionalProperties: false, required: ['sigma', 'p'], properties: { sigma: range(0, 100), p: prob } },
        horizontalFlip: prob,
        verticalFlip: prob,
        noise: { type: 'object', additionalProperties: false, required: ['variance', 'p'], properties: { variance: range(0, 1), p: prob } },
      },
    },
    moco: {
      type: 'object',
      additionalProperties: false,
      required: ['dim', 'mlpHidden', 'queueSize', 'momentum', 'temperature', 'shuffleGroups'],
      properties: {
        dim: int(1),
        mlpHidden: { type: 'integer', minimum: 1, nullable: true },
        queueSize: { if: { type: 'string' }, then: { enum: ['auto'] }, else: int(1) },
        momentum: num(0, { maximum: 1 }),
        temperature: { type: 'number', exclusiveMinimum: 0 },
        shuffleGroups: int(1),
      },
    },
    byol: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        projectorHidden: int(1, { default: 4096 }),
        dim: int(1, { default: 256 }),
        predictorHidden: int(1, { default: 4096 }),
        tauBase: num(0, { maximum: 1, default: 0.996 }),
      },
    },
    optimizer: {
      type: 'object',
      additionalProperties: false,
      required: ['lr', 'momentum', 'weightDecay', 'schedule', 'milestones', 'gamma', 'warmupEpochs'],
      properties: {
        lr: { type: 'number', exclusiveMinimum: 0 },
        momentum: num(0, { exclusiveMaximum: 1 }),
        weightDecay: num(0),
        schedule: { type: 'string', enum: ['step', 'cosine'] },
        milestones: { type: 'array', items: { type: 'number', minimum: 0 } },
        gamma: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
        warmupEpochs: num(0),
      },
    },
    train: {
      type: 'object',
      additionalProperties: false,
      required: ['batchSize', 'epochs', 'maxSteps', 'checkpointEvery', 'logEvery', 'seed'],
      properties: {
        batchSize: int(2),
        epochs: { type: 'number', exclusiveMinimum: 0 },
        maxSteps: { type: 'integer', minimum: 1, nullable: true },
        checkpointEvery: int(1),
        logEvery: int(1),
        seed: int(0),
      },
    },
    probe: {
      type: 'object',
      additionalProperties: false,
      required: ['every', 'steps', 'patchSize'],
      properties: {
        every: int(0),
        steps: int(1),
        patchSize: int(32, { multipleOf: 32 }),
      },
    },
  },
};

/** Cross-field checks JSON Schema cannot express; messages name the fields. */
export function checkMocoConfig(cfg: MocoConfig, source: string): void {
  const problems: string[] = [];
  if (cfg.method === 'mocov2' && cfg.moco.queueSize !== 'auto' && cfg.moco.queueSize % cfg.train.batchSize !== 0) {
    problems.push(`moco.queueSize (${cfg.moco.queueSize}) must be a multiple of train.batchSize (${cfg.train.batchSize})`);
  }
  if (cfg.method === 'mocov2' && cfg.train.batchSize % cfg.moco.shuffleGroups !== 0) {
    problems.push(`train.batchSize (${cfg.train.batchSize}) must split into moco.shuffleGroups (${cfg.moco.shuffleGroups}) equal sub-batches`);
  }
  const a = cfg.augmentation;
  for (const [name, [lo, hi]] of [
    ['resizedCrop.scale', a.resizedCrop.scale],
    ['resizedCrop.ratio', a.resizedCrop.ratio],
    ['blur.sigma', a.blur.sigma],
    ['noise.variance', a.noise.variance],
  ] as const) {
    if (lo > hi) problems.push(`augmentation.${name} must be [min, max] with min <= max, got [${lo}, ${hi}]`);
  }
  if (problems.length) throw new Error(`${source}: invalid configuration\n${problems.map((p) => `  - ${p}`).join('\n')}`);
}
