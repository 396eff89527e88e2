/**
 * Metrics between two label images (segment ids per pixel), with the definitions of scikit-image's
 * `skimage.metrics.adapted_rand_error` (SNEMI3D, pair-count normalization) and
 * `skimage.metrics.variation_of_information` (conditional entropies in bits). Pixels whose
 * ground-truth label is in `ignoreLabels` are left out; the test image's labels are all ordinary
 * segments (label 0 included). For the ISBI 2012 variants use `isbiScores`.
 */
import { assertSameSize, EvaluationInputError, type Image2D } from './image.js';

/** Integer label image. */
export type LabelImage = Image2D<Uint8Array | Uint16Array | Int32Array>;

interface LabelTable {
  n: number;
  cells: Float64Array;
  rows: Float64Array;
  cols: Float64Array;
}

function labelTable(trueLabels: LabelImage, testLabels: LabelImage, ignore: readonly number[]): LabelTable {
  assertSameSize(trueLabels, testLabels, 'true label image', 'test label image');
  const t = trueLabels.data;
  const s = testLabels.data;
  const ignored = new Set(ignore);
  const cells = new Map<string, number>();
  const rows = new Map<number, number>();
  const cols = new Map<number, number>();
  let n = 0;
  for (let i = 0; i < t.length; i++) {
    const a = t[i];
    if (ignored.has(a)) continue;
    const b = s[i];
    if (!Number.isInteger(a) || !Number.isInteger(b)) {
      throw new EvaluationInputError(`label images must hold integers; pixel ${i} has ${a} (true) and ${b} (test)`);
    }
    const key = `${a},${b}`;
    cells.set(key, (cells.get(key) ?? 0) + 1);
    rows.set(a, (rows.get(a) ?? 0) + 1);
    cols.set(b, (cols.get(b) ?? 0) + 1);
    n++;
  }
  return {
    n,
    cells: Float64Array.from(cells.values()),
    rows: Float64Array.from(rows.values()),
    cols: Float64Array.from(cols.values()),
  };
}

export interface AdaptedRandResult {
  /** 1 - F-score of the Rand precision and recall. */
  error: number;
  precision: number;
  recall: number;
}

/**
 * `skimage.metrics.adapted_rand_error(true, test, ignore_labels=ignoreLabels)` with a_i the true
 * and b_j the test segment sizes: precision = (sum c_ij^2 - n) / (sum b_j^2 - n) (pairs joined in
 * the test image that are right), recall = (sum c_ij^2 - n) / (sum a_i^2 - n), error = 1 - 2PR / (P + R).
 * scikit-image 0.26 computes the same error but returns precision and recall swapped relative to
 * its own docstring; these follow the docstring.
 */
export function adaptedRandError(trueLabels: LabelImage, testLabels: LabelImage, ignoreLabels: readonly number[] = [0]): AdaptedRandResult {
  const { n, cells, rows, cols } = labelTable(trueLabels, testLabels, ignoreLabels);
  const sq = (xs: Float64Array) => xs.reduce((acc, x) => acc + x * x, 0);
  const sumC = sq(cells) - n;
  const sumA = sq(rows) - n;
  const sumB = sq(cols) - n;
  const precision = sumC / sumB;
  const recall = sumC / sumA;
  const fscore = sumC / (0.5 * sumB + 0.5 * sumA);
  return { error: 1 - fscore, precision, recall };
}

export interface VariationOfInformationResult {
  /** H(test | true) in bits: over-segmentation (false splits). */
  splits: number;
  /** H(true | test) in bits: under-segmentation (false merges). */
  merges: number;
  /** VI = splits + merges. */
  total: number;
}

/** `skimage.metrics.variation_of_information(true, test, ignore_labels=ignoreLabels)`, in bits. */
export function variationOfInformation(trueLabels: LabelImage, testLabels: LabelImage, ignoreLabels: readonly number[] = []): VariationOfInformationResult {
  const { n, cells, rows, cols } = labelTable(trueLabels, testLabels, ignoreLabels);
  if (n === 0) return { splits: 0, merges: 0, total: 0 };
  const h = (xs: Float64Array) => xs.reduce((acc, c) => acc - (c / n) * Math.log2(c / n), 0);
  const joint = h(cells);
  const splits = joint - h(rows);
  const merges = joint - h(cols);
  return { splits, merges, total: splits + merges };
}
