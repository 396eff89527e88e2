import { describe, expect, it } from 'vitest';
import { tensorCountGuard, tf, type Scalar, type Tensor } from '@emseg/tf';
import {
  bceWithLogits,
  binaryCrossEntropy,
  crossEntropyDiceLoss,
  diceLoss,
  focalDiceLoss,
  focalLoss,
  multiclassDiceLoss,
  segmentationLoss,
  softmaxCrossEntropy,
} from '@emseg/models';

const value = (s: Scalar) => {
  const v = s.dataSync()[0];
  s.dispose();
  return v;
};

// Hand-computed (float64): softplus(x) - x t for x = [0, 2, -3, 100, -100], t = [1, 0, 1, 0, 1]:
//   log 2 = 0.693147, log(1 + e^2) = 2.126928, log(1 + e^-3) + 3 = 3.048587, 100, 100.
// Probability of the wrong class: 0.5, sigmoid(2) = 0.880797, sigmoid(3) = 0.952574, ~1, ~1.
const logits = () => tf.tensor1d([0, 2, -3, 100, -100]);
const targets = () => tf.tensor1d([1, 0, 1, 0, 1]);
const BCE = [0.6931471805599453, 2.1269280110429727, 3.048587351573742, 100, 100];
const FOCAL = [0.17328679513998632, 1.6500781794214086, 2.766280441025263, 100, 100]; // BCE * wrong^2

describe('binary cross-entropy', () => {
  it('equals softplus(x) - x t element-wise, also for saturated logits', () => {
    const bce = bceWithLogits(logits(), targets());
    Array.from(bce.dataSync()).forEach((v, i) => expect(v).toBeCloseTo(BCE[i], 4));
    expect(value(binaryCrossEntropy(logits(), targets()))).toBeCloseTo(41.173732508635325, 3);
  });

  it('has gradient (sigmoid(x) - t) / n', () => {
    const x = tf.tensor1d([0, 2, -3]);
    const t = tf.tensor1d([1, 0, 1]);
    const grad = tf.grad((l: Tensor) => binaryCrossEntropy(l, t))(x);
    const expected = [(0.5 - 1) / 3, 0.8807970779778823 / 3, (0.04742587317756678 - 1) / 3];
    Array.from(grad.dataSync()).forEach((g, i) => expect(g).toBeCloseTo(expected[i], 6));
  });
});

describe('focal loss', () => {
  it('weights BCE by (1 - p_t)^gamma (gamma 2 by default)', () => {
    const mean = FOCAL.reduce((a, b) => a + b) / 5; // 40.917929
    expect(value(focalLoss(logits(), targets()))).toBeCloseTo(mean, 3);
  });

  it('applies alpha to the foreground and 1 - alpha to the background', () => {
    const alpha = [0.25, 0.75, 0.25, 0.75, 0.25];
    const mean = FOCAL.reduce((sum, f, i) => sum + f * alpha[i], 0) / 5; // 20.394490
    expect(value(focalLoss(logits(), targets(), { alpha: 0.25 }))).toBeCloseTo(mean, 3);
  });

  it('with gamma 0 equals BCE', () => {
    expect(value(focalLoss(logits(), targets(), { gamma: 0 }))).toBeCloseTo(value(binaryCrossEntropy(logits(), targets())), 4);
  });
});

describe('dice loss', () => {
  it('is 1 - (2 sum(p t) + smooth) / (sum p + sum t + smooth) over the whole batch', () => {
    // p = [0.5, 0.5], t = [1, 0]: intersection 0.5, sums 1 + 1.
    const l = tf.tensor2d([[0], [0]]);
    const t = tf.tensor2d([[1], [0]]);
    expect(value(diceLoss(l, t))).toBeCloseTo(1 - 2 / 3, 6);
    expect(value(diceLoss(l, t, { smooth: 0 }))).toBeCloseTo(0.5, 6);
  });

  it('is ~0 for a confident correct prediction and ~1 for a confident wrong one', () => {
    const t = tf.tensor1d([1, 0, 1, 1, 0, 0, 1, 0]);
    const right = tf.tidy(() => t.mul(40).sub(20));
    expect(value(diceLoss(right, t, { smooth: 0 }))).toBeCloseTo(0, 6);
    expect(value(diceLoss(right.neg(), t, { smooth: 0 }))).toBeCloseTo(1, 6);
  });
});

describe('focal + lambda * dice', () => {
  it('adds the two terms (gamma 2, lambda 1 by default)', () => {
    const l = tf.tensor1d([0, 0]);
    const t = tf.tensor1d([1, 0]);
    const focal = 0.25 * Math.LN2; // both elements: 0.5^2 log 2
    expect(value(focalDiceLoss(l, t))).toBeCloseTo(focal + 1 / 3, 6);
    expect(value(focalDiceLoss(l, t, { lambda: 0.5 }))).toBeCloseTo(focal + 1 / 6, 6);
    expect(value(segmentationLoss({ kind: 'focal-dice', lambda: 0.5 })(l, t))).toBeCloseTo(focal + 1 / 6, 6);
    expect(value(segmentationLoss({ kind: 'bce' })(l, t))).toBeCloseTo(Math.LN2, 6);
  });

  it('stays finite, with finite gradients, at logits of +-1e4', () => {
    const l = tf.tensor1d([1e4, -1e4, 1e4, -1e4]);
    const t = tf.tensor1d([1, 0, 0, 1]);
    const loss = (x: Tensor) => focalDiceLoss(x, t, { alpha: 0.25 });
    const { value: v, grad } = tf.valueAndGrad(loss)(l);
    expect(Number.isFinite(v.dataSync()[0])).toBe(true);
    expect(Array.from(grad.dataSync()).every(Number.isFinite)).toBe(true);
  });

  it('frees its intermediates', () => {
    const l = tf.randomNormal([2, 16, 16, 1]);
    const t = tf.tidy(() => tf.randomUniform([2, 16, 16, 1]).greater(0.9).toFloat());
    const guard = tensorCountGuard();
    value(focalDiceLoss(l, t));
    value(binaryCrossEntropy(l, t));
    expect(guard.leaked()).toBe(0);
  });

  it('rejects mismatched shapes and out-of-range options', () => {
    expect(() => focalDiceLoss(tf.zeros([2, 4]), tf.zeros([2, 5]))).toThrow('loss: logits shape [2,4] differs from targets shape [2,5]');
    expect(() => focalLoss(tf.zeros([2]), tf.zeros([2]), { gamma: -1 })).toThrow('loss option gamma must be a number in [0, Infinity], got -1');
    expect(() => segmentationLoss({ kind: 'focal-dice', alpha: 1.5 })).toThrow('loss option alpha must be a number in [0, 1], got 1.5');
    expect(() => segmentationLoss({ kind: 'dice' } as unknown as { kind: 'bce' })).toThrow('unknown loss kind "dice"');
  });
});

describe('multi-class loss (softmax cross-entropy + Dice)', () => {
  // Reference values from PyTorch (float64), as the multi-class recipe is usually written there:
  //   x = torch.tensor([[[[2, -1, .5], [0, 0, 0]], [[-3, 4, 1], [10, -10, 0]]]], dtype=torch.float64)  # NHWC
  //   t = torch.tensor([[[0, 2], [1, 0]]]); oh = F.one_hot(t, 3).reshape(-1, 3); p = x.softmax(-1).reshape(-1, 3)
  //   ce = F.cross_entropy(x.permute(0, 3, 1, 2), t)
  //   d = (2 * (p * oh).sum(0) + 1) / (p.sum(0) + oh.sum(0) + 1)
  //   dice = (1 - d[1:]).mean()   # foreground classes, as nnU-Net's batch Dice (do_bg=False); (1 - d).mean() with the background
  const x = () => tf.tensor4d([2, -1, 0.5, 0, 0, 0, -3, 4, 1, 10, -10, 0], [1, 2, 2, 3]);
  const t = () => tf.oneHot(tf.tensor3d([0, 2, 1, 0], [1, 2, 2], 'int32'), 3).toFloat();
  const CE = 0.34735614899529743;
  const DICE = 0.237254896240837;
  const DICE_ALL = 0.19389102883849127;
  const GRAD = [
    -0.07520205526225235, 0.013841159998832904, 0.06136089526341945, 0.09803353512279464, 0.14182578523505837, -0.23985932035785304, 0.0003516897194490692,
    -0.025597194253696994, 0.025245504534247953, -1.714046573222433e-5, 7.860284475965479e-10, 1.7139679703752463e-5,
  ];

  it('matches F.cross_entropy and the per-class soft Dice of PyTorch, and their sum and gradient', () => {
    const guard = tensorCountGuard();
    tf.tidy(() => {
      expect(value(softmaxCrossEntropy(x(), t()))).toBeCloseTo(CE, 5);
      expect(value(multiclassDiceLoss(x(), t()))).toBeCloseTo(DICE, 5);
      expect(value(multiclassDiceLoss(x(), t(), { includeBackground: true }))).toBeCloseTo(DICE_ALL, 5);
      const loss = segmentationLoss({ kind: 'ce-dice' });
      expect(value(loss(x(), t()))).toBeCloseTo(CE + DICE, 5);
      expect(value(crossEntropyDiceLoss(x(), t(), { lambda: 0 }))).toBeCloseTo(CE, 5);
      const targets = t();
      const grad = tf.grad((l: Tensor) => loss(l, targets))(x());
      Array.from(grad.dataSync()).forEach((g, i) => expect(g).toBeCloseTo(GRAD[i], 5));
    });
    expect(guard.leaked()).toBe(0);
  });

  it('stays finite for saturated logits and refuses mismatched shapes', () => {
    const big = tf.tensor4d([1e4, -1e4, 0, -1e4, 1e4, 0], [1, 1, 2, 3]);
    const target = tf.tensor4d([0, 1, 0, 1, 0, 0], [1, 1, 2, 3]);
    expect(Number.isFinite(value(crossEntropyDiceLoss(big, target)))).toBe(true);
    expect(() => softmaxCrossEntropy(big, tf.zeros([1, 1, 2, 2]))).toThrow(/differs from targets shape/);
    tf.dispose([big, target]);
  });
});
