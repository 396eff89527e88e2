import { tf, type LayersModel, type SymbolicTensor, type Tensor, type Tensor2D, type Tensor4D } from '@emseg/tf';
import { FEATURE_STRIDES, resnetSpec, type ResNetArchitecture, type ResNetDepth, type ResNetSpec } from './architecture.js';
import { BatchNorm, isBatchNorm, type BatchNormCallArgs } from './batch-norm.js';
import { Relu } from './relu.js';

type Initializer = ReturnType<typeof tf.initializers.zeros>;

export interface ResNetEncoderOptions {
  depth: ResNetDepth;
  /** Channels of the input images; EM is grey, so 1 by default. */
  inChannels?: number;
  /** Fixed [height, width] of the input, or null (default) for any size. */
  inputSize?: [number, number] | null;
  /** Seed of the weight initialisation; the same seed gives the same weights. */
  seed?: number;
  /**
   * false: skip the random draw (conv kernels start at zero), for an encoder whose weights are
   * assigned right after (loading a bundle or a PyTorch state_dict); saves ~0.1 s per million
   * weights. Default true.
   */
  initialize?: boolean;
}

/**
 * Which encoder weights train:
 * - `none`: all of them;
 * - `all`: none (BN layers then also normalise with their running statistics and keep them fixed);
 * - `all-but-bn`: only the BN layers (gamma, beta, and their running statistics).
 */
export type EncoderFreeze = 'none' | 'all' | 'all-but-bn';
export const ENCODER_FREEZE_MODES: readonly EncoderFreeze[] = ['none', 'all', 'all-but-bn'];

/**
 * A torchvision-layout ResNet without its classifier, as a tfjs functional model.
 *
 * `model` maps [b, h, w, inChannels] images to the five feature maps at strides
 * 2, 4, 8, 16, 32 (stem relu, layer1..layer4) with `featureChannels` channels, e.g. for ResNet-18
 * at 64 x 64: [b,32,32,64], [b,16,16,64], [b,8,8,128], [b,4,4,256], [b,2,2,512]. Spatial sizes
 * follow torch for any input size: conv1 and maxpool give floor((h - 1) / 2) + 1 each, every
 * later stride-2 stage the same.
 *
 * Layer names map 1:1 to torchvision state_dict modules by replacing `.` with `_`
 * (`layer1.0.conv1` -> `layer1_0_conv1`); see README.md "Naming contract".
 */
export class ResNetEncoder {
  readonly spec: ResNetSpec;
  readonly inChannels: number;
  readonly model: LayersModel;
  private freezeMode: EncoderFreeze = 'none';

  constructor(spec: ResNetSpec, inChannels: number, model: LayersModel) {
    this.spec = spec;
    this.inChannels = inChannels;
    this.model = model;
  }

  get architecture(): ResNetArchitecture {
    return this.spec.architecture;
  }

  get featureStrides(): number[] {
    return [...FEATURE_STRIDES];
  }

  get featureChannels(): number[] {
    return [...this.spec.featureChannels];
  }

  /**
   * The five feature maps of a batch [b, h, w, inChannels], strides 2..32.
   * `training: true` normalises with batch statistics (and updates the running ones).
   */
  features(x: Tensor4D, args: BatchNormCallArgs = {}): Tensor4D[] {
    this.checkInput(x);
    return this.model.apply(x, { ...args }) as Tensor4D[];
  }

  /** Global-average-pooled stride-32 features [b, featureChannels[4]], the vector MoCo projects. */
  pooled(x: Tensor4D, args: BatchNormCallArgs = {}): Tensor2D {
    return tf.tidy(() => {
      const maps = this.features(x, args);
      return globalAveragePool(maps[maps.length - 1]);
    });
  }

  /** The current freezing mode (see EncoderFreeze). */
  get frozen(): EncoderFreeze {
    return this.freezeMode;
  }

  /**
   * Sets which encoder weights train. Takes effect on the next step for code that collects
   * `model.trainableWeights` (or `trainableVariables`) per step; a `model.compile`d model must be
   * compiled again. `setFrozen('none')` unfreezes.
   */
  setFrozen(mode: EncoderFreeze): void {
    if (!ENCODER_FREEZE_MODES.includes(mode)) {
      throw new Error(`unknown encoder freeze mode "${mode}": expected one of ${ENCODER_FREEZE_MODES.join(', ')}`);
    }
    for (const layer of this.model.layers) {
      layer.trainable = mode === 'none' || (mode === 'all-but-bn' && isBatchNorm(layer));
    }
    this.freezeMode = mode;
  }

  /** Releases the weights. */
  dispose(): void {
    this.model.dispose();
  }

  private checkInput(x: Tensor): void {
    if (x.rank !== 4 || x.shape[3] !== this.inChannels) {
      throw new Error(
        `${this.architecture} encoder expects input [batch, height, width, ${this.inChannels}], got [${x.shape.join(', ')}]`,
      );
    }
  }
}

/** Mean over height and width: [b, h, w, c] -> [b, c]. */
export function globalAveragePool(x: Tensor4D): Tensor2D {
  return tf.mean(x, [1, 2]) as Tensor2D;
}

/**
 * Builds a ResNet-18/34/50 encoder with torchvision's structure and initialisation
 * (conv: He normal, fan-out; BN: gamma 1, beta 0; eps 1e-5, torch momentum 0.1).
 *
 * @example
 * const encoder = resnetEncoder({ depth: 18, inChannels: 1, seed: 1 });
 * const [s2, s4, s8, s16, s32] = encoder.features(tf.zeros([2, 64, 64, 1]));
 */
export function resnetEncoder(options: ResNetEncoderOptions): ResNetEncoder {
  const spec = resnetSpec(options.depth);
  const inChannels = options.inChannels ?? 1;
  if (!Number.isInteger(inChannels) || inChannels < 1) {
    throw new Error(`inChannels must be a positive integer, got ${inChannels}`);
  }
  const size = options.inputSize ?? null;
  if (size !== null && !(size.length === 2 && size.every((n) => Number.isInteger(n) && n >= 1))) {
    throw new Error(`inputSize must be null or [height, width] with positive integers, got ${JSON.stringify(size)}`);
  }
  const b = new Builder(options.seed, options.initialize ?? true);
  const input = tf.input({ shape: [size?.[0] ?? null, size?.[1] ?? null, inChannels], name: 'input' });

  let x = b.relu('relu', b.bn('bn1', b.conv('conv1', input, 64, 7, 2)));
  const features: SymbolicTensor[] = [x];
  x = tf.layers.zeroPadding2d({ padding: 1, name: 'maxpool_pad' }).apply(x) as SymbolicTensor;
  x = tf.layers.maxPooling2d({ poolSize: 3, strides: 2, padding: 'valid', name: 'maxpool' }).apply(x) as SymbolicTensor;

  let inPlanes = 64;
  spec.blocks.forEach((count, stage) => {
    const planes = 64 * 2 ** stage;
    for (let i = 0; i < count; i++) {
      const name = `layer${stage + 1}_${i}`;
      const stride = stage > 0 && i === 0 ? 2 : 1;
      x = spec.block === 'basic' ? b.basicBlock(name, x, inPlanes, planes, stride) : b.bottleneck(name, x, inPlanes, planes, stride);
      inPlanes = spec.block === 'basic' ? planes : planes * 4;
    }
    features.push(x);
  });
  const model = tf.model({ inputs: input, outputs: features, name: `${spec.architecture}_encoder` });
  return new ResNetEncoder(spec, inChannels, model);
}

/** Creates the named layers of one encoder; each conv gets its own seed derived from the base seed. */
class Builder {
  private convCount = 0;
  constructor(
    private readonly seed: number | undefined,
    private readonly initialize: boolean,
  ) {}

  private kernelInit(): Initializer {
    if (!this.initialize) return tf.initializers.zeros();
    // +1: tfjs treats a seed of 0 as "no seed" (Math.random), which would make seed 0 non-deterministic.
    const seed = this.seed === undefined ? undefined : this.seed * 1000 + ++this.convCount;
    return tf.initializers.varianceScaling({ scale: 2, mode: 'fanOut', distribution: 'normal', seed });
  }

  /**
   * Conv without bias, padded like torch (`padding = kernel // 2` on both sides). Strided convs get
   * an explicit `<name>_pad` layer, because TF's 'same' padding of an even input is asymmetric.
   */
  conv(name: string, x: SymbolicTensor, filters: number, kernel: number, stride: number): SymbolicTensor {
    const pad = Math.floor(kernel / 2);
    let input = x;
    let padding: 'same' | 'valid' = 'same';
    if (stride > 1 && pad > 0) {
      input = tf.layers.zeroPadding2d({ padding: pad, name: `${name}_pad` }).apply(x) as SymbolicTensor;
      padding = 'valid';
    }
    const layer = tf.layers.conv2d({
      name,
      filters,
      kernelSize: kernel,
      strides: stride,
      padding,
      useBias: false,
      kernelInitializer: this.kernelInit(),
    });
    return layer.apply(input) as SymbolicTensor;
  }

  bn(name: string, x: SymbolicTensor): SymbolicTensor {
    return new BatchNorm({ name }).apply(x) as SymbolicTensor;
  }

  relu(name: string, x: SymbolicTensor): SymbolicTensor {
    return new Relu({ name }).apply(x) as SymbolicTensor;
  }

  /** torchvision `downsample`: 1x1 conv with the block's stride + BN, when the shape changes. */
  private shortcut(name: string, x: SymbolicTensor, inPlanes: number, outPlanes: number, stride: number): SymbolicTensor {
    if (stride === 1 && inPlanes === outPlanes) return x;
    return this.bn(`${name}_downsample_1`, this.conv(`${name}_downsample_0`, x, outPlanes, 1, stride));
  }

  private join(name: string, residual: SymbolicTensor, identity: SymbolicTensor): SymbolicTensor {
    const sum = tf.layers.add({ name: `${name}_add` }).apply([residual, identity]) as SymbolicTensor;
    return this.relu(`${name}_out`, sum);
  }

  /** BasicBlock: conv3x3(stride)-BN-ReLU, conv3x3-BN, + shortcut, ReLU. */
  basicBlock(name: string, x: SymbolicTensor, inPlanes: number, planes: number, stride: number): SymbolicTensor {
    let y = this.relu(`${name}_relu1`, this.bn(`${name}_bn1`, this.conv(`${name}_conv1`, x, planes, 3, stride)));
    y = this.bn(`${name}_bn2`, this.conv(`${name}_conv2`, y, planes, 3, 1));
    return this.join(name, y, this.shortcut(name, x, inPlanes, planes, stride));
  }

  /** Bottleneck v1.5: conv1x1-BN-ReLU, conv3x3(stride)-BN-ReLU, conv1x1(x4)-BN, + shortcut, ReLU. */
  bottleneck(name: string, x: SymbolicTensor, inPlanes: number, planes: number, stride: number): SymbolicTensor {
    let y = this.relu(`${name}_relu1`, this.bn(`${name}_bn1`, this.conv(`${name}_conv1`, x, planes, 1, 1)));
    y = this.relu(`${name}_relu2`, this.bn(`${name}_bn2`, this.conv(`${name}_conv2`, y, planes, 3, stride)));
    y = this.bn(`${name}_bn3`, this.conv(`${name}_conv3`, y, planes * 4, 1, 1));
    return this.join(name, y, this.shortcut(name, x, inPlanes, planes * 4, stride));
  }
}
