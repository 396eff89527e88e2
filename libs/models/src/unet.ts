import { tf, type LayersModel, type SymbolicTensor, type Tensor4D } from '@emseg/tf';
import { BatchNorm, type BatchNormCallArgs } from './batch-norm.js';
import { Relu } from './relu.js';
import type { Encoder, EncoderFreeze } from './encoder.js';

export const DEFAULT_DECODER_CHANNELS = [256, 128, 64, 32, 16] as const;
/** The encoder feature strides the decoder consumes (stride 32 in, skips at 16, 8, 4, 2). */
const UNET_STRIDES = [2, 4, 8, 16, 32] as const;

export interface UNetOptions {
  /** The encoder (features at strides 2, 4, 8, 16, 32); its layers (and weights) are shared, not copied. */
  encoder: Encoder;
  /** Output channels of the five decoder blocks, deepest first. Default 256/128/64/32/16. */
  decoderChannels?: readonly number[];
  /** Output channels (logits). Default 1. */
  classes?: number;
  /** Seed of the decoder's initialisation. */
  seed?: number;
}

/**
 * U-Net as segmentation_models_pytorch builds it over an encoder (`smp.Unet`): the stride-32
 * features go through five decoder blocks; block i upsamples x2 (nearest), concatenates the
 * encoder features of the same stride (16, 8, 4, 2; none for the last block), then applies two
 * conv3x3-BN-ReLU; a conv3x3 head gives `classes` channels of logits at the input resolution.
 *
 * Shapes: [b, h, w, inChannels] -> [b, h, w, classes], h and w multiples of 32.
 * Layer names: the encoder's, plus `decoder_block{i}_{up,concat,conv1,bn1,relu1,conv2,bn2,relu2}`
 * and `segmentation_head`.
 */
export class UNet {
  readonly model: LayersModel;
  readonly encoder: Encoder;
  readonly decoderChannels: number[];
  readonly classes: number;

  constructor(encoder: Encoder, model: LayersModel, decoderChannels: number[], classes: number) {
    this.encoder = encoder;
    this.model = model;
    this.decoderChannels = decoderChannels;
    this.classes = classes;
  }

  /** Logits [b, h, w, classes] of a batch [b, h, w, inChannels]; h and w must be multiples of 32. */
  forward(x: Tensor4D, args: BatchNormCallArgs = {}): Tensor4D {
    const [, h, w, c] = x.shape;
    if (x.rank !== 4 || c !== this.encoder.inChannels || h % 32 !== 0 || w % 32 !== 0) {
      throw new Error(
        `U-Net expects input [batch, height, width, ${this.encoder.inChannels}] with height and width multiples of 32, got [${x.shape.join(', ')}]`,
      );
    }
    return this.model.apply(x, { ...args }) as Tensor4D;
  }

  /** Freezes the encoder part (see EncoderFreeze); `freezeEncoder('none')` unfreezes. */
  freezeEncoder(mode: EncoderFreeze): void {
    this.encoder.setFrozen(mode);
  }

  get encoderFrozen(): EncoderFreeze {
    return this.encoder.frozen;
  }

  /** Releases all weights, the encoder's included. */
  dispose(): void {
    this.model.dispose();
  }
}

/**
 * Builds an smp-style U-Net over `encoder` (decoder convs: He uniform, fan-in; head: Glorot uniform).
 *
 * @example
 * const net = unet({ encoder: resnetEncoder({ depth: 18, seed: 1 }), seed: 2 });
 * const logits = net.forward(tf.zeros([4, 256, 256, 1])); // [4, 256, 256, 1]
 */
export function unet(options: UNetOptions): UNet {
  const { encoder } = options;
  const decoderChannels = [...(options.decoderChannels ?? DEFAULT_DECODER_CHANNELS)];
  const classes = options.classes ?? 1;
  if (decoderChannels.length !== 5 || !decoderChannels.every((c) => Number.isInteger(c) && c > 0)) {
    throw new Error(`decoderChannels must be 5 positive integers (deepest first), got ${JSON.stringify(options.decoderChannels)}`);
  }
  if (!Number.isInteger(classes) || classes < 1) throw new Error(`classes must be a positive integer, got ${classes}`);

  if (encoder.featureStrides.join() !== UNET_STRIDES.join()) {
    throw new Error(
      `a U-Net needs encoder features at strides ${UNET_STRIDES.join(', ')}, but ${encoder.architecture} gives ${encoder.featureStrides.join(', ')}`,
    );
  }
  const input = encoder.model.inputs[0];
  const [, h, w] = input.shape;
  if ((h != null && h % 32 !== 0) || (w != null && w % 32 !== 0)) {
    throw new Error(`a U-Net needs an input size that is a multiple of 32 (or null), but the encoder's is ${h} x ${w}`);
  }
  const features = encoder.model.outputs; // strides 2, 4, 8, 16, 32
  const skips = [features[3], features[2], features[1], features[0], null];
  let seedCount = 0;
  const init = (kind: 'he' | 'glorot') => {
    // +1: tfjs treats a seed of 0 as "no seed" (Math.random).
    const seed = options.seed === undefined ? undefined : options.seed * 1000 + ++seedCount;
    return kind === 'he'
      ? tf.initializers.varianceScaling({ scale: 2, mode: 'fanIn', distribution: 'uniform', seed })
      : tf.initializers.glorotUniform({ seed });
  };
  const convBnRelu = (name: string, index: number, x: SymbolicTensor, filters: number): SymbolicTensor => {
    const conv = tf.layers.conv2d({
      name: `${name}_conv${index}`,
      filters,
      kernelSize: 3,
      padding: 'same',
      useBias: false,
      kernelInitializer: init('he'),
    });
    const bn = new BatchNorm({ name: `${name}_bn${index}` });
    const relu = new Relu({ name: `${name}_relu${index}` });
    return relu.apply(bn.apply(conv.apply(x))) as SymbolicTensor;
  };

  let x = features[4];
  decoderChannels.forEach((channels, i) => {
    const name = `decoder_block${i}`;
    x = tf.layers.upSampling2d({ size: [2, 2], interpolation: 'nearest', name: `${name}_up` }).apply(x) as SymbolicTensor;
    const skip = skips[i];
    if (skip) x = tf.layers.concatenate({ axis: -1, name: `${name}_concat` }).apply([x, skip]) as SymbolicTensor;
    x = convBnRelu(name, 1, x, channels);
    x = convBnRelu(name, 2, x, channels);
  });
  const head = tf.layers.conv2d({
    name: 'segmentation_head',
    filters: classes,
    kernelSize: 3,
    padding: 'same',
    useBias: true,
    kernelInitializer: init('glorot'),
  });
  const logits = head.apply(x) as SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: logits, name: `unet_${encoder.architecture.replace(/-/g, '_')}` });
  return new UNet(encoder, model, decoderChannels, classes);
}
