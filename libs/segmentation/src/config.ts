/**
 * The configuration of a segmentation fine-tuning that does not depend on the task: model, patches,
 * loss, optimizer, train, validation and inference sections, their JSON Schema sections and the
 * cross-field checks. A task adds its own sections (U-RISC: `data`) and composes the schema with
 * {@link segmentationSchemaSections}.
 */
import type { BlendWindow } from '@emseg/data';
import { listEncoders, type EncoderFreeze } from '@emseg/models';

export interface SegmentationConfig {
  model: {
    /**
     * Encoder for random init, a registered name (`listEncoders()`: resnet18, ..., plain-conv); a bundle
     * brings its own (and wins, with a note).
     */
    architecture: string;
    /**
     * Where the encoder comes from: 'random', 'latest-pretrain' (the newest quick pretraining, else
     * random with a note), a bundle directory or `runs:/<run_id>/<path>`; null = must be given
     * with --encoder. The command line's --encoder overrides it.
     */
    encoder: string | null;
    /** Decoder block widths, deepest first (smp: 256/128/64/32/16). */
    decoderChannels: [number, number, number, number, number];
    /** Encoder freezing at the start: none, all, or all-but-bn. */
    freezeEncoder: EncoderFreeze;
    /** Unfreeze the whole encoder after this many steps (null = never). */
    unfreezeAfter: number | null;
    /** Input normalisation of a randomly initialised encoder ([0,1] grey); bundles carry their own. */
    normalization: { mean: number; std: number };
    seed: number;
  };
  patches: {
    /** Patch edge (paper: 1024), a multiple of 32. */
    size: number;
    /** 'grid': the cross-crop grid at `stride`, every patch once per epoch; 'random': random positions. */
    sampling: 'grid' | 'random';
    /** Grid stride (paper: 512, 50% overlap). */
    stride: number;
    /** Random sampling: probability that a patch is forced to contain membrane. */
    foregroundProbability: number;
    /** Random sampling: patches per epoch (null = as many as the grid has). */
    perEpoch: number | null;
    /** 'urisc': flips, 90-degree turns, rotation, zoom, translation, contrast/brightness/gamma. */
    augmentation: 'urisc' | 'none';
  };
  loss: {
    /** Binary: focal-dice (paper) or bce; multi-class (a task with classes): ce-dice (softmax cross-entropy + lambda * Dice). */
    kind: 'focal-dice' | 'bce' | 'ce-dice';
    /** Focal exponent (paper: 2). */
    gamma: number;
    /** Foreground weight of the focal term (competition winner: 0.25), or null. */
    alpha: number | null;
    /** Weight of the Dice term (paper: 1). */
    lambda: number;
  };
  optimizer: {
    /** 'adam' (paper), or 'adamw' (decoupled weight decay, as CEM500K's transfer runs). */
    kind: 'adam' | 'adamw';
    /** Learning rate; the peak rate for one-cycle. */
    lr: number;
    weightDecay: number;
    schedule: 'constant' | 'cosine' | 'one-cycle';
    warmupSteps: number;
  };
  train: {
    batchSize: number;
    steps: number;
    checkpointEvery: number;
    logEvery: number;
    seed: number;
  };
  validation: {
    /** Evaluate on the validation images every N steps (0 = only at the end). */
    every: number;
    /** PNG overlays (image, truth, prediction, errors) of this many validation images per evaluation. */
    overlays: number;
    /** Edge of the overlay crop in pixels. */
    overlaySize: number;
    /**
     * Decision thresholds validation chooses from by the task's score (besides inference.threshold):
     * the best is saved in the model, and predict / test scoring use it. [] keeps inference.threshold.
     */
    thresholds: number[];
  };
  inference: {
    /** Tile edge (network input), a multiple of 32. */
    tileSize: number;
    /** Pixels shared by neighbouring tiles (paper's winner: 512 of 1024). */
    overlap: number;
    window: BlendWindow;
    /** Tiles per forward pass. */
    batchSize: number;
    /** Average over the four flips (identity, horizontal, vertical, both). */
    flipTta: boolean;
    /** Membrane where the probability is >= threshold (the binary submission). */
    threshold: number;
  };
}

/** validation.thresholds by default: 0.1, 0.2, ..., 0.9. */
export const DEFAULT_VALIDATION_THRESHOLDS: readonly number[] = Array.from({ length: 9 }, (_, k) => (k + 1) / 10);

const num = (minimum: number, extra: object = {}) => ({ type: 'number', minimum, ...extra }) as const;
const int = (minimum: number, extra: object = {}) => ({ type: 'integer', minimum, ...extra }) as const;
const prob = { type: 'number', minimum: 0, maximum: 1 } as const;
const positive = { type: 'number', exclusiveMinimum: 0 } as const;
const section = (required: string[], properties: Record<string, unknown>) => ({ type: 'object', additionalProperties: false, required, properties }) as const;

/** Small JSON Schema builders, for a task's own sections. */
export const schemaParts = { num, int, prob, positive, section };

/** The JSON Schema `properties` of every {@link SegmentationConfig} section. */
export const segmentationSchemaSections = {
  model: section(['architecture', 'encoder', 'decoderChannels', 'freezeEncoder', 'unfreezeAfter', 'normalization', 'seed'], {
    architecture: { type: 'string', enum: listEncoders() },
    encoder: { type: 'string', minLength: 1, nullable: true },
    decoderChannels: { type: 'array', minItems: 5, maxItems: 5, items: int(1) },
    freezeEncoder: { type: 'string', enum: ['none', 'all', 'all-but-bn'] },
    unfreezeAfter: { type: 'integer', minimum: 0, nullable: true },
    normalization: section(['mean', 'std'], { mean: prob, std: positive }),
    seed: int(0),
  }),
  patches: section(['size', 'sampling', 'stride', 'foregroundProbability', 'perEpoch', 'augmentation'], {
    size: int(32, { multipleOf: 32 }),
    sampling: { type: 'string', enum: ['grid', 'random'] },
    stride: int(1),
    foregroundProbability: prob,
    perEpoch: { type: 'integer', minimum: 1, nullable: true },
    augmentation: { type: 'string', enum: ['urisc', 'none'] },
  }),
  loss: section(['kind', 'gamma', 'alpha', 'lambda'], {
    kind: { type: 'string', enum: ['focal-dice', 'bce', 'ce-dice'] },
    gamma: num(0),
    alpha: { type: 'number', minimum: 0, maximum: 1, nullable: true },
    lambda: num(0),
  }),
  optimizer: section(['kind', 'lr', 'weightDecay', 'schedule', 'warmupSteps'], {
    kind: { type: 'string', enum: ['adam', 'adamw'] },
    lr: positive,
    weightDecay: num(0),
    schedule: { type: 'string', enum: ['constant', 'cosine', 'one-cycle'] },
    warmupSteps: int(0),
  }),
  train: section(['batchSize', 'steps', 'checkpointEvery', 'logEvery', 'seed'], {
    batchSize: int(1),
    steps: int(1),
    checkpointEvery: int(1),
    logEvery: int(1),
    seed: int(0),
  }),
  validation: section(['every', 'overlays', 'overlaySize', 'thresholds'], {
    every: int(0),
    overlays: int(0),
    overlaySize: int(16),
    thresholds: { type: 'array', items: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1 }, default: DEFAULT_VALIDATION_THRESHOLDS },
  }),
  inference: section(['tileSize', 'overlap', 'window', 'batchSize', 'flipTta', 'threshold'], {
    tileSize: int(32, { multipleOf: 32 }),
    overlap: int(0),
    window: { type: 'string', enum: ['gaussian', 'linear', 'uniform'] },
    batchSize: int(1),
    flipTta: { type: 'boolean' },
    threshold: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1 },
  }),
};

/** Cross-field problems of the generic sections JSON Schema cannot express; messages name the fields. */
export function segmentationConfigProblems(cfg: SegmentationConfig): string[] {
  const problems: string[] = [];
  if (cfg.patches.stride > cfg.patches.size) {
    problems.push(`patches.stride (${cfg.patches.stride}) must not exceed patches.size (${cfg.patches.size}), or the grid leaves gaps`);
  }
  if (cfg.inference.overlap >= cfg.inference.tileSize) {
    problems.push(`inference.overlap (${cfg.inference.overlap}) must be smaller than inference.tileSize (${cfg.inference.tileSize})`);
  }
  if (cfg.optimizer.kind === 'adam' && cfg.optimizer.weightDecay > 0) {
    problems.push(`optimizer.weightDecay (${cfg.optimizer.weightDecay}) needs optimizer.kind "adamw" (decoupled decay); Adam here has none`);
  }
  if (cfg.optimizer.warmupSteps >= cfg.train.steps && cfg.optimizer.warmupSteps > 0) {
    problems.push(`optimizer.warmupSteps (${cfg.optimizer.warmupSteps}) must be below train.steps (${cfg.train.steps})`);
  }
  if (cfg.model.unfreezeAfter !== null && cfg.model.freezeEncoder === 'none') {
    problems.push(`model.unfreezeAfter (${cfg.model.unfreezeAfter}) needs a frozen encoder (model.freezeEncoder "all" or "all-but-bn")`);
  }
  if (cfg.validation.overlaySize > cfg.inference.tileSize * 8) {
    problems.push(`validation.overlaySize (${cfg.validation.overlaySize}) is unreasonably large; keep it at most a few tiles`);
  }
  return problems;
}
