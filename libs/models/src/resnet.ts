import { tf, type LayersModel, type SymbolicTensor } from '@emseg/tf';
import { FEATURE_STRIDES, RESNET_DEPTHS, resnetSpec, type ResNetArchitecture, type ResNetDepth, type ResNetSpec } from './architecture.js';
import { BatchNorm } from './batch-norm.js';
import { checkEncoderOptions, LayersEncoder, type EncoderEntry, type EncoderOptions, type EncoderSpec } from './encoder.js';
import { Relu } from './relu.js';

type Initializer = ReturnType<typeof tf.initializers.zeros>;

export interface ResNetEncoderOptions extends EncoderOptions {
  depth: ResNetDepth;
}

/** The registry's view of a ResNet spec. */
function registered(spec: ResNetSpec): EncoderSpec {
  return {
    name: spec.architecture,
    family: 'resnet',
    featureStrides: FEATURE_STRIDES,
    featureChannels: spec.featureChannels,
    batchNorm: true,
    description: `torchvision ResNet-${spec.depth} (${spec.block} blocks ${spec.blocks.join('/')}), BN`,
  };
}

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
export class ResNetEncoder extends LayersEncoder {
  readonly spec: ResNetSpec;

  constructor(spec: ResNetSpec, inChannels: number, model: LayersModel) {
    super(registered(spec), inChannels, model);
    this.spec = spec;
  }

  override get architecture(): ResNetArchitecture {
    return this.spec.architecture;
  }
}

/** The ResNet family's registry entries: `resnet18`, `resnet34`, `resnet50`. */
export const RESNET_ENCODERS: readonly EncoderEntry[] = RESNET_DEPTHS.map((depth) => ({
  spec: registered(resnetSpec(depth)),
  create: (options: EncoderOptions) => resnetEncoder({ ...options, depth }),
}));

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
  const { inChannels, inputSize: size } = checkEncoderOptions(options);
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
