import { describe, expect, it } from 'vitest';
import { tf, type Tensor4D } from '@emseg/tf';
import { globalAveragePool, parameterCount, resnetEncoder, type ResNetDepth } from '@emseg/models';
import { maxAbsDiff, randomImages } from './helpers.js';

// torchvision: sum(p.numel() for p in resnetN().parameters()) minus the fc layer, 3-channel stem.
const TORCHVISION_PARAMS: Record<ResNetDepth, number> = { 18: 11_176_512, 34: 21_284_672, 50: 23_508_032 };
const CHANNELS: Record<ResNetDepth, number[]> = {
  18: [64, 64, 128, 256, 512],
  34: [64, 64, 128, 256, 512],
  50: [64, 256, 512, 1024, 2048],
};

describe.each([18, 34, 50] as const)('ResNet-%i encoder', (depth) => {
  const encoder = resnetEncoder({ depth, inChannels: 3, seed: 1 });

  it('returns feature maps at strides 2, 4, 8, 16, 32 with the torchvision channel counts', () => {
    expect(encoder.architecture).toBe(`resnet${depth}`);
    expect(encoder.featureStrides).toEqual([2, 4, 8, 16, 32]);
    expect(encoder.featureChannels).toEqual(CHANNELS[depth]);
    const feats = encoder.features(randomImages([2, 64, 64, 3]));
    expect(feats.map((f) => f.shape)).toEqual(CHANNELS[depth].map((c, i) => [2, 64 / 2 ** (i + 1), 64 / 2 ** (i + 1), c]));
    tf.dispose(feats);
  });

  it('has the parameter count of torchvision (without fc)', () => {
    expect(parameterCount(encoder.model)).toBe(TORCHVISION_PARAMS[depth]);
  });

  it('pools the stride-32 features into a [batch, channels] vector', () => {
    const x = randomImages([2, 64, 64, 3]);
    const pooled = encoder.pooled(x);
    const feats = encoder.features(x);
    const expected = globalAveragePool(feats[4]);
    expect(pooled.shape).toEqual([2, CHANNELS[depth][4]]);
    expect(maxAbsDiff(pooled, expected)).toBe(0);
    tf.dispose([x, pooled, feats, expected]);
  });
});

describe('resnetEncoder', () => {
  it('a 1-channel stem has 64 x 7 x 7 x 2 fewer parameters than the RGB one', () => {
    const grey = resnetEncoder({ depth: 18, inChannels: 1 });
    expect(parameterCount(grey.model)).toBe(11_176_512 - 64 * 49 * 2);
    expect(grey.inChannels).toBe(1);
    grey.dispose();
  });

  it('follows torch output sizes for odd inputs (floor((h - 1) / 2) + 1 per stride-2 stage)', () => {
    const encoder = resnetEncoder({ depth: 18, seed: 1 });
    const feats = encoder.features(randomImages([1, 45, 37, 1]));
    // 45 -> 23 -> (maxpool) 12 -> 6 -> 3 -> 2;  37 -> 19 -> 10 -> 5 -> 3 -> 2
    expect(feats.map((f) => f.shape.slice(1, 3))).toEqual([
      [23, 19],
      [12, 10],
      [6, 5],
      [3, 3],
      [2, 2],
    ]);
    tf.dispose(feats);
    encoder.dispose();
  });

  it('with a fixed input size, the model declares the feature shapes', () => {
    const encoder = resnetEncoder({ depth: 18, inputSize: [96, 64], seed: 1 });
    expect(encoder.model.outputs.map((o) => o.shape)).toEqual([
      [null, 48, 32, 64],
      [null, 24, 16, 64],
      [null, 12, 8, 128],
      [null, 6, 4, 256],
      [null, 3, 2, 512],
    ]);
    encoder.dispose();
  });

  it('names layers after torchvision modules (dots -> underscores), weights <layer>/<kernel|gamma|...>', () => {
    const encoder = resnetEncoder({ depth: 50, seed: 1 });
    const shapes = Object.fromEntries(encoder.model.weights.map((w) => [w.originalName, w.shape]));
    expect(shapes['conv1/kernel']).toEqual([7, 7, 1, 64]);
    expect(shapes['bn1/moving_variance']).toEqual([64]);
    expect(shapes['layer1_0_downsample_0/kernel']).toEqual([1, 1, 64, 256]);
    expect(shapes['layer1_0_downsample_1/gamma']).toEqual([256]);
    expect(shapes['layer2_0_conv2/kernel']).toEqual([3, 3, 128, 128]); // v1.5: stride on the 3x3
    expect(shapes['layer4_2_conv3/kernel']).toEqual([1, 1, 512, 2048]);
    expect(encoder.model.getLayer('layer2_0_conv2').getConfig()).toMatchObject({ strides: [2, 2] });
    expect(encoder.model.getLayer('layer2_0_conv1').getConfig()).toMatchObject({ strides: [1, 1] });
    expect(encoder.model.outputNames).toEqual(['relu', 'layer1_2_out', 'layer2_3_out', 'layer3_5_out', 'layer4_2_out']);
    encoder.dispose();
  });

  it('initialises deterministically per seed, each conv with its own draw, He fan-out scale', () => {
    const kernels = (seed: number) => {
      const e = resnetEncoder({ depth: 18, seed });
      const get = (name: string) => e.model.getLayer(name).getWeights()[0].clone();
      const out = { a: get('layer1_0_conv2'), b: get('layer1_1_conv1'), deep: get('layer4_1_conv2') };
      e.dispose();
      return out;
    };
    const first = kernels(5);
    const again = kernels(5);
    const other = kernels(6);
    const zero = [kernels(0), kernels(0)]; // tfjs treats seed 0 as "unseeded"; ours must not
    expect(maxAbsDiff(zero[0].a, zero[1].a)).toBe(0);
    expect(maxAbsDiff(first.a, again.a)).toBe(0);
    expect(maxAbsDiff(first.a, other.a)).toBeGreaterThan(0);
    expect(maxAbsDiff(first.a, first.b)).toBeGreaterThan(0);
    // He normal, fan-out = 3 * 3 * 512: std sqrt(2 / 4608) = 0.0208 (truncated at 2 std: ~0.88x).
    const std = tf.tidy(() => tf.moments(first.deep).variance.sqrt().dataSync()[0]);
    expect(std).toBeGreaterThan(0.0208 * 0.8);
    expect(std).toBeLessThan(0.0208 * 1.05);
    tf.dispose([first, again, other, ...zero].flatMap((k) => Object.values(k)));
  });

  it('rejects unsupported depths and mismatched inputs with clear errors', () => {
    expect(() => resnetEncoder({ depth: 101 as ResNetDepth })).toThrow('unsupported ResNet depth 101: expected one of 18, 34, 50');
    expect(() => resnetEncoder({ depth: 18, inChannels: 0 })).toThrow('inChannels must be a positive integer, got 0');
    const encoder = resnetEncoder({ depth: 18 });
    const rgb = tf.zeros([1, 64, 64, 3]) as Tensor4D;
    expect(() => encoder.features(rgb)).toThrow('resnet18 encoder expects input [batch, height, width, 1], got [1, 64, 64, 3]');
    rgb.dispose();
    encoder.dispose();
  });
});
