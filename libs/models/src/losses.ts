import { tf, type Scalar, type Tensor } from '@emseg/tf';

/**
 * Segmentation losses on logits (pre-sigmoid), with targets in [0, 1] of the same shape
 * (1 = foreground, e.g. membrane). All are written in log-sigmoid form, so logits of +-1e4 give
 * finite values and gradients. Each returns a scalar (mean over all elements unless stated).
 */

export interface FocalOptions {
  /** Focusing exponent; 0 makes focal loss equal BCE. Default 2. */
  gamma?: number;
  /** Weight of the foreground class (1 - alpha for background), or null for none. Default null. */
  alpha?: number | null;
}

export interface DiceOptions {
  /** Added to numerator and denominator of the Dice coefficient. Default 1. */
  smooth?: number;
}

export interface FocalDiceOptions extends FocalOptions, DiceOptions {
  /** Weight of the Dice term: focal + lambda * dice. Default 1 (U-RISC paper). */
  lambda?: number;
}

/** Multi-class: softmax cross-entropy + lambda * the mean over classes of the soft Dice loss. */
export interface CrossEntropyDiceOptions extends DiceOptions {
  /** Weight of the Dice term. Default 1. */
  lambda?: number;
}

export type SegmentationLossSpec = ({ kind: 'focal-dice' } & FocalDiceOptions) | { kind: 'bce' } | ({ kind: 'ce-dice' } & CrossEntropyDiceOptions);
export type SegmentationLoss = (logits: Tensor, targets: Tensor) => Scalar;

function checkShapes(logits: Tensor, targets: Tensor): void {
  if (!tf.util.arraysEqual(logits.shape, targets.shape)) {
    throw new Error(`loss: logits shape [${logits.shape}] differs from targets shape [${targets.shape}]`);
  }
}

function checkRange(name: string, value: number, min: number, max = Infinity): void {
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new Error(`loss option ${name} must be a number in [${min}, ${max}], got ${value}`);
  }
}

/**
 * Element-wise BCE with logits: softplus(x) - x t = max(x, 0) - x t + log(1 + exp(-|x|)).
 *
 * @example bceWithLogits(tf.tensor([0]), tf.tensor([1])) // [log 2 = 0.6931]
 */
export function bceWithLogits(logits: Tensor, targets: Tensor): Tensor {
  checkShapes(logits, targets);
  return tf.tidy(() =>
    tf
      .relu(logits)
      .sub(logits.mul(targets))
      .add(tf.log1p(tf.exp(tf.abs(logits).neg()))),
  );
}

/** Mean binary cross-entropy of logits against targets. */
export function binaryCrossEntropy(logits: Tensor, targets: Tensor): Scalar {
  return tf.tidy(() => bceWithLogits(logits, targets).mean());
}

/**
 * Mean focal loss (Lin et al. 2017): alpha_t (1 - p_t)^gamma BCE, where 1 - p_t is the
 * probability of the wrong class: t sigmoid(-x) + (1 - t) sigmoid(x).
 *
 * @example focalLoss(tf.tensor([0]), tf.tensor([1])) // 0.5^2 log 2 = 0.1733
 */
export function focalLoss(logits: Tensor, targets: Tensor, options: FocalOptions = {}): Scalar {
  const gamma = options.gamma ?? 2;
  const alpha = options.alpha ?? null;
  checkRange('gamma', gamma, 0);
  if (alpha !== null) checkRange('alpha', alpha, 0, 1);
  return tf.tidy(() => {
    let loss = bceWithLogits(logits, targets);
    if (gamma !== 0) {
      const wrong = targets.mul(tf.sigmoid(logits.neg())).add(tf.onesLike(targets).sub(targets).mul(tf.sigmoid(logits)));
      loss = loss.mul(gamma === 2 ? wrong.square() : wrong.pow(gamma));
    }
    if (alpha !== null) loss = loss.mul(targets.mul(2 * alpha - 1).add(1 - alpha));
    return loss.mean();
  });
}

/**
 * Soft Dice loss over the whole batch (all elements as one set, as smp's binary DiceLoss):
 * 1 - (2 sum(p t) + smooth) / (sum(p) + sum(t) + smooth), with p = sigmoid(logits).
 *
 * @example diceLoss(tf.tensor([0, 0]), tf.tensor([1, 0])) // 1 - (2*0.5 + 1) / (1 + 1 + 1) = 1/3
 */
export function diceLoss(logits: Tensor, targets: Tensor, options: DiceOptions = {}): Scalar {
  const smooth = options.smooth ?? 1;
  checkRange('smooth', smooth, 0);
  checkShapes(logits, targets);
  return tf.tidy(() => {
    const p = tf.sigmoid(logits);
    const intersection = p.mul(targets).sum();
    const total = p.sum().add(targets.sum());
    const dice = intersection.mul(2).add(smooth).div(total.add(smooth).maximum(1e-7));
    return tf.scalar(1).sub(dice) as Scalar;
  });
}

/**
 * focal + lambda * dice, the U-RISC fine-tuning loss (gamma 2, lambda 1 by default).
 */
export function focalDiceLoss(logits: Tensor, targets: Tensor, options: FocalDiceOptions = {}): Scalar {
  const lambda = options.lambda ?? 1;
  checkRange('lambda', lambda, 0);
  return tf.tidy(() => {
    const focal = focalLoss(logits, targets, options);
    return lambda === 0 ? focal : focal.add(diceLoss(logits, targets, options).mul(lambda));
  });
}

/**
 * Mean softmax cross-entropy of logits [..., C] against one-hot (or soft) targets of the same
 * shape: -sum_c t_c log softmax(x)_c, averaged over pixels.
 *
 * @example softmaxCrossEntropy(tf.tensor2d([[0, 0]]), tf.tensor2d([[1, 0]])) // log 2 = 0.6931
 */
export function softmaxCrossEntropy(logits: Tensor, targets: Tensor): Scalar {
  checkShapes(logits, targets);
  return tf.tidy(() => tf.logSoftmax(logits).mul(targets).sum(-1).neg().mean() as Scalar);
}

/**
 * Multi-class soft Dice loss: per class c over the whole batch, 1 - (2 sum(p_c t_c) + smooth) /
 * (sum(p_c) + sum(t_c) + smooth) with p = softmax(logits) over the last axis; the mean over the
 * foreground classes 1..C-1 (class 0, the background, left out as nnU-Net's batch Dice does: it
 * is easy and large, and would dilute the small classes' gradients), or over all with
 * `includeBackground`.
 *
 * @example multiclassDiceLoss(tf.tensor2d([[0, 0]]), tf.tensor2d([[1, 0]])) // 1 - 1/1.5 = 0.3333 (class 1 only)
 */
export function multiclassDiceLoss(logits: Tensor, targets: Tensor, options: DiceOptions & { includeBackground?: boolean } = {}): Scalar {
  const smooth = options.smooth ?? 1;
  checkRange('smooth', smooth, 0);
  checkShapes(logits, targets);
  const classes = logits.shape[logits.rank - 1];
  if (classes < 2) throw new Error(`multi-class Dice needs at least 2 classes on the last axis, got shape [${logits.shape}]`);
  return tf.tidy(() => {
    const p = tf.softmax(logits).reshape([-1, classes]);
    const t = targets.reshape([-1, classes]);
    const intersection = p.mul(t).sum(0);
    const total = p.sum(0).add(t.sum(0));
    let dice = intersection.mul(2).add(smooth).div(total.add(smooth).maximum(1e-7));
    if (!options.includeBackground) dice = dice.slice([1], [classes - 1]);
    return tf.scalar(1).sub(dice.mean()) as Scalar;
  });
}

/** Softmax cross-entropy + lambda * multi-class Dice, the multi-class fine-tuning loss (lambda 1 by default). */
export function crossEntropyDiceLoss(logits: Tensor, targets: Tensor, options: CrossEntropyDiceOptions = {}): Scalar {
  const lambda = options.lambda ?? 1;
  checkRange('lambda', lambda, 0);
  return tf.tidy(() => {
    const ce = softmaxCrossEntropy(logits, targets);
    return lambda === 0 ? ce : ce.add(multiclassDiceLoss(logits, targets, options).mul(lambda));
  });
}

/**
 * The loss a config names, as a function of (logits, targets).
 *
 * @example segmentationLoss({ kind: 'focal-dice', alpha: 0.25 })(logits, targets)
 */
export function segmentationLoss(spec: SegmentationLossSpec): SegmentationLoss {
  switch (spec.kind) {
    case 'bce':
      return binaryCrossEntropy;
    case 'focal-dice': {
      const options: FocalDiceOptions = { ...spec };
      // Validate now, not at the first training step.
      if (options.gamma !== undefined) checkRange('gamma', options.gamma, 0);
      if (options.alpha != null) checkRange('alpha', options.alpha, 0, 1);
      if (options.lambda !== undefined) checkRange('lambda', options.lambda, 0);
      if (options.smooth !== undefined) checkRange('smooth', options.smooth, 0);
      return (logits, targets) => focalDiceLoss(logits, targets, options);
    }
    case 'ce-dice': {
      const options: CrossEntropyDiceOptions = { ...spec };
      if (options.lambda !== undefined) checkRange('lambda', options.lambda, 0);
      if (options.smooth !== undefined) checkRange('smooth', options.smooth, 0);
      return (logits, targets) => crossEntropyDiceLoss(logits, targets, options);
    }
    default:
      throw new Error(`unknown loss kind "${(spec as { kind: unknown }).kind}": expected focal-dice, bce or ce-dice`);
  }
}
