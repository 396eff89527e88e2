import { tf, type Tensor } from '@emseg/tf';
import { fusedBatchNormTraining } from './native-kernels.js';

type LayerVariable = InstanceType<typeof tf.LayerVariable>;
type Shape = (number | null)[];

/** Keyword arguments a model passes to every layer: `model.apply(x, { training, bnSubBatches })`. */
export interface BatchNormCallArgs {
  /** Normalise with batch statistics and update the running statistics. */
  training?: boolean;
  /**
   * Normalise the batch in this many equal sub-batches, each with its own statistics (MoCo's
   * shuffle-BN emulated on one device). The batch size must be divisible by it. Default 1.
   */
  bnSubBatches?: number;
}

export interface BatchNormArgs {
  name: string;
  /** Added to the variance, as torch's `eps`. Default 1e-5. */
  epsilon?: number;
  /**
   * Weight of the new batch statistics in the running average, **torch convention**:
   * `running = (1 - momentum) * running + momentum * batch`. Default 0.1.
   * (Keras/tfjs call `1 - momentum` their momentum.)
   */
  momentum?: number;
}

/**
 * Batch normalisation over the channel (last) axis with PyTorch semantics, so weights imported
 * from torchvision behave identically and frozen encoders stay frozen:
 *
 * - training (`training: true` and the layer is trainable): normalise with the batch mean and
 *   biased variance; update the running mean and the **unbiased** running variance as torch does.
 * - otherwise (inference, or the layer is frozen with `trainable = false`): normalise with the
 *   running statistics and never change them (Keras 2 semantics for a frozen BN).
 *
 * Weights `gamma`, `beta` (trainable), `moving_mean`, `moving_variance` (not trainable) have the
 * names and the serialised class name (`BatchNormalization`, momentum `1 - momentum`) of the stock
 * tfjs layer, so a saved model.json loads with plain `tf.loadLayersModel` and predicts the same.
 *
 * Shapes: [b, h, w, c] -> [b, h, w, c].
 */
export class BatchNorm extends tf.layers.Layer {
  static readonly className = 'BatchNormalization';
  readonly epsilon: number;
  readonly momentum: number;
  private gamma!: LayerVariable;
  private beta!: LayerVariable;
  private movingMean!: LayerVariable;
  private movingVariance!: LayerVariable;

  constructor(args: BatchNormArgs) {
    super({ name: args.name });
    this.epsilon = args.epsilon ?? 1e-5;
    this.momentum = args.momentum ?? 0.1;
  }

  override build(inputShape: Shape | Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
    const channels = shape[shape.length - 1];
    if (channels == null) throw new Error(`${this.name}: the channel dimension must be known, got shape ${JSON.stringify(shape)}`);
    const ones = tf.initializers.ones();
    const zeros = tf.initializers.zeros();
    this.gamma = this.addWeight('gamma', [channels], 'float32', ones, undefined, true);
    this.beta = this.addWeight('beta', [channels], 'float32', zeros, undefined, true);
    this.movingMean = this.addWeight('moving_mean', [channels], 'float32', zeros, undefined, false);
    this.movingVariance = this.addWeight('moving_variance', [channels], 'float32', ones, undefined, false);
    this.built = true;
  }

  override call(inputs: Tensor | Tensor[], kwargs: BatchNormCallArgs): Tensor {
    return tf.tidy(() => {
      const x = Array.isArray(inputs) ? inputs[0] : inputs;
      const gamma = this.gamma.read();
      const beta = this.beta.read();
      if (kwargs.training !== true || !this.trainable) {
        return tf.batchNorm(x, this.movingMean.read(), this.movingVariance.read(), beta, gamma, this.epsilon);
      }
      const groups = kwargs.bnSubBatches ?? 1;
      if (groups === 1) {
        const fused = fusedBatchNormTraining(x, gamma, beta, this.movingMean.read(), this.movingVariance.read(), this.epsilon, this.momentum);
        if (fused) {
          this.movingMean.write(fused.runningMean);
          this.movingVariance.write(fused.runningVariance);
          tf.dispose([fused.runningMean, fused.runningVariance]);
          return fused.y;
        }
        const { mean, variance } = tf.moments(x, [0, 1, 2]);
        this.updateRunningStats(mean, variance, x.size / x.shape[3]!);
        return tf.batchNorm(x, mean, variance, beta, gamma, this.epsilon);
      }
      return this.subBatchNorm(x, groups, gamma, beta);
    });
  }

  /** Sub-batch ("ghost") normalisation: each of `groups` slices of the batch uses its own statistics. */
  private subBatchNorm(x: Tensor, groups: number, gamma: Tensor, beta: Tensor): Tensor {
    const [b, h, w, c] = x.shape as number[];
    if (!Number.isInteger(groups) || groups < 1 || b % groups !== 0) {
      throw new Error(`${this.name}: bnSubBatches ${groups} must be a positive integer dividing the batch size ${b}`);
    }
    const grouped = x.reshape([groups, b / groups, h, w, c]);
    const { mean, variance } = tf.moments(grouped, [1, 2, 3], true);
    const normed = grouped.sub(mean).mul(variance.add(this.epsilon).rsqrt().mul(gamma)).add(beta);
    this.updateRunningStats(mean.mean([0, 1, 2, 3]), variance.mean([0, 1, 2, 3]), (b / groups) * h * w);
    return normed.reshape([b, h, w, c]);
  }

  /** torch: running = (1 - m) running + m batch, with the unbiased variance (n / (n - 1)). */
  private updateRunningStats(mean: Tensor, variance: Tensor, count: number): void {
    tf.tidy(() => {
      const m = this.momentum;
      const unbiased = count > 1 ? variance.mul(count / (count - 1)) : variance;
      this.movingMean.write(
        this.movingMean
          .read()
          .mul(1 - m)
          .add(mean.mul(m)),
      );
      this.movingVariance.write(
        this.movingVariance
          .read()
          .mul(1 - m)
          .add(unbiased.mul(m)),
      );
    });
  }

  override getConfig() {
    return {
      ...super.getConfig(),
      axis: -1,
      momentum: 1 - this.momentum,
      epsilon: this.epsilon,
      center: true,
      scale: true,
      betaInitializer: { className: 'Zeros', config: {} },
      gammaInitializer: { className: 'Ones', config: {} },
      movingMeanInitializer: { className: 'Zeros', config: {} },
      movingVarianceInitializer: { className: 'Ones', config: {} },
      betaRegularizer: null,
      gammaRegularizer: null,
      betaConstraint: null,
      gammaConstraint: null,
    };
  }
}

/** True for the batch-normalisation layers of emseg models. */
export function isBatchNorm(layer: unknown): layer is BatchNorm {
  return layer instanceof BatchNorm;
}
