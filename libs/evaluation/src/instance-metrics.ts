/**
 * Instance segmentation scores of 2D and 3D instance label images (0 = background, every other
 * id one instance), the numbers empanada (MitoNet) reports: panoptic quality with its two factors
 * and the detection F1 at IoU 0.5 and 0.75.
 *
 * Definitions (Kirillov et al. 2019, "Panoptic Segmentation", section 4.1, as COCO's panopticapi
 * computes them for one class):
 * - IoU(g, p) = |g ∩ p| / |g ∪ p| for a true instance g and a predicted instance p, in voxels.
 * - A true positive at threshold t is a pair with IoU(g, p) > t (strictly). For t >= 0.5 such
 *   pairs form a unique matching (Kirillov's theorem 1): IoU > 0.5 means |g ∩ p| > |g ∪ p| / 2,
 *   so p covers more than half of g, and the disjoint predicted instances cannot do that twice
 *   (the same holds the other way round). No assignment step is needed, so thresholds below 0.5
 *   are rejected.
 * - FP = predicted instances left unmatched, FN = true instances left unmatched.
 * - SQ = (sum of the IoUs of the matches) / TP, RQ = TP / (TP + FP/2 + FN/2),
 *   PQ = (sum of the IoUs) / (TP + FP/2 + FN/2) = SQ * RQ, all at t = 0.5.
 * - Detection at threshold t: precision TP / (TP + FP), recall TP / (TP + FN),
 *   F1 = TP / (TP + FP/2 + FN/2) (so F1 at 0.5 equals RQ).
 *
 * Empty cases follow empanada's conventions (empanada/evaluation/instance_metrics.py and the PQ
 * of empanada/metrics.py): with no instance on either side PQ = SQ = RQ = precision = recall =
 * F1 = 1; precision is 1 when nothing is predicted and recall is 1 when nothing is true; SQ is 0
 * when there are instances but no match.
 *
 * Empanada matches with a maximum-IoU assignment (scipy's linear_sum_assignment) and keeps the
 * pairs with IoU >= t. That agrees with the unique IoU > t matching except for pairs at exactly
 * IoU = t, and in rare layouts where the assignment trades an IoU > 0.5 pair for two weaker
 * ones; the fixture generator (test/fixtures/make_instance_fixtures.py) records one such layout.
 */
import { forEachPairRun } from './pair-runs.js';
import { EvaluationInputError } from './image.js';

/** Id storage accepted for instance label images. */
export type InstanceIdArray = Uint8Array | Uint16Array | Uint32Array | Int32Array;

/**
 * An instance label image (2D) or volume (3D): ids row-major, voxel (x, y, z) at
 * `data[(z * height + y) * width + x]`, `data.length === width * height * depth`. A 2D image has
 * no `depth` (or depth 1), so a `LabelImage` is accepted as it is.
 */
export interface InstanceLabels<T extends InstanceIdArray = InstanceIdArray> {
  readonly width: number;
  readonly height: number;
  /** Number of slices; absent or 1 for a 2D image. */
  readonly depth?: number;
  readonly data: T;
}

/** Throw a clear error unless `labels` has positive integer dimensions matching its data length. */
export function assertInstanceLabels(labels: InstanceLabels, what: string): void {
  const { width, height, data } = labels;
  const depth = labels.depth ?? 1;
  if (![width, height, depth].every((d) => Number.isInteger(d) && d >= 1)) {
    throw new EvaluationInputError(`${what}: width, height and depth must be positive integers, got ${width} x ${height} x ${depth}`);
  }
  const n = width * height * depth;
  if (data.length !== n) {
    throw new EvaluationInputError(`${what}: data has ${data.length} values, expected width * height * depth = ${width} * ${height} * ${depth} = ${n}`);
  }
}

/**
 * Throw a clear error unless `a` and `b` are well-formed label images of the same shape.
 * @example assertSameShape(pred, truth, 'predicted instance labels', 'true instance labels')
 */
export function assertSameShape(a: InstanceLabels, b: InstanceLabels, nameA: string, nameB: string): void {
  assertInstanceLabels(a, nameA);
  assertInstanceLabels(b, nameB);
  const da = a.depth ?? 1;
  const db = b.depth ?? 1;
  if (a.width !== b.width || a.height !== b.height || da !== db) {
    throw new EvaluationInputError(
      `size mismatch: ${nameA} (${a.width} x ${a.height} x ${da}) and ${nameB} (${b.width} x ${b.height} x ${db}) differ (width x height x depth)`,
    );
  }
}

/** One pair of a true and a predicted instance that share at least one voxel. */
export interface InstanceOverlap {
  trueId: number;
  predictedId: number;
  /** |g ∩ p| in voxels. */
  intersection: number;
  /** |g ∩ p| / |g ∪ p|. */
  iou: number;
}

/** The intersection table of two instance label images. */
export interface InstanceOverlaps {
  /** Voxels of each true instance (id > 0), in ascending id order. */
  trueSizes: ReadonlyMap<number, number>;
  /** Voxels of each predicted instance (id > 0), in ascending id order. */
  predictedSizes: ReadonlyMap<number, number>;
  /** Every overlapping pair of foreground ids, sorted by true id, then predicted id. */
  overlaps: InstanceOverlap[];
}

function badId(labels: InstanceLabels, what: string, i: number, value: number): EvaluationInputError {
  const { width, height } = labels;
  const x = i % width;
  const y = Math.floor(i / width) % height;
  const z = Math.floor(i / (width * height));
  const at = (labels.depth ?? 1) > 1 ? `x ${x}, y ${y}, z ${z}` : `x ${x}, y ${y}`;
  return new EvaluationInputError(`${what} must hold non-negative integer ids (0 = background); value ${i} (${at}) is ${value}`);
}

function sortedById(sizes: Map<number, number>): Map<number, number> {
  return new Map([...sizes.entries()].sort((a, b) => a[0] - b[0]));
}

/**
 * Build the intersection table in one pass over the voxels, keyed by (true id, predicted id), with
 * no per-instance masks. Runs of equal (true, predicted) pairs along the rows are counted first and
 * added to the table once, so the cost is one comparison per voxel plus one table update per run.
 */
export function instanceOverlaps(truth: InstanceLabels, prediction: InstanceLabels): InstanceOverlaps {
  assertSameShape(truth, prediction, 'true instance labels', 'predicted instance labels');
  const t = truth.data;
  const p = prediction.data;
  const trueSizes = new Map<number, number>();
  const predictedSizes = new Map<number, number>();
  const table = new Map<number, Map<number, number>>();
  const add = (a: number, b: number, n: number) => {
    if (a !== 0) trueSizes.set(a, (trueSizes.get(a) ?? 0) + n);
    if (b !== 0) predictedSizes.set(b, (predictedSizes.get(b) ?? 0) + n);
    if (a !== 0 && b !== 0) {
      let row = table.get(a);
      if (row === undefined) table.set(a, (row = new Map()));
      row.set(b, (row.get(b) ?? 0) + n);
    }
  };
  const check = (i: number) => {
    if (!Number.isInteger(t[i]) || t[i] < 0) throw badId(truth, 'true instance labels', i, t[i]);
    if (!Number.isInteger(p[i]) || p[i] < 0) throw badId(prediction, 'predicted instance labels', i, p[i]);
  };
  forEachPairRun(t, p, check, add);

  const overlaps: InstanceOverlap[] = [];
  for (const a of [...table.keys()].sort((x, y) => x - y)) {
    const row = table.get(a)!;
    const sa = trueSizes.get(a)!;
    for (const b of [...row.keys()].sort((x, y) => x - y)) {
      const intersection = row.get(b)!;
      overlaps.push({ trueId: a, predictedId: b, intersection, iou: intersection / (sa + predictedSizes.get(b)! - intersection) });
    }
  }
  return { trueSizes: sortedById(trueSizes), predictedSizes: sortedById(predictedSizes), overlaps };
}

function assertThreshold(threshold: number): void {
  if (!(threshold >= 0.5 && threshold <= 1)) {
    throw new EvaluationInputError(`IoU threshold must be in [0.5, 1] (matching by IoU > t is unique only from 0.5 up), got ${threshold}`);
  }
}

/**
 * The matched pairs at IoU threshold t: every overlap with IoU > t (strictly), unique for
 * t in [0.5, 1]. Sorted by true id.
 */
export function matchInstances(table: InstanceOverlaps, threshold = 0.5): InstanceOverlap[] {
  assertThreshold(threshold);
  return table.overlaps.filter((o) => o.iou > threshold);
}

/** Detection counts and scores at one IoU threshold. */
export interface DetectionScores {
  threshold: number;
  truePositives: number;
  falsePositives: number;
  falseNegatives: number;
  /** TP / (TP + FP); 1 when nothing is predicted. */
  precision: number;
  /** TP / (TP + FN); 1 when nothing is true. */
  recall: number;
  /** TP / (TP + FP/2 + FN/2); 1 when there is no instance on either side. */
  f1: number;
}

/** Detection scores at IoU threshold t (matches with IoU > t), with empanada's empty-case values. */
export function detectionScores(table: InstanceOverlaps, threshold: number): DetectionScores {
  const tp = matchInstances(table, threshold).length;
  const fp = table.predictedSizes.size - tp;
  const fn = table.trueSizes.size - tp;
  return {
    threshold,
    truePositives: tp,
    falsePositives: fp,
    falseNegatives: fn,
    precision: tp + fp === 0 ? 1 : tp / (tp + fp),
    recall: tp + fn === 0 ? 1 : tp / (tp + fn),
    f1: tp + fp + fn === 0 ? 1 : tp / (tp + 0.5 * fp + 0.5 * fn),
  };
}

/** Panoptic quality of one class and its factors (Kirillov et al. 2019), matching at IoU > 0.5. */
export interface PanopticScores {
  /** PQ = sum IoU / (TP + FP/2 + FN/2) = SQ * RQ. */
  pq: number;
  /** SQ = mean IoU of the matches (0 when none, 1 when there is no instance at all). */
  sq: number;
  /** RQ = TP / (TP + FP/2 + FN/2), the F1 at IoU 0.5. */
  rq: number;
  truePositives: number;
  falsePositives: number;
  falseNegatives: number;
  /** The IoU > 0.5 matches, sorted by true id. */
  matches: InstanceOverlap[];
}

/** PQ, SQ and RQ from an intersection table. */
export function panopticQuality(table: InstanceOverlaps): PanopticScores {
  const matches = matchInstances(table, 0.5);
  const tp = matches.length;
  const fp = table.predictedSizes.size - tp;
  const fn = table.trueSizes.size - tp;
  const base = { truePositives: tp, falsePositives: fp, falseNegatives: fn, matches };
  if (tp + fp + fn === 0) return { pq: 1, sq: 1, rq: 1, ...base };
  let iouSum = 0;
  for (const m of matches) iouSum += m.iou;
  const denominator = tp + 0.5 * fp + 0.5 * fn;
  return { pq: iouSum / denominator, sq: tp === 0 ? 0 : iouSum / tp, rq: tp / denominator, ...base };
}

export interface InstanceScoreOptions {
  /** IoU thresholds of the `detection` list, each in [0.5, 1]; default [0.5, 0.75]. */
  thresholds?: readonly number[];
}

/** Everything empanada reports for one image or volume. */
export interface InstanceScores extends PanopticScores {
  trueInstances: number;
  predictedInstances: number;
  /** F1 at IoU > 0.5 (empanada's F1@50; equals `rq`). */
  f1At50: number;
  /** F1 at IoU > 0.75 (empanada's F1@75). */
  f1At75: number;
  /** Detection scores at each requested threshold, in the order given. */
  detection: DetectionScores[];
}

/**
 * PQ, SQ, RQ, TP/FP/FN and F1@0.5 / F1@0.75 of a predicted instance segmentation against the true
 * one, 2D or 3D.
 * @example instanceScores({ width: 2, height: 1, data: Uint16Array.of(1, 0) }, { width: 2, height: 1, data: Int32Array.of(7, 0) }).pq // 1
 */
export function instanceScores(truth: InstanceLabels, prediction: InstanceLabels, options: InstanceScoreOptions = {}): InstanceScores {
  const thresholds = options.thresholds ?? [0.5, 0.75];
  thresholds.forEach(assertThreshold);
  const table = instanceOverlaps(truth, prediction);
  return {
    ...panopticQuality(table),
    trueInstances: table.trueSizes.size,
    predictedInstances: table.predictedSizes.size,
    f1At50: detectionScores(table, 0.5).f1,
    f1At75: detectionScores(table, 0.75).f1,
    detection: thresholds.map((th) => detectionScores(table, th)),
  };
}
