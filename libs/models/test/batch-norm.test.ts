import { describe, expect, it } from 'vitest';
import { tf, type Tensor } from '@emseg/tf';
import { BatchNorm } from '@emseg/models';

// x: [b=2, h=1, w=2, c=2]. Channel 0 holds 1, 2, 3, 6 (mean 3, biased var 3.5, unbiased 14/3);
// channel 1 holds 0, 0, 0, 4 (mean 1, biased var 3, unbiased 4).
const input = () => tf.tensor4d([1, 0, 2, 0, 3, 0, 6, 4], [2, 1, 2, 2]);
const channel = (t: Tensor, c: number) => Array.from(t.dataSync()).filter((_, i) => i % 2 === c);
const weight = (bn: BatchNorm, name: string) => Array.from(bn.weights.find((w) => w.originalName.endsWith(name))!.read().dataSync());

describe('BatchNorm (torch semantics)', () => {
  it('normalises with batch statistics in training and updates running stats like torch (momentum 0.1, unbiased var)', () => {
    const bn = new BatchNorm({ name: 'bn_train' });
    const y = bn.apply(input(), { training: true }) as Tensor;
    const inv0 = 1 / Math.sqrt(3.5 + 1e-5);
    const inv1 = 1 / Math.sqrt(3 + 1e-5);
    expect(channel(y, 0)).toEqual([-2, -1, 0, 3].map((d) => expect.closeTo(d * inv0, 5)));
    expect(channel(y, 1)).toEqual([-1, -1, -1, 3].map((d) => expect.closeTo(d * inv1, 5)));
    expect(weight(bn, 'moving_mean')).toEqual([expect.closeTo(0.3, 6), expect.closeTo(0.1, 6)]);
    expect(weight(bn, 'moving_variance')).toEqual([expect.closeTo(0.9 + 0.1 * (14 / 3), 5), expect.closeTo(1.3, 5)]);
  });

  it('normalises with running statistics in inference and leaves them unchanged', () => {
    const bn = new BatchNorm({ name: 'bn_infer' });
    tf.dispose(bn.apply(input(), { training: true }) as Tensor);
    const y = bn.apply(input()) as Tensor;
    const var0 = 0.9 + 0.1 * (14 / 3);
    expect(channel(y, 0)).toEqual([1, 2, 3, 6].map((v) => expect.closeTo((v - 0.3) / Math.sqrt(var0 + 1e-5), 5)));
    expect(weight(bn, 'moving_mean')).toEqual([expect.closeTo(0.3, 6), expect.closeTo(0.1, 6)]);
  });

  it('a frozen layer (trainable = false) uses and keeps its running statistics even in training', () => {
    const bn = new BatchNorm({ name: 'bn_frozen' });
    tf.dispose(bn.apply(input()) as Tensor); // build
    bn.trainable = false;
    const y = bn.apply(input(), { training: true }) as Tensor;
    expect(channel(y, 0)).toEqual([1, 2, 3, 6].map((v) => expect.closeTo(v / Math.sqrt(1 + 1e-5), 5)));
    expect(weight(bn, 'moving_mean')).toEqual([0, 0]);
    expect(weight(bn, 'moving_variance')).toEqual([1, 1]);
  });

  it('bnSubBatches normalises each sub-batch with its own statistics (shuffle-BN emulation)', () => {
    const bn = new BatchNorm({ name: 'bn_groups' });
    const y = bn.apply(input(), { training: true, bnSubBatches: 2 }) as Tensor;
    // Sub-batch 0: channel 0 [1, 2], channel 1 [0, 0]; sub-batch 1: [3, 6], [0, 4].
    expect(channel(y, 0)).toEqual([-1, 1, -1, 1].map((v) => expect.closeTo(v, 3)));
    expect(channel(y, 1)).toEqual([0, 0, -1, 1].map((v) => expect.closeTo(v, 3)));
    // Running stats: mean of the sub-batch statistics; unbiased with n = 2 per sub-batch.
    expect(weight(bn, 'moving_mean')).toEqual([expect.closeTo(0.3, 6), expect.closeTo(0.1, 6)]);
    expect(weight(bn, 'moving_variance')).toEqual([expect.closeTo(0.9 + 0.1 * 2.5, 5), expect.closeTo(0.9 + 0.1 * 4, 5)]);
    expect(() => bn.apply(input(), { training: true, bnSubBatches: 3 })).toThrow(/bnSubBatches 3 .* batch size 2/);
  });

  it('serialises as a stock BatchNormalization layer (Keras momentum = 1 - torch momentum)', () => {
    const bn = new BatchNorm({ name: 'bn_config' });
    expect(bn.getClassName()).toBe('BatchNormalization');
    expect(bn.getConfig()).toMatchObject({ name: 'bn_config', axis: -1, momentum: 0.9, epsilon: 1e-5, center: true, scale: true });
  });
});
