import { tf, type Scalar, type Tensor } from '@emseg/tf';
import type { NamedVariables, Optimizer } from './optimizers.js';

/**
 * One optimisation step: gradients of `loss()` w.r.t. `vars` (name-keyed), applied by `optimizer`
 * at rate `lr`. Everything the step allocates is freed; returns the loss value as a number (this
 * reads it back from the backend once, which also bounds how far the queue of ops can run ahead).
 *
 * @example
 * const loss = trainStep(trainableVariables(net.model), () => focalDiceLoss(net.forward(x, { training: true }), y), adam, 1e-3);
 */
export function trainStep(vars: NamedVariables, loss: () => Scalar, optimizer: Optimizer, lr: number): number {
  const names = Object.keys(vars);
  const list = names.map((n) => vars[n]);
  const { value, grads } = tf.variableGrads(loss, list);
  try {
    const named: Record<string, Tensor> = {};
    names.forEach((n, i) => {
      const g = grads[list[i].name];
      if (g) named[n] = g;
    });
    optimizer.apply(vars, named, lr);
    return value.dataSync()[0];
  } finally {
    tf.dispose([value, ...Object.values(grads)]);
  }
}
