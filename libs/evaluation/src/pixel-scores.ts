/**
 * The clean pixel protocol: binary masks in, confusion counts and the usual ratios out, with
 * membrane as the positive class. Empty cases follow the U-RISC script's conventions so the two
 * protocols agree on them: nothing predicted but something true gives precision 1, recall 0;
 * something predicted but nothing true gives precision 0, recall 1; nothing on either side gives
 * precision = recall = F1 = IoU = 1.
 */
import { assertImage, assertSameSize, EvaluationInputError, type Mask, type ProbabilityMap } from './image.js';

/** Confusion counts and derived scores of a binary prediction. */
export interface PixelScores {
  truePositives: number;
  falsePositives: number;
  falseNegatives: number;
  trueNegatives: number;
  precision: number;
  recall: number;
  f1: number;
  /** Intersection over union (Jaccard index) of the positive class. */
  iou: number;
  /** Fraction of pixels classified wrongly, (FP + FN) / N. */
  pixelError: number;
}

/** Scores from confusion counts, with the empty-case conventions above. */
export function scoresFromCounts(tp: number, fp: number, fn: number, tn: number): PixelScores {
  const predicted = tp + fp;
  const actual = tp + fn;
  let precision: number;
  let recall: number;
  if (predicted === 0 && actual === 0) {
    precision = 1;
    recall = 1;
  } else if (predicted === 0) {
    precision = 1;
    recall = 0;
  } else if (actual === 0) {
    precision = 0;
    recall = 1;
  } else {
    precision = tp / predicted;
    recall = tp / actual;
  }
  const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
  const union = tp + fp + fn;
  const iou = union === 0 ? 1 : tp / union;
  const n = tp + fp + fn + tn;
  return {
    truePositives: tp,
    falsePositives: fp,
    falseNegatives: fn,
    trueNegatives: tn,
    precision,
    recall,
    f1,
    iou,
    pixelError: n === 0 ? 0 : (fp + fn) / n,
  };
}

/**
 * Pixel scores of a predicted membrane mask against the true membrane mask (nonzero = membrane).
 * @example pixelScores(mask(2, 1, [1, 1]), mask(2, 1, [1, 0])) // precision 0.5, recall 1, iou 0.5
 */
export function pixelScores(predictedMembrane: Mask, trueMembrane: Mask): PixelScores {
  assertSameSize(predictedMembrane, trueMembrane, 'predicted membrane mask', 'true membrane mask');
  const p = predictedMembrane.data;
  const g = trueMembrane.data;
  let tp = 0;
  let fp = 0;
  let fn = 0;
  for (let i = 0; i < p.length; i++) {
    const pi = p[i] !== 0;
    const gi = g[i] !== 0;
    if (pi) {
      if (gi) tp++;
      else fp++;
    } else if (gi) fn++;
  }
  return scoresFromCounts(tp, fp, fn, p.length - tp - fp - fn);
}

/**
 * Binarize a membrane probability map: membrane where `p >= threshold`.
 * @example thresholdMap(prob, 0.5)
 */
export function thresholdMap(membraneProbability: ProbabilityMap, threshold: number): Mask {
  assertImage(membraneProbability, 'membrane probability map');
  const src = membraneProbability.data;
  const out = new Uint8Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i] >= threshold ? 1 : 0;
  return { width: membraneProbability.width, height: membraneProbability.height, data: out };
}

/** Pixel scores of `membraneProbability >= threshold` against the true membrane mask. */
export function thresholdScores(membraneProbability: ProbabilityMap, trueMembrane: Mask, threshold: number): PixelScores {
  return pixelScores(thresholdMap(membraneProbability, threshold), trueMembrane);
}

/** One point of a threshold sweep. */
export interface ThresholdPoint extends PixelScores {
  threshold: number;
}

export interface ThresholdSweep {
  /** The point with the highest F1 (the lowest such threshold on ties). */
  best: ThresholdPoint;
  /** Every threshold in ascending order. */
  curve: ThresholdPoint[];
}

/** 0.05, 0.10, ..., 0.95: the default sweep. */
export function defaultThresholds(): number[] {
  return Array.from({ length: 19 }, (_, k) => (k + 1) / 20);
}

/**
 * F1 (and the other pixel scores) at every threshold of a sweep, in one pass over the pixels:
 * each pixel is binned by how many thresholds it reaches (`p >= t`), and cumulative counts give
 * every threshold's confusion matrix exactly. O(N log T).
 * @example bestThresholdF1(prob, gt).best.threshold
 */
export function bestThresholdF1(membraneProbability: ProbabilityMap, trueMembrane: Mask, thresholds: readonly number[] = defaultThresholds()): ThresholdSweep {
  assertSameSize(membraneProbability, trueMembrane, 'membrane probability map', 'true membrane mask');
  if (thresholds.length === 0) throw new EvaluationInputError('bestThresholdF1: thresholds must not be empty');
  for (const t of thresholds) {
    if (!Number.isFinite(t)) throw new EvaluationInputError(`bestThresholdF1: threshold ${t} is not a finite number`);
  }
  const ts = [...thresholds].sort((a, b) => a - b);
  const T = ts.length;
  // reachedPos[k] / reachedNeg[k]: pixels (true membrane / not) that reach exactly the first k thresholds.
  const reachedPos = new Float64Array(T + 1);
  const reachedNeg = new Float64Array(T + 1);
  const p = membraneProbability.data;
  const g = trueMembrane.data;
  for (let i = 0; i < p.length; i++) {
    const v = p[i];
    // number of thresholds t with t <= v (upper bound by binary search)
    let lo = 0;
    let hi = T;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (ts[mid] <= v) lo = mid + 1;
      else hi = mid;
    }
    if (g[i] !== 0) reachedPos[lo]++;
    else reachedNeg[lo]++;
  }
  let totalPos = 0;
  let totalNeg = 0;
  for (let k = 0; k <= T; k++) {
    totalPos += reachedPos[k];
    totalNeg += reachedNeg[k];
  }
  // Predicted positive at threshold j: pixels reaching more than j thresholds.
  const curve: ThresholdPoint[] = new Array(T);
  let tp = 0;
  let fp = 0;
  for (let j = T - 1; j >= 0; j--) {
    tp += reachedPos[j + 1];
    fp += reachedNeg[j + 1];
    curve[j] = { threshold: ts[j], ...scoresFromCounts(tp, fp, totalPos - tp, totalNeg - fp) };
  }
  let best = curve[0];
  for (const point of curve) if (point.f1 > best.f1) best = point;
  return { best, curve };
}
