/**
 * The encoder seam: what the U-Net, the encoder bundle, MoCo and the apps need of an encoder,
 * whatever its family (ResNet, plain convolutions, ...). A family is one file that builds
 * `Encoder`s and lists its `EncoderEntry`s; `registry.ts` collects the families.
 */
import { tf, type LayersModel, type Tensor, type Tensor2D, type Tensor4D } from '@emseg/tf';
import { isBatchNorm, type BatchNormCallArgs } from './batch-norm.js';

/**
 * Which encoder weights train:
 * - `none`: all of them;
 * - `all`: none (BN layers then also normalise with their running statistics and keep them fixed);
 * - `all-but-bn`: only the BN layers (gamma, beta, and their running statistics). For an encoder
 *   without BN (`encoderSpec(name).batchNorm === false`) nothing trains: `all-but-bn` equals `all`.
 */
export type EncoderFreeze = 'none' | 'all' | 'all-but-bn';
export const ENCODER_FREEZE_MODES: readonly EncoderFreeze[] = ['none', 'all', 'all-but-bn'];

/**
 * An image encoder: one tfjs functional model from [b, h, w, inChannels] images to one feature map
 * per entry of `featureStrides` (finest first), map i being [b, ~h / s_i, ~w / s_i, featureChannels[i]].
 * Encoders under a U-Net have five maps at strides 2, 4, 8, 16, 32.
 */
export interface Encoder {
  /** The registry name it was built under, e.g. `resnet50`, `plain-conv`; bundles record it. */
  readonly architecture: string;
  readonly inChannels: number;
  /** Output strides of the feature maps, finest first, e.g. [2, 4, 8, 16, 32]. */
  readonly featureStrides: number[];
  /** Channels of each feature map. */
  readonly featureChannels: number[];
  /**
   * The layers model (all weights, BN statistics included, live here, named per the family's naming
   * contract): `modelVariables(encoder.model)`, `trainableVariables(encoder.model)`.
   */
  readonly model: LayersModel;
  /**
   * The feature maps of a batch [b, h, w, inChannels]. `training: true` normalises BN layers with batch
   * statistics (and updates the running ones); `bnSubBatches` as in BatchNormCallArgs; both are
   * no-ops for an encoder without BN.
   */
  features(x: Tensor4D, args?: BatchNormCallArgs): Tensor4D[];
  /** Global-average-pooled deepest features [b, featureChannels.at(-1)], the vector MoCo projects. */
  pooled(x: Tensor4D, args?: BatchNormCallArgs): Tensor2D;
  /** The current freezing mode. */
  readonly frozen: EncoderFreeze;
  /**
   * Sets which weights train (EncoderFreeze); takes effect for code that collects
   * `trainableVariables(model)` afterwards (a `model.compile`d model must be compiled again).
   */
  setFrozen(mode: EncoderFreeze): void;
  /** Releases the weights. */
  dispose(): void;
}

/** Options every family accepts (`createEncoder(name, options)`). */
export interface EncoderOptions {
  /** Channels of the input images; EM is grey, so 1 by default. */
  inChannels?: number;
  /** Fixed [height, width] of the input, or null (default) for any size. */
  inputSize?: [number, number] | null;
  /** Seed of the weight initialisation; the same seed gives the same weights. */
  seed?: number;
  /**
   * false: skip the random draw (kernels start at zero), for an encoder whose weights are assigned
   * right after (loading a bundle or a checkpoint); saves ~0.1 s per million weights. Default true.
   */
  initialize?: boolean;
}

/** What a registered encoder is, without building it. Pure data. */
export interface EncoderSpec {
  /** Registry name, also the encoders' `architecture`, e.g. `resnet18`. */
  readonly name: string;
  /** The family (one source file each), e.g. `resnet`, `plain-conv`. */
  readonly family: string;
  readonly featureStrides: readonly number[];
  readonly featureChannels: readonly number[];
  /** Whether it has BN layers; without them, freezing `all-but-bn` equals `all`. */
  readonly batchNorm: boolean;
  /** One line for listings. */
  readonly description: string;
}

/** One registry entry: a spec and how to build it. */
export interface EncoderEntry {
  readonly spec: EncoderSpec;
  create(options: EncoderOptions): Encoder;
}

/** Checks the family-independent options; returns inChannels and inputSize with their defaults. */
export function checkEncoderOptions(options: EncoderOptions): { inChannels: number; inputSize: [number, number] | null } {
  const inChannels = options.inChannels ?? 1;
  if (!Number.isInteger(inChannels) || inChannels < 1) {
    throw new Error(`inChannels must be a positive integer, got ${inChannels}`);
  }
  const size = options.inputSize ?? null;
  if (size !== null && !(size.length === 2 && size.every((n) => Number.isInteger(n) && n >= 1))) {
    throw new Error(`inputSize must be null or [height, width] with positive integers, got ${JSON.stringify(size)}`);
  }
  return { inChannels, inputSize: size };
}

/** Mean over height and width: [b, h, w, c] -> [b, c]. */
export function globalAveragePool(x: Tensor4D): Tensor2D {
  return tf.mean(x, [1, 2]) as Tensor2D;
}

/**
 * An `Encoder` over a functional layers model whose outputs are the feature maps: what every family
 * built from tfjs layers shares (input checks, pooling, freezing by layer, disposal).
 */
export abstract class LayersEncoder implements Encoder {
  private freezeMode: EncoderFreeze = 'none';

  protected constructor(
    private readonly registered: EncoderSpec,
    readonly inChannels: number,
    readonly model: LayersModel,
  ) {
    if (model.outputs.length !== registered.featureStrides.length) {
      throw new Error(`${registered.name}: the model has ${model.outputs.length} outputs but the spec lists ${registered.featureStrides.length} strides`);
    }
  }

  get architecture(): string {
    return this.registered.name;
  }

  get featureStrides(): number[] {
    return [...this.registered.featureStrides];
  }

  get featureChannels(): number[] {
    return [...this.registered.featureChannels];
  }

  features(x: Tensor4D, args: BatchNormCallArgs = {}): Tensor4D[] {
    this.checkInput(x);
    return this.model.apply(x, { ...args }) as Tensor4D[];
  }

  pooled(x: Tensor4D, args: BatchNormCallArgs = {}): Tensor2D {
    return tf.tidy(() => {
      const maps = this.features(x, args);
      return globalAveragePool(maps[maps.length - 1]);
    });
  }

  get frozen(): EncoderFreeze {
    return this.freezeMode;
  }

  /** Layer by layer: trainable under `none`, and BN layers under `all-but-bn` (none without BN). */
  setFrozen(mode: EncoderFreeze): void {
    if (!ENCODER_FREEZE_MODES.includes(mode)) {
      throw new Error(`unknown encoder freeze mode "${mode}": expected one of ${ENCODER_FREEZE_MODES.join(', ')}`);
    }
    for (const layer of this.model.layers) {
      layer.trainable = mode === 'none' || (mode === 'all-but-bn' && isBatchNorm(layer));
    }
    this.freezeMode = mode;
  }

  dispose(): void {
    this.model.dispose();
  }

  private checkInput(x: Tensor): void {
    if (x.rank !== 4 || x.shape[3] !== this.inChannels) {
      throw new Error(`${this.architecture} encoder expects input [batch, height, width, ${this.inChannels}], got [${x.shape.join(', ')}]`);
    }
  }
}
