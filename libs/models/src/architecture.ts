/**
 * The ResNet family as torchvision defines it (`torchvision.models.resnet`), reduced to the facts
 * the encoder and the bundle need. Pure data, no TensorFlow.
 */

export const RESNET_DEPTHS = [18, 34, 50] as const;
export type ResNetDepth = (typeof RESNET_DEPTHS)[number];
export type ResNetArchitecture = `resnet${ResNetDepth}`;
export const RESNET_ARCHITECTURES: readonly ResNetArchitecture[] = RESNET_DEPTHS.map((d) => `resnet${d}` as const);

/** Output strides of the five feature maps: stem, layer1, layer2, layer3, layer4. */
export const FEATURE_STRIDES = [2, 4, 8, 16, 32] as const;

export interface ResNetSpec {
  depth: ResNetDepth;
  architecture: ResNetArchitecture;
  /** BasicBlock (two 3x3 convs) or Bottleneck (1x1, 3x3 with the stride (v1.5), 1x1 x4). */
  block: 'basic' | 'bottleneck';
  /** Residual blocks in layer1..layer4. */
  blocks: readonly [number, number, number, number];
  /** Channels of the five feature maps at FEATURE_STRIDES. */
  featureChannels: readonly [number, number, number, number, number];
}

const SPECS: Record<ResNetDepth, ResNetSpec> = {
  18: { depth: 18, architecture: 'resnet18', block: 'basic', blocks: [2, 2, 2, 2], featureChannels: [64, 64, 128, 256, 512] },
  34: { depth: 34, architecture: 'resnet34', block: 'basic', blocks: [3, 4, 6, 3], featureChannels: [64, 64, 128, 256, 512] },
  50: { depth: 50, architecture: 'resnet50', block: 'bottleneck', blocks: [3, 4, 6, 3], featureChannels: [64, 256, 512, 1024, 2048] },
};

/** The spec of a supported depth; throws naming the supported ones otherwise. */
export function resnetSpec(depth: number): ResNetSpec {
  const spec = SPECS[depth as ResNetDepth];
  if (!spec) throw new Error(`unsupported ResNet depth ${depth}: expected one of ${RESNET_DEPTHS.join(', ')}`);
  return spec;
}

/** `"resnet50"` -> the spec; throws naming the known architectures otherwise. */
export function resnetSpecByName(architecture: string): ResNetSpec {
  const match = /^resnet(\d+)$/.exec(architecture);
  const spec = match ? SPECS[Number(match[1]) as ResNetDepth] : undefined;
  if (!spec) {
    throw new Error(`unknown architecture "${architecture}": expected one of ${RESNET_ARCHITECTURES.join(', ')}`);
  }
  return spec;
}
