import { describe, expect, it } from 'vitest';
import { tf, type Scalar } from '@emseg/tf';
import { Sgd, trainStep } from '@emseg/training';

describe('trainStep', () => {
  it('minimises a least-squares problem by name-keyed variables without leaking tensors', () => {
    const init = tf.zeros([3]);
    const vars = { 'layer/w': tf.variable(init, true) };
    init.dispose();
    const target = tf.tensor1d([1, -2, 0.5]);
    const opt = new Sgd(0.9, 0);
    const loss = () => vars['layer/w'].sub(target).square().sum() as Scalar;
    const first = trainStep(vars, loss, opt, 0.05);
    const before = tf.memory().numTensors;
    let last = first;
    for (let i = 0; i < 150; i++) last = trainStep(vars, loss, opt, 0.05);
    expect(tf.memory().numTensors).toBe(before);
    expect(first).toBeCloseTo(5.25, 5);
    expect(last).toBeLessThan(1e-3);
    tf.dispose([target, vars['layer/w']]);
    opt.dispose();
  });
});
