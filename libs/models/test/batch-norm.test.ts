import { afterEach, describe, expect, it } from 'vitest';
import { tensorCountGuard, tf, type Scalar, type Tensor, type Variable } from '@emseg/tf';
import { BatchNorm, Relu, nativeKernelsAvailable } from '@emseg/models';

// x: [b=2, h=1, w=2, c=2]. Channel 0 holds 1, 2, 3, 6 (mean 3, biased var 3.5, unbiased 14/3);
// channel 1 holds 0, 0, 0, 4 (mean 1, biased var 3, unbiased 4).
const input = () => tf.tensor4d([1, 0, 2, 0, 3, 0, 6, 4], [2, 1, 2, 2]);
const channel = (t: Tensor, c: number) => Array.from(t.dataSync()).filter((_, i) => i % 2 === c);
const weight = (bn: BatchNorm, name: string) =>
  Array.from(
    bn.weights
      .find((w) => w.originalName.endsWith(name))!
      .read()
      .dataSync(),
  );

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

describe('native kernels (fused BatchNorm, ReluGrad)', () => {
  afterEach(() => {
    delete process.env.EMSEG_NATIVE_KERNELS;
  });

  /** Loss sum(bn(x) * w) in training mode: its value, gradients and the updated running statistics. */
  function trainingPass(fused: boolean) {
    process.env.EMSEG_NATIVE_KERNELS = fused ? '1' : '0';
    const bn = new BatchNorm({ name: `bn_${fused ? 'fused' : 'composite'}` });
    const x = tf.randomNormal([4, 6, 6, 8], 1, 2, 'float32', 1);
    const w = tf.randomNormal([4, 6, 6, 8], 0, 1, 'float32', 2);
    tf.dispose(bn.apply(x) as Tensor); // build
    (bn.weights[0].read() as Variable).assign(tf.randomUniform([8], 0.5, 1.5, 'float32', 3));
    const params = bn.trainableWeights.map((v) => v.read() as Variable);
    const loss = (input: Tensor) => (bn.apply(input, { training: true }) as Tensor).mul(w).sum() as Scalar;
    const { grads } = tf.variableGrads(() => loss(x), params);
    const dx = tf.grad(loss)(x);
    const values = (t: Tensor) => Array.from(t.dataSync());
    return {
      dGamma: values(grads[params[0].name]),
      dBeta: values(grads[params[1].name]),
      dx: values(dx),
      stats: bn.weights.slice(2).flatMap((v) => values(v.read())),
    };
  }

  it('are used on the native backend', () => {
    expect(nativeKernelsAvailable()).toBe(true);
    process.env.EMSEG_NATIVE_KERNELS = '0';
    expect(nativeKernelsAvailable()).toBe(false);
  });

  it("give the composite ops' gradients and running statistics", () => {
    const fused = trainingPass(true);
    const composite = trainingPass(false);
    for (const key of ['dGamma', 'dBeta', 'dx', 'stats'] as const) {
      const scale = Math.max(1, ...composite[key].map(Math.abs));
      fused[key].forEach((v, i) => expect(Math.abs(v - composite[key][i]) / scale, key).toBeLessThan(1e-5));
    }
  });

  it('ReLU: same values and gradient as tf.relu, and serialises as the stock layer', () => {
    const x = tf.tensor1d([-2, -0.5, 0.25, 3]);
    const w = tf.tensor1d([1, 2, 3, 4]);
    const layer = new Relu({ name: 'relu_native' });
    const { value, grad } = tf.valueAndGrad((t: Tensor) => (layer.apply(t) as Tensor).mul(w).sum() as Scalar)(x);
    expect(value.dataSync()[0]).toBeCloseTo(0.25 * 3 + 3 * 4, 6);
    expect(Array.from(grad.dataSync())).toEqual([0, 0, 3, 4]);
    expect(layer.getClassName()).toBe('ReLU');
    expect(layer.getConfig()).toMatchObject({ name: 'relu_native', maxValue: null });
  });

  it('free everything a forward/backward pass allocates', () => {
    const bn = new BatchNorm({ name: 'bn_leak' });
    const x = tf.randomNormal([2, 4, 4, 3]);
    tf.dispose(bn.apply(x) as Tensor);
    const params = bn.trainableWeights.map((v) => v.read() as Variable);
    const guard = tensorCountGuard();
    for (let i = 0; i < 3; i++) {
      const { value, grads } = tf.variableGrads(() => (bn.apply(x, { training: true }) as Tensor).square().sum() as Scalar, params);
      tf.dispose([value, ...Object.values(grads)]);
    }
    expect(guard.leaked()).toBe(0);
  });
});
