import { tf, type LayersModel, type NamedTensorMap, type Variable } from '@emseg/tf';

type LayerVariable = InstanceType<typeof tf.LayerVariable>;

function byName(weights: LayerVariable[]): Record<string, Variable> {
  const named: Record<string, Variable> = {};
  for (const w of weights) {
    if (w.originalName in named) throw new Error(`two weights are named ${w.originalName}; layer names must be unique`);
    named[w.originalName] = w.read() as Variable;
  }
  return named;
}

/**
 * The variables that train now (respecting freezing), by weight name (`<layer>/<weight>`, e.g.
 * `layer1_0_conv1/kernel`, `layer1_0_bn1/gamma`), for name-keyed optimizers and checkpoints.
 */
export function trainableVariables(model: LayersModel): Record<string, Variable> {
  return byName(model.trainableWeights);
}

/** Every weight of the model by name, including BN running statistics (`.../moving_mean`). */
export function modelVariables(model: LayersModel): Record<string, Variable> {
  return byName(model.weights);
}

/** "a, b, c (and 4 more)" */
function listSome(names: string[], max = 5): string {
  const shown = names.slice(0, max).join(', ');
  return names.length > max ? `${shown} (and ${names.length - max} more)` : shown;
}

/**
 * Writes `weights` into the model's variables by name. Strict: every model weight must be
 * present with the same shape, and no other weight may be given; the error names `source` and the
 * offending weights. The tensors are copied; the caller still owns (and disposes) `weights`.
 */
export function assignWeights(model: LayersModel, weights: NamedTensorMap, source: string): void {
  const targets = modelVariables(model);
  const missing = Object.keys(targets).filter((name) => !(name in weights));
  const unexpected = Object.keys(weights).filter((name) => !(name in targets));
  if (missing.length > 0 || unexpected.length > 0) {
    const parts = [];
    if (missing.length > 0) parts.push(`missing ${missing.length} weight(s) the ${model.name} model needs: ${listSome(missing)}`);
    if (unexpected.length > 0) parts.push(`${unexpected.length} unexpected weight(s): ${listSome(unexpected)}`);
    throw new Error(`${source}: ${parts.join('; ')}`);
  }
  for (const [name, variable] of Object.entries(targets)) {
    const value = weights[name];
    if (!tf.util.arraysEqual(value.shape, variable.shape)) {
      throw new Error(`${source}: weight ${name} has shape [${value.shape}] but the model expects [${variable.shape}]`);
    }
    if (value.dtype !== variable.dtype) {
      throw new Error(`${source}: weight ${name} has dtype ${value.dtype} but the model expects ${variable.dtype}`);
    }
  }
  for (const [name, variable] of Object.entries(targets)) variable.assign(weights[name]);
}

/**
 * Number of parameters as PyTorch counts them (`sum(p.numel() for p in model.parameters())`):
 * every weight except BN running statistics, frozen or not.
 */
export function parameterCount(model: LayersModel): number {
  return model.weights
    .filter((w) => !/\/moving_(mean|variance)$/.test(w.originalName))
    .reduce((sum, w) => sum + w.shape.reduce((a: number, b) => a * (b ?? 1), 1), 0);
}
