import { BatchNorm, Relu } from '@emseg/models';
import { tf, type LayersModel, type SymbolicTensor } from '@emseg/tf';

// torch.nn.Linear's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases.
const linearInit = (fanIn: number, s: number) => tf.initializers.randomUniform({ minval: -1 / Math.sqrt(fanIn), maxval: 1 / Math.sqrt(fanIn), seed: s });

/**
 * MoCo v2's projection head: Linear(in, hidden) -> ReLU -> Linear(hidden, dim), no BN
 * (Chen et al. 2020; CEM500K: 2048 -> 2048 -> 128). Layers `head_fc1`, `head_fc2`.
 * Shapes: [N, inFeatures] -> [N, dim].
 */
export function projectionHead({ inFeatures, hidden, dim, seed }: { inFeatures: number; hidden: number; dim: number; seed: number }): LayersModel {
  const input = tf.input({ shape: [inFeatures], name: 'head_input' });
  const h = tf.layers
    .dense({
      units: hidden,
      activation: 'relu',
      name: 'head_fc1',
      kernelInitializer: linearInit(inFeatures, seed),
      biasInitializer: linearInit(inFeatures, seed + 1),
    })
    .apply(input) as SymbolicTensor;
  const out = tf.layers
    .dense({ units: dim, name: 'head_fc2', kernelInitializer: linearInit(hidden, seed + 2), biasInitializer: linearInit(hidden, seed + 3) })
    .apply(h) as SymbolicTensor;
  return tf.model({ inputs: input, outputs: out, name: 'projection_head' });
}

/**
 * BYOL's projector and predictor (Grill et al. 2020; solo-learn `byol.py`):
 * Linear(in, hidden) -> BatchNorm1d(hidden) -> ReLU -> Linear(hidden, dim). The BN is emseg's
 * torch-semantics `BatchNorm` (batch statistics under `apply(x, { training: true })`, running ones
 * otherwise) over a [N, 1, 1, hidden] view of the activations. Layers `<name>_fc1`, `<name>_bn1`,
 * `<name>_fc2`. Shapes: [N, inFeatures] -> [N, dim].
 */
export function bnMlpHead({
  name,
  inFeatures,
  hidden,
  dim,
  seed,
}: {
  name: string;
  inFeatures: number;
  hidden: number;
  dim: number;
  seed: number;
}): LayersModel {
  const input = tf.input({ shape: [inFeatures], name: `${name}_input` });
  let h = tf.layers
    .dense({ units: hidden, name: `${name}_fc1`, kernelInitializer: linearInit(inFeatures, seed), biasInitializer: linearInit(inFeatures, seed + 1) })
    .apply(input) as SymbolicTensor;
  h = tf.layers.reshape({ targetShape: [1, 1, hidden], name: `${name}_to_map` }).apply(h) as SymbolicTensor;
  h = new BatchNorm({ name: `${name}_bn1` }).apply(h) as SymbolicTensor;
  h = tf.layers.reshape({ targetShape: [hidden], name: `${name}_to_rows` }).apply(h) as SymbolicTensor;
  h = new Relu({ name: `${name}_relu1` }).apply(h) as SymbolicTensor;
  const out = tf.layers
    .dense({ units: dim, name: `${name}_fc2`, kernelInitializer: linearInit(hidden, seed + 2), biasInitializer: linearInit(hidden, seed + 3) })
    .apply(h) as SymbolicTensor;
  return tf.model({ inputs: input, outputs: out, name });
}
