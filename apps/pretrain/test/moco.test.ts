import { describe, expect, it } from 'vitest';
import { tf, type Tensor, type Tensor2D, type Tensor4D } from '@emseg/tf';
import { KeyQueue, infoNceLogits, infoNceLoss, momentumUpdate, normalizeRows, permutation, shuffledKeyForward } from '../src/moco.js';

const rows = (t: Tensor) => t.arraySync() as number[][];

describe('momentumUpdate', () => {
  it('moves key weights towards query weights by 1 - m', () => {
    const k = { a: tf.variable(tf.tensor1d([1, 2])), b: tf.variable(tf.scalar(10)) };
    const q = { b: tf.variable(tf.scalar(0)), a: tf.variable(tf.tensor1d([3, -2])) };
    momentumUpdate(k, q, 0.9);
    expect(Array.from(k.a.dataSync())).toEqual([expect.closeTo(1.2, 6), expect.closeTo(1.6, 6)]);
    expect(k.b.dataSync()[0]).toBeCloseTo(9, 6);
    expect(() => momentumUpdate({ a: k.a }, q, 0.9)).toThrow(/key network has no weight b/);
    tf.dispose([...Object.values(k), ...Object.values(q)]);
  });
});

describe('KeyQueue', () => {
  it('starts with unit-norm keys, overwrites at the pointer and wraps around', () => {
    const queue = new KeyQueue(6, 2, 1);
    const norms = tf.tidy(() => queue.keys.norm('euclidean', 1).arraySync() as number[]);
    norms.forEach((n) => expect(n).toBeCloseTo(1, 5));
    const batch = (v: number) =>
      tf.tensor2d([
        [v, 0],
        [0, v],
      ]);
    const initial = rows(queue.keys);
    for (const v of [1, 2, 3]) {
      const b = batch(v);
      queue.enqueue(b);
      b.dispose();
    }
    expect(queue.ptr).toBe(0);
    expect(rows(queue.keys)).toEqual([
      [1, 0],
      [0, 1],
      [2, 0],
      [0, 2],
      [3, 0],
      [0, 3],
    ]);
    const b = batch(4);
    queue.enqueue(b);
    expect(queue.ptr).toBe(2);
    expect(rows(queue.keys).slice(0, 3)).toEqual([
      [4, 0],
      [0, 4],
      [2, 0],
    ]);
    expect(initial).not.toEqual(rows(queue.keys));
    const bad = tf.zeros([4, 2]) as Tensor2D;
    expect(() => queue.enqueue(bad)).toThrow(/queue size 6 is not a multiple of the batch size 4/);
    tf.dispose([b, bad]);
    queue.dispose();
  });
});

describe('InfoNCE', () => {
  it('puts the positive logit first and divides by the temperature', () => {
    const q = tf.tensor2d([
      [1, 0],
      [0, 1],
    ]);
    const k = tf.tensor2d([
      [0.6, 0.8],
      [0, 1],
    ]);
    const queue = tf.tensor2d([
      [1, 0],
      [-1, 0],
      [0, -1],
    ]);
    const logits = infoNceLogits(q, k, queue, 0.5);
    expect(rows(logits)).toEqual([
      [expect.closeTo(1.2, 6), 2, -2, 0],
      [2, 0, 0, -2],
    ]);
    // loss = mean_i( logsumexp(row_i) - row_i[0] )
    const lse = (r: number[]) => Math.log(r.reduce((s, v) => s + Math.exp(v), 0));
    const want = (lse([1.2, 2, -2, 0]) - 1.2 + (lse([2, 0, 0, -2]) - 2)) / 2;
    expect(infoNceLoss(logits).dataSync()[0]).toBeCloseTo(want, 5);
    tf.dispose([q, k, queue, logits]);
  });

  it('normalizes rows to unit length', () => {
    const x = normalizeRows(
      tf.tensor2d([
        [3, 4],
        [0, 2],
      ]),
    );
    expect(rows(x)).toEqual([
      [expect.closeTo(0.6, 6), expect.closeTo(0.8, 6)],
      [0, 1],
    ]);
    x.dispose();
  });
});

describe('shuffle-BN key forward', () => {
  it('is a seeded permutation', () => {
    const p = permutation(10, 3);
    expect([...p].sort((a, b) => a - b)).toEqual([...Array(10).keys()]);
    expect(permutation(10, 3)).toEqual(p);
    expect(permutation(10, 4)).not.toEqual(p);
  });

  it('returns rows in the original order, with BN statistics from shuffled sub-batches', () => {
    // forward = per-sub-batch standardisation (what BN with bnSubBatches does), flattened to rows.
    const standardiseInHalves = (x: Tensor4D) =>
      tf.tidy(() => {
        const halves = tf.split(x.reshape([-1, 1]), 2, 0).map((h) => h.sub(h.mean()).div(h.sub(h.mean()).square().mean().sqrt()));
        return tf.concat(halves, 0) as Tensor2D;
      });
    const x = tf.tensor4d([1, 2, 3, 4, 5, 6, 7, 8], [8, 1, 1, 1]);
    const perm = permutation(8, 7);
    const out = shuffledKeyForward(standardiseInHalves, x, 7).dataSync();
    // Row i is standardised within the half of the shuffled batch that holds x[i].
    const halfOf = (i: number) => (perm.indexOf(i) < 4 ? perm.slice(0, 4) : perm.slice(4));
    for (let i = 0; i < 8; i++) {
      const members = halfOf(i).map((j) => j + 1);
      const mean = members.reduce((a, b) => a + b, 0) / 4;
      const std = Math.sqrt(members.reduce((a, b) => a + (b - mean) ** 2, 0) / 4);
      expect(out[i]).toBeCloseTo((i + 1 - mean) / std, 4);
    }
    x.dispose();
  });
});
