import { describe, expect, it } from 'vitest';
import { tf } from '@emseg/tf';
import { Adam, Sgd, type NamedVariables } from '@emseg/training';

const vars = (values: number[]): NamedVariables => {
  const init = tf.tensor1d(values);
  const w = tf.variable(init, true, `w${Math.random()}`);
  init.dispose();
  return { w };
};

describe('Sgd', () => {
  it('matches torch.optim.SGD(momentum=0.9, weight_decay=0.1) by hand', () => {
    const v = vars([1, -2]);
    const opt = new Sgd(0.9, 0.1);
    const g = tf.tensor1d([0.5, 0.5]);
    opt.apply(v, { w: g }, 0.1); // d = g + 0.1 w = [0.6, 0.3]; buf = d; w = w - 0.1 buf = [0.94, -2.03]
    expect(Array.from(v.w.dataSync())).toEqual([expect.closeTo(0.94, 6), expect.closeTo(-2.03, 6)]);
    opt.apply(v, { w: g }, 0.1); // d = [0.594, 0.297]; buf = 0.9*[0.6,0.3] + d = [1.134, 0.567]
    expect(Array.from(v.w.dataSync())).toEqual([expect.closeTo(0.94 - 0.1134, 6), expect.closeTo(-2.03 - 0.0567, 6)]);
    expect(opt.iterations).toBe(2);
    tf.dispose([g, v.w]);
    opt.dispose();
  });
});

describe('Adam', () => {
  it('first step moves each weight by lr in the gradient sign direction (bias-corrected)', () => {
    const v = vars([1, 1]);
    const opt = new Adam();
    const g = tf.tensor1d([3, -0.001]);
    opt.apply(v, { w: g }, 0.01);
    expect(Array.from(v.w.dataSync())).toEqual([expect.closeTo(0.99, 5), expect.closeTo(1.01, 4)]);
    tf.dispose([g, v.w]);
    opt.dispose();
  });

  it('AdamW decays weights decoupled from the gradient', () => {
    const v = vars([2]);
    const opt = new Adam(0.9, 0.999, 1e-8, 0.5);
    const g = tf.tensor1d([0]);
    opt.apply(v, { w: g }, 0.1); // m = v = 0 -> update = 0 + 0.5 * 2 -> w = 2 - 0.1
    expect(v.w.dataSync()[0]).toBeCloseTo(1.9, 6);
    tf.dispose([g, v.w]);
    opt.dispose();
  });

  it('restoring state continues exactly like an uninterrupted run, without leaking tensors', () => {
    const run = (restoreAfter: number | null) => {
      const v = vars([0.3, -0.7, 1.1]);
      let opt = new Adam();
      for (let i = 0; i < 6; i++) {
        if (i === restoreAfter) {
          const state = opt.state();
          const copy = { iterations: state.iterations, slots: Object.fromEntries(Object.entries(state.slots).map(([k, t]) => [k, t.clone()])) };
          opt.dispose();
          opt = new Adam();
          opt.restore(copy);
          tf.dispose(Object.values(copy.slots));
        }
        const g = tf.tidy(() => v.w.mul(v.w).add(0.1));
        opt.apply(v, { w: g }, 0.05);
        g.dispose();
      }
      const out = Array.from(v.w.dataSync());
      v.w.dispose();
      opt.dispose();
      return out;
    };
    const before = tf.memory().numTensors;
    expect(run(3)).toEqual(run(null));
    expect(tf.memory().numTensors).toBe(before);
  });
});
