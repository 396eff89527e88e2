import { tf, type LayersModel, type SymbolicTensor } from '@emseg/tf';

/**
 * MoCo v2's projection head: Linear(in, hidden) -> ReLU -> Linear(hidden, dim), no BN
 * (Chen et al. 2020; CEM500K: 2048 -> 2048 -> 128). Layers `head_fc1`, `head_fc2`.
 * Shapes: [N, inFeatures] -> [N, dim].
 */
export function projectionHead({ inFeatures, hidden, dim, seed }: { inFeatures: number; hidden: number; dim: number; seed: number }): LayersModel {
  const input = tf.input({ shape: [inFeatures], name: 'head_input' });
  // torch.nn.Linear's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases.
  const init = (fanIn: number, s: number) => tf.initializers.randomUniform({ minval: -1 / Math.sqrt(fanIn), maxval: 1 / Math.sqrt(fanIn), seed: s });
  const h = tf.layers
    .dense({ units: hidden, activation: 'relu', name: 'head_fc1', kernelInitializer: init(inFeatures, seed), biasInitializer: init(inFeatures, seed + 1) })
    .apply(input) as SymbolicTensor;
  const out = tf.layers.dense({ units: dim, name: 'head_fc2', kernelInitializer: init(hidden, seed + 2), biasInitializer: init(hidden, seed + 3) }).apply(h) as SymbolicTensor;
  return tf.model({ inputs: input, outputs: out, name: 'projection_head' });
}
