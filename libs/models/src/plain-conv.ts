/**
 * The plain convolutional encoder family, in the style of the ISBI 2012 networks of Fakhry et al.
 * (2016): back-to-back 3x3 convolutions (with bias) interleaved with ReLU, a 2x2 max-pool closing
 * every stage, no BatchNorm and no shortcuts.
 */
import { tf, type SymbolicTensor } from '@emseg/tf';
import { checkEncoderOptions, LayersEncoder, type EncoderEntry, type EncoderOptions, type EncoderSpec } from './encoder.js';
import { Relu } from './relu.js';

/** One registered width of the family. */
export interface PlainConvSpec {
  architecture: string;
  /** Output channels of the five stages. */
  widths: readonly [number, number, number, number, number];
  /** 3x3 convs (each followed by ReLU) per stage. */
  convsPerStage: number;
}

/** The registered variants, default first. */
export const PLAIN_CONV_SPECS: readonly PlainConvSpec[] = [
  { architecture: 'plain-conv', widths: [32, 64, 128, 256, 512], convsPerStage: 2 },
  { architecture: 'plain-conv-small', widths: [16, 32, 64, 128, 256], convsPerStage: 2 },
];

/** Output strides: each stage ends in a 2x2 max-pool, so stage s (1..5) outputs stride 2^s. */
const STRIDES = [2, 4, 8, 16, 32] as const;

function registered(spec: PlainConvSpec): EncoderSpec {
  return {
    name: spec.architecture,
    family: 'plain-conv',
    featureStrides: STRIDES,
    featureChannels: spec.widths,
    batchNorm: false,
    description: `plain conv (Fakhry et al. 2016 style): ${spec.convsPerStage} x (3x3 conv + ReLU) + max-pool per stage, widths ${spec.widths.join('-')}, no BN`,
  };
}

/**
 * A plain convolutional encoder. Stage s (1..5) runs `convsPerStage` 3x3 convs ('same' padding, bias)
 * each followed by ReLU at stride 2^(s-1), then a 2x2 max-pool; the five pooled outputs are the
 * features at strides 2, 4, 8, 16, 32 with `widths` channels, e.g. for `plain-conv` at 64 x 64:
 * [b,32,32,32], [b,16,16,64], [b,8,8,128], [b,4,4,256], [b,2,2,512] (sizes floor(h / 2^s)).
 * The full-resolution convs of stage 1 reach the U-Net through its stride-2 skip.
 *
 * Layer names: `input`, `stage{s}_conv{k}` (weights `kernel`, `bias`), `stage{s}_relu{k}`,
 * `stage{s}_pool` (the stage's output); s = 1..5, k = 1..convsPerStage. See README.md.
 *
 * No BN: `training` and `bnSubBatches` change nothing, and freezing `all-but-bn` freezes every
 * weight, as `all` does.
 */
export class PlainConvEncoder extends LayersEncoder {
  constructor(
    readonly spec: PlainConvSpec,
    inChannels: number,
    model: ReturnType<typeof tf.model>,
  ) {
    super(registered(spec), inChannels, model);
  }
}

export interface PlainConvEncoderOptions extends EncoderOptions {
  /** A registered variant (PLAIN_CONV_SPECS); default `plain-conv`. */
  architecture?: string;
}

/**
 * Builds a plain conv encoder; kernels He normal (fan-in, for ReLU without BN), biases zero.
 *
 * @example
 * const encoder = plainConvEncoder({ architecture: 'plain-conv', inChannels: 1, seed: 1 });
 * const [s2, s4, s8, s16, s32] = encoder.features(tf.zeros([2, 64, 64, 1]));
 */
export function plainConvEncoder(options: PlainConvEncoderOptions = {}): PlainConvEncoder {
  const name = options.architecture ?? PLAIN_CONV_SPECS[0].architecture;
  const spec = PLAIN_CONV_SPECS.find((s) => s.architecture === name);
  if (!spec) throw new Error(`unknown plain conv encoder "${name}": expected one of ${PLAIN_CONV_SPECS.map((s) => s.architecture).join(', ')}`);
  const { inChannels, inputSize } = checkEncoderOptions(options);
  const initialize = options.initialize ?? true;
  let convCount = 0;
  const kernelInitializer = () => {
    if (!initialize) return tf.initializers.zeros();
    // +1: tfjs treats a seed of 0 as "no seed" (Math.random), which would make seed 0 non-deterministic.
    const seed = options.seed === undefined ? undefined : options.seed * 1000 + ++convCount;
    return tf.initializers.heNormal({ seed });
  };

  const input = tf.input({ shape: [inputSize?.[0] ?? null, inputSize?.[1] ?? null, inChannels], name: 'input' });
  let x: SymbolicTensor = input;
  const features: SymbolicTensor[] = [];
  spec.widths.forEach((filters, stage) => {
    const s = stage + 1;
    for (let k = 1; k <= spec.convsPerStage; k++) {
      const conv = tf.layers.conv2d({
        name: `stage${s}_conv${k}`,
        filters,
        kernelSize: 3,
        padding: 'same',
        useBias: true,
        kernelInitializer: kernelInitializer(),
      });
      x = new Relu({ name: `stage${s}_relu${k}` }).apply(conv.apply(x)) as SymbolicTensor;
    }
    x = tf.layers.maxPooling2d({ poolSize: 2, strides: 2, padding: 'valid', name: `stage${s}_pool` }).apply(x) as SymbolicTensor;
    features.push(x);
  });
  const model = tf.model({ inputs: input, outputs: features, name: `${name.replace(/-/g, '_')}_encoder` });
  return new PlainConvEncoder(spec, inChannels, model);
}

/** The family's registry entries: one per PLAIN_CONV_SPECS variant. */
export const PLAIN_CONV_ENCODERS: readonly EncoderEntry[] = PLAIN_CONV_SPECS.map((spec) => ({
  spec: registered(spec),
  create: (options: EncoderOptions) => plainConvEncoder({ ...options, architecture: spec.architecture }),
}));
