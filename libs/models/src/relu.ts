import { tf, type Tensor } from '@emseg/tf';
import { relu } from './native-kernels.js';

/**
 * ReLU layer whose gradient is a single native kernel (see native-kernels.ts). Serialises as the
 * stock tfjs `ReLU` layer, so saved models load in plain TensorFlow.js.
 *
 * Shapes: any -> same.
 */
export class Relu extends tf.layers.Layer {
  static readonly className = 'ReLU';

  constructor(args: { name: string }) {
    super({ name: args.name });
  }

  override call(inputs: Tensor | Tensor[]): Tensor {
    return relu(Array.isArray(inputs) ? inputs[0] : inputs);
  }

  override getConfig() {
    return { ...super.getConfig(), maxValue: null };
  }
}
