import { describe, expect, it } from 'vitest';
import { tensorCountGuard, tf, type LayersModel, type Tensor4D } from '@emseg/tf';
import { focalDiceLoss, modelVariables, parameterCount, resnetEncoder, trainableVariables, unet, type UNet } from '@emseg/models';
import { randomImages } from './helpers.js';

/** Every weight's values by name. */
function snapshot(model: LayersModel): Map<string, Float32Array> {
  return new Map(Object.entries(modelVariables(model)).map(([name, v]) => [name, v.dataSync() as Float32Array]));
}

function changed(before: Map<string, Float32Array>, after: Map<string, Float32Array>, name: string): boolean {
  const a = before.get(name)!;
  const b = after.get(name)!;
  return a.some((v, i) => v !== b[i]);
}

/** A batch with a learnable target: foreground where the image is bright. */
function batch(): { x: Tensor4D; y: Tensor4D } {
  const x = randomImages([2, 64, 64, 1], 3);
  return { x, y: tf.tidy(() => x.greater(0.7).toFloat() as Tensor4D) };
}

function trainStep(net: UNet, optimizer: ReturnType<typeof tf.train.adam>, x: Tensor4D, y: Tensor4D): number {
  const vars = Object.values(trainableVariables(net.model));
  const loss = optimizer.minimize(() => focalDiceLoss(net.forward(x, { training: true }), y), true, vars)!;
  const value = loss.dataSync()[0];
  loss.dispose();
  return value;
}

const isEncoderWeight = (name: string) => !name.startsWith('decoder_') && !name.startsWith('segmentation_head');
const isBnParam = (name: string) => /\/(gamma|beta)$/.test(name);

describe('unet', () => {
  it('maps [b, h, w, 1] to [b, h, w, 1] logits with smp parameter counts', () => {
    const rgb = unet({ encoder: resnetEncoder({ depth: 18, inChannels: 3 }) });
    // smp.Unet("resnet18", in_channels=3, classes=1): 14,328,209 parameters.
    expect(parameterCount(rgb.model)).toBe(14_328_209);
    rgb.dispose();
    const net = unet({ encoder: resnetEncoder({ depth: 18, seed: 1 }), seed: 2 });
    expect(parameterCount(net.model)).toBe(14_328_209 - 64 * 49 * 2);
    const x = randomImages([2, 64, 96, 1]);
    const logits = net.forward(x);
    expect(logits.shape).toEqual([2, 64, 96, 1]);
    tf.dispose([x, logits]);
    net.dispose();
  });

  it('builds the decoder over ResNet-50 skips with custom channels and classes', () => {
    const net = unet({ encoder: resnetEncoder({ depth: 50 }), decoderChannels: [64, 32, 16, 8, 4], classes: 2 });
    const shapes = Object.fromEntries(net.model.weights.map((w) => [w.originalName, w.shape]));
    expect(shapes['decoder_block0_conv1/kernel']).toEqual([3, 3, 2048 + 1024, 64]);
    expect(shapes['decoder_block3_conv1/kernel']).toEqual([3, 3, 16 + 64, 8]);
    expect(shapes['decoder_block4_conv1/kernel']).toEqual([3, 3, 8, 4]); // no skip at stride 1
    expect(shapes['segmentation_head/kernel']).toEqual([3, 3, 4, 2]);
    expect(shapes['segmentation_head/bias']).toEqual([2]);
    const x = randomImages([1, 64, 64, 1]);
    const logits = net.forward(x);
    expect(logits.shape).toEqual([1, 64, 64, 2]);
    tf.dispose([x, logits]);
    net.dispose();
  });

  it('rejects sizes that are not multiples of 32 and bad options', () => {
    expect(() => unet({ encoder: resnetEncoder({ depth: 18, inputSize: [100, 64] }) })).toThrow(/multiple of 32.*100 x 64/);
    const encoder = resnetEncoder({ depth: 18 });
    expect(() => unet({ encoder, decoderChannels: [256, 128] })).toThrow('decoderChannels must be 5 positive integers');
    expect(() => unet({ encoder, classes: 0 })).toThrow('classes must be a positive integer, got 0');
    const net = unet({ encoder });
    const x = randomImages([1, 48, 64, 1]);
    expect(() => net.forward(x)).toThrow('U-Net expects input [batch, height, width, 1] with height and width multiples of 32, got [1, 48, 64, 1]');
    x.dispose();
    net.dispose();
  });

  it('shares the encoder: its layers and weights are the same objects', () => {
    const encoder = resnetEncoder({ depth: 18, seed: 1 });
    const net = unet({ encoder });
    expect(net.model.getLayer('layer3_1_conv2')).toBe(encoder.model.getLayer('layer3_1_conv2'));
    net.dispose();
  });
});

describe('encoder freezing', () => {
  it('sets trainable weights per mode: none / all / all-but-bn, and unfreezes', () => {
    const net = unet({ encoder: resnetEncoder({ depth: 18, seed: 1 }), seed: 2 });
    const all = Object.keys(modelVariables(net.model)).filter((n) => !n.includes('/moving_'));
    const trainable = () => Object.keys(trainableVariables(net.model));
    expect(trainable().sort()).toEqual([...all].sort());

    net.freezeEncoder('all');
    expect(net.encoderFrozen).toBe('all');
    expect(trainable().sort()).toEqual(all.filter((n) => !isEncoderWeight(n)).sort());

    net.freezeEncoder('all-but-bn');
    expect(trainable().sort()).toEqual(all.filter((n) => !isEncoderWeight(n) || isBnParam(n)).sort());

    net.freezeEncoder('none');
    expect(trainable().sort()).toEqual([...all].sort());
    expect(() => net.freezeEncoder('most' as 'none')).toThrow('unknown encoder freeze mode "most": expected one of none, all, all-but-bn');
    net.dispose();
  });

  it('a training step leaves a frozen encoder unchanged (BN statistics included); all-but-bn trains only BN; unfreezing trains all', () => {
    const net = unet({ encoder: resnetEncoder({ depth: 18, seed: 1 }), seed: 2 });
    const { x, y } = batch();
    // tfjs optimizers keep their slots by position in the variable list: a fresh one per phase.
    const step = () => {
      const optimizer = tf.train.adam(1e-2);
      trainStep(net, optimizer, x, y);
      optimizer.dispose();
    };
    const names = Object.keys(modelVariables(net.model));
    const encoderNames = names.filter(isEncoderWeight);
    const decoderKernels = names.filter((n) => !isEncoderWeight(n) && n.endsWith('/kernel'));

    net.freezeEncoder('all');
    let before = snapshot(net.model);
    step();
    let after = snapshot(net.model);
    expect(encoderNames.filter((n) => changed(before, after, n))).toEqual([]);
    expect(decoderKernels.every((n) => changed(before, after, n))).toBe(true);

    net.freezeEncoder('all-but-bn');
    before = after;
    step();
    after = snapshot(net.model);
    const encoderChanged = encoderNames.filter((n) => changed(before, after, n));
    expect(encoderChanged.length).toBeGreaterThan(0);
    expect(encoderChanged.filter((n) => !/\/(gamma|beta|moving_mean|moving_variance)$/.test(n))).toEqual([]);
    expect(changed(before, after, 'bn1/gamma')).toBe(true);
    expect(changed(before, after, 'bn1/moving_mean')).toBe(true);

    net.freezeEncoder('none');
    before = after;
    step();
    after = snapshot(net.model);
    expect(changed(before, after, 'conv1/kernel')).toBe(true);
    expect(changed(before, after, 'layer4_1_conv2/kernel')).toBe(true);

    tf.dispose([x, y]);
    net.dispose();
  });
});

describe('training', () => {
  it('the loss falls on a fixed batch and a forward/backward loop does not grow the tensor count', () => {
    const net = unet({ encoder: resnetEncoder({ depth: 18, seed: 1 }), seed: 2 });
    const { x, y } = batch();
    const optimizer = tf.train.adam(1e-2);
    const first = trainStep(net, optimizer, x, y); // creates the optimizer's slots
    const guard = tensorCountGuard();
    let last = first;
    for (let i = 0; i < 6; i++) last = trainStep(net, optimizer, x, y);
    expect(guard.leaked()).toBe(0);
    expect(last).toBeLessThan(first * 0.8);

    const inference = tensorCountGuard();
    for (let i = 0; i < 2; i++) net.forward(x).dispose();
    expect(inference.leaked()).toBe(0);
    tf.dispose([x, y]);
    optimizer.dispose();
    net.dispose();
  });
});
