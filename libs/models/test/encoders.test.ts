/**
 * The encoder seam: the registry names every family, the plain conv encoder has its contract
 * (strides, channels, names, seeded He init), trains under the U-Net without leaking, freezes
 * (all-but-bn = all without BN), and survives a bundle round trip exactly.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tensorCountGuard, tf, type LayersModel, type Tensor4D } from '@emseg/tf';
import {
  createEncoder,
  encoderSpec,
  focalDiceLoss,
  listEncoders,
  loadEncoder,
  modelVariables,
  parameterCount,
  resnetEncoder,
  saveEncoderBundle,
  trainableVariables,
  unet,
  type Encoder,
  type UNet,
} from '@emseg/models';
import { maxAbsDiff, randomImages, tempDir } from './helpers.js';

const root = tempDir('encoders');

function snapshot(model: LayersModel): Map<string, Float32Array> {
  return new Map(Object.entries(modelVariables(model)).map(([name, v]) => [name, Float32Array.from(v.dataSync())]));
}

const changed = (before: Map<string, Float32Array>, after: Map<string, Float32Array>, name: string) =>
  before.get(name)!.some((v, i) => v !== after.get(name)![i]);

/** A batch with a learnable target: foreground where the image is bright. */
function batch(): { x: Tensor4D; y: Tensor4D } {
  const x = randomImages([2, 64, 64, 1], 3);
  return { x, y: tf.tidy(() => x.greater(0.7).toFloat() as Tensor4D) };
}

/** One Adam step on the trainable variables; returns the loss before it. */
function step(net: UNet, optimizer: ReturnType<typeof tf.train.adam>, x: Tensor4D, y: Tensor4D): number {
  const vars = Object.values(trainableVariables(net.model));
  const loss = optimizer.minimize(() => focalDiceLoss(net.forward(x, { training: true }), y), true, vars)!;
  const value = loss.dataSync()[0];
  loss.dispose();
  return value;
}

const isEncoderWeight = (name: string) => !name.startsWith('decoder_') && !name.startsWith('segmentation_head');

describe('encoder registry', () => {
  it('lists both families with their specs and rejects an unknown name, listing the known ones', () => {
    expect(listEncoders()).toEqual(['resnet18', 'resnet34', 'resnet50', 'plain-conv', 'plain-conv-small']);
    expect(encoderSpec('resnet50')).toMatchObject({
      family: 'resnet',
      featureStrides: [2, 4, 8, 16, 32],
      featureChannels: [64, 256, 512, 1024, 2048],
      batchNorm: true,
    });
    expect(encoderSpec('plain-conv')).toMatchObject({
      family: 'plain-conv',
      featureStrides: [2, 4, 8, 16, 32],
      featureChannels: [32, 64, 128, 256, 512],
      batchNorm: false,
    });
    expect(encoderSpec('plain-conv-small').featureChannels).toEqual([16, 32, 64, 128, 256]);
    const known = 'expected one of resnet18, resnet34, resnet50, plain-conv, plain-conv-small';
    expect(() => createEncoder('vgg16')).toThrow(`unknown architecture "vgg16": ${known}`);
    expect(() => encoderSpec('resnet101')).toThrow(`unknown architecture "resnet101": ${known}`);
  });

  it('builds the ResNet exactly as resnetEncoder does (names, shapes, seeded values)', () => {
    const viaRegistry = createEncoder('resnet18', { inChannels: 1, seed: 3 });
    const direct = resnetEncoder({ depth: 18, inChannels: 1, seed: 3 });
    const a = modelVariables(viaRegistry.model);
    const b = modelVariables(direct.model);
    expect(Object.keys(a)).toEqual(Object.keys(b));
    for (const name of Object.keys(a)) expect(maxAbsDiff(a[name], b[name]), name).toBe(0);
    expect(viaRegistry.architecture).toBe('resnet18');
    expect(viaRegistry.model.name).toBe('resnet18_encoder');
    viaRegistry.dispose();
    direct.dispose();
  });
});

describe('plain conv encoder', () => {
  it('gives five maps at strides 2..32 with the registered channels, named per its contract', () => {
    const encoder = createEncoder('plain-conv', { seed: 1 });
    expect(encoder.architecture).toBe('plain-conv');
    expect(encoder.featureStrides).toEqual([2, 4, 8, 16, 32]);
    expect(encoder.featureChannels).toEqual([32, 64, 128, 256, 512]);
    expect(encoder.model.name).toBe('plain_conv_encoder');
    const x = randomImages([2, 64, 96, 1]);
    const maps = encoder.features(x);
    expect(maps.map((m) => m.shape)).toEqual([
      [2, 32, 48, 32],
      [2, 16, 24, 64],
      [2, 8, 12, 128],
      [2, 4, 6, 256],
      [2, 2, 3, 512],
    ]);
    const pooled = encoder.pooled(x);
    expect(pooled.shape).toEqual([2, 512]);
    // Odd sizes: each max-pool floors.
    const odd = randomImages([1, 70, 50, 1]);
    expect(encoder.features(odd).map((m) => m.shape.slice(1, 3))).toEqual([
      [35, 25],
      [17, 12],
      [8, 6],
      [4, 3],
      [2, 1],
    ]);
    tf.dispose([x, odd, pooled, ...maps]);

    const names = Object.keys(modelVariables(encoder.model));
    const expected = [1, 2, 3, 4, 5].flatMap((s) => [1, 2].flatMap((k) => [`stage${s}_conv${k}/kernel`, `stage${s}_conv${k}/bias`]));
    expect(names.sort()).toEqual(expected.sort());
    expect(encoder.model.outputNames).toEqual(['stage1_pool', 'stage2_pool', 'stage3_pool', 'stage4_pool', 'stage5_pool']);
    // 2 x (3x3 conv + bias) per stage: 1->32->32, 32->64->64, ..., 256->512->512.
    const widths = [1, 32, 64, 128, 256, 512];
    const params = [1, 2, 3, 4, 5].reduce((n, s) => n + (9 * widths[s - 1] + 1) * widths[s] + (9 * widths[s] + 1) * widths[s], 0);
    expect(parameterCount(encoder.model)).toBe(params);
    expect(() => encoder.features(randomImages([1, 32, 32, 3]))).toThrow('plain-conv encoder expects input [batch, height, width, 1], got [1, 32, 32, 3]');
    encoder.dispose();
  });

  it('is seeded: He normal kernels (fan-in), zero biases, reproducible for every seed including 0', () => {
    const build = (seed: number) => createEncoder('plain-conv-small', { seed });
    const [a, b, c] = [build(0), build(0), build(5)];
    const va = modelVariables(a.model);
    const vb = modelVariables(b.model);
    const vc = modelVariables(c.model);
    for (const name of Object.keys(va)) expect(maxAbsDiff(va[name], vb[name]), name).toBe(0);
    expect(maxAbsDiff(va['stage1_conv1/kernel'], vc['stage1_conv1/kernel'])).toBeGreaterThan(0.01);
    // every conv draws from its own seed
    expect(tf.tidy(() => maxAbsDiff(va['stage1_conv2/kernel'], va['stage2_conv1/kernel'].slice([0, 0, 0, 0], [3, 3, 16, 16])))).toBeGreaterThan(0.01);
    // He normal: std sqrt(2 / fan_in), fan_in = 9 * 256 for stage5_conv2 (tfjs draws a truncated normal).
    const std = tf.tidy(() => tf.moments(va['stage5_conv2/kernel']).variance.sqrt().dataSync()[0]);
    const he = Math.sqrt(2 / (9 * 256));
    expect(std / he).toBeGreaterThan(0.8);
    expect(std / he).toBeLessThan(1.05);
    expect(tf.tidy(() => va['stage5_conv2/bias'].abs().max().dataSync()[0])).toBe(0);
    const blank = createEncoder('plain-conv-small', { initialize: false });
    expect(tf.tidy(() => modelVariables(blank.model)['stage1_conv1/kernel'].abs().max().dataSync()[0])).toBe(0);
    [a, b, c, blank].forEach((e) => e.dispose());
  });
});

describe('plain conv encoder under a U-Net', () => {
  it('trains: forward + backward, the loss falls on a fixed batch, and the tensor count stays flat', () => {
    const net = unet({ encoder: createEncoder('plain-conv', { seed: 1 }), seed: 2 });
    expect(net.model.name).toBe('unet_plain_conv');
    const shapes = Object.fromEntries(net.model.weights.map((w) => [w.originalName, w.shape]));
    expect(shapes['decoder_block0_conv1/kernel']).toEqual([3, 3, 512 + 256, 256]);
    expect(shapes['decoder_block3_conv1/kernel']).toEqual([3, 3, 64 + 32, 32]); // block2's 64 + the stride-2 skip's 32
    const { x, y } = batch();
    expect(net.forward(x).shape).toEqual([2, 64, 64, 1]);
    tf.dispose(net.forward(x));
    const optimizer = tf.train.adam(1e-3);
    const first = step(net, optimizer, x, y); // creates the optimizer's slots
    const guard = tensorCountGuard();
    let last = first;
    for (let i = 0; i < 8; i++) last = step(net, optimizer, x, y);
    expect(guard.leaked()).toBe(0);
    expect(last).toBeLessThan(first * 0.8);
    const inference = tensorCountGuard();
    for (let i = 0; i < 2; i++) net.forward(x).dispose();
    expect(inference.leaked()).toBe(0);
    tf.dispose([x, y]);
    optimizer.dispose();
    net.dispose();
  });

  it('refuses an encoder whose features are not at strides 2..32, naming them', () => {
    const encoder = createEncoder('plain-conv-small', { initialize: false });
    const other = Object.defineProperty(Object.create(encoder) as Encoder, 'featureStrides', { value: [1, 2, 4, 8, 16] });
    expect(() => unet({ encoder: other })).toThrow('a U-Net needs encoder features at strides 2, 4, 8, 16, 32, but plain-conv-small gives 1, 2, 4, 8, 16');
    encoder.dispose();
  });

  it('freezing: all leaves every encoder variable unchanged; all-but-bn equals all (no BN); none trains the encoder', () => {
    const net = unet({ encoder: createEncoder('plain-conv-small', { seed: 1 }), decoderChannels: [32, 16, 16, 8, 8], seed: 2 });
    const { x, y } = batch();
    const names = Object.keys(modelVariables(net.model));
    const encoderNames = names.filter(isEncoderWeight);
    const params = names.filter((n) => !n.includes('/moving_'));
    const trainable = () => Object.keys(trainableVariables(net.model)).sort();
    const once = () => {
      const optimizer = tf.train.adam(1e-2); // tfjs optimizers keep slots by position: one per phase
      step(net, optimizer, x, y);
      optimizer.dispose();
    };

    net.freezeEncoder('all');
    const decoderOnly = params.filter((n) => !isEncoderWeight(n)).sort();
    expect(trainable()).toEqual(decoderOnly);
    let before = snapshot(net.model);
    once();
    let after = snapshot(net.model);
    expect(encoderNames.filter((n) => changed(before, after, n))).toEqual([]);
    expect(names.filter((n) => !isEncoderWeight(n) && n.endsWith('/kernel')).every((n) => changed(before, after, n))).toBe(true);

    net.freezeEncoder('all-but-bn');
    expect(net.encoderFrozen).toBe('all-but-bn');
    expect(trainable()).toEqual(decoderOnly);
    before = after;
    once();
    after = snapshot(net.model);
    expect(encoderNames.filter((n) => changed(before, after, n))).toEqual([]);

    net.freezeEncoder('none');
    expect(trainable()).toEqual([...params].sort());
    before = after;
    once();
    after = snapshot(net.model);
    expect(encoderNames.every((n) => changed(before, after, n))).toBe(true);
    tf.dispose([x, y]);
    net.dispose();
  });
});

describe('plain conv encoder bundle', () => {
  it('save -> load (through the registry) gives identical weights, features and U-Net logits', async () => {
    const dir = join(root, 'plain');
    const original: Encoder = createEncoder('plain-conv', { seed: 4 });
    const json = await saveEncoderBundle(dir, original, { normalization: { mean: 0.5, std: 0.2 }, training: { method: 'random-init' } });
    expect(json).toMatchObject({ architecture: 'plain-conv', featureStrides: [2, 4, 8, 16, 32], featureChannels: [32, 64, 128, 256, 512] });
    const manifest = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')).weightsManifest[0].weights as Array<{ name: string }>;
    expect(manifest.map((w) => w.name).sort()).toEqual(Object.keys(modelVariables(original.model)).sort());

    const { encoder, meta } = await loadEncoder(dir, { inChannels: 1 });
    expect(encoder.architecture).toBe('plain-conv');
    expect(meta.normalization).toEqual({ mean: [0.5], std: [0.2] });
    const x = randomImages([2, 64, 64, 1], 9);
    const before = original.features(x);
    const after = encoder.features(x);
    before.forEach((f, i) => expect(maxAbsDiff(f, after[i])).toBe(0));
    const a = unet({ encoder: original, decoderChannels: [32, 16, 16, 8, 8], seed: 7 });
    const b = unet({ encoder, decoderChannels: [32, 16, 16, 8, 8], seed: 7 });
    const la = a.forward(x);
    const lb = b.forward(x);
    expect(maxAbsDiff(la, lb)).toBe(0);
    tf.dispose([x, la, lb, ...before, ...after]);
    a.dispose();
    b.dispose();
  });

  it('refuses a bundle whose channels or weights do not match its architecture', async () => {
    const dir = join(root, 'small');
    const small = createEncoder('plain-conv-small', { seed: 1 });
    await saveEncoderBundle(dir, small, { normalization: { mean: 0.5, std: 0.2 }, training: { method: 'random-init' } });
    small.dispose();
    const file = join(dir, 'encoder.json');
    const json = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    writeFileSync(file, JSON.stringify({ ...json, featureChannels: [64, 64, 128, 256, 512] }));
    await expect(loadEncoder(dir)).rejects.toThrow('field featureChannels must be [16,32,64,128,256] for plain-conv-small');
    writeFileSync(file, JSON.stringify({ ...json, architecture: 'plain-conv', featureChannels: [32, 64, 128, 256, 512] }));
    await expect(loadEncoder(dir)).rejects.toThrow(/\(plain-conv\): weight stage1_conv1\/kernel has shape \[3,3,1,16\] but the model expects \[3,3,1,32\]/);
  });
});
