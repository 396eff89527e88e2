/**
 * ISBI 2012 segmentation metrics (Arganda-Carreras et al. 2015, DESIGN.md section 4), as in Fiji's
 * Trainable Segmentation `RandError.getMaximalVRandAfterThinning` and
 * `VariationOfInformation.getMaximalVInfoAfterThinning`:
 *
 * - the proposal is a cell-interior probability map: pixels with value > threshold are cell
 *   interior, the rest boundary (a U-RISC/ISBI PNG read as grey / 255 is exactly that);
 * - the boundary is thinned to one pixel with ImageJ's skeletonization (see `skeletonize`);
 * - segments are 4-connected components of cell pixels, in the ground truth and the proposal;
 * - only ground-truth cell pixels count, and proposal boundary pixels among them are singletons;
 * - V_Rand and V_Info (see `contingency.ts`) are averaged over slices, for each threshold of
 *   0, 0.1, ..., 1 (accumulated in float64 as Java's `th += 0.1` does, so the last is
 *   0.9999999999999999 and a value of exactly 1 is still cell interior), and the best is reported.
 *
 * The ground truth is a cell mask (nonzero = cell interior). Fiji binarizes 8-bit ground truth with
 * `value > threshold`, which for 0/255 labels is the same mask at every threshold.
 *
 * Also the original ISBI 2012 leaderboard Rand error: 1 - the best foreground-restricted V_Rand
 * without thinning.
 */
import { runComponents } from './components.js';
import { foregroundContingency, infoScores, type InfoScores, randScores, type RandScores } from './contingency.js';
import { assertImage, assertSameSize, EvaluationInputError, type Image2D, type Mask } from './image.js';
import { skeletonizeInPlace } from './skeletonize.js';

/** One slice: a cell-interior probability map (values in [0, 1]) and the true cell mask. */
export interface IsbiSlice {
  cellProbability: Image2D;
  trueCells: Mask;
}

export interface IsbiOptions {
  /** Thresholds to sweep (default {@link isbiThresholds}). */
  thresholds?: readonly number[];
  /** Thin proposal boundaries before scoring (default true; false gives the original Rand error's setting). */
  thinning?: boolean;
  /**
   * Every value the probability maps can hold, when known (e.g. grey / 255 of 8-bit images).
   * Thresholds between the same two levels binarize identically, so each such group is scored once:
   * a binary prediction costs one threshold instead of eleven.
   */
  levels?: readonly number[];
}

/** Scores of one slice at one threshold. */
export interface IsbiSliceScores {
  rand: RandScores;
  info: InfoScores;
}

/** Slice-averaged scores at one threshold. */
export interface IsbiThresholdScores {
  threshold: number;
  vRand: number;
  vInfo: number;
  randSplit: number;
  randMerge: number;
  infoSplit: number;
  infoMerge: number;
}

/** `sum`, scores added up over `k` slices (or images), divided by `k`; the threshold stays. */
export function meanThresholdScores(sum: IsbiThresholdScores, k: number): IsbiThresholdScores {
  return {
    threshold: sum.threshold,
    vRand: sum.vRand / k,
    vInfo: sum.vInfo / k,
    randSplit: sum.randSplit / k,
    randMerge: sum.randMerge / k,
    infoSplit: sum.infoSplit / k,
    infoMerge: sum.infoMerge / k,
  };
}

export interface IsbiScores {
  /** Best slice-averaged V_Rand over the thresholds, and the threshold reaching it. */
  vRand: number;
  vRandThreshold: number;
  /** Best slice-averaged V_Info over the thresholds, and the threshold reaching it. */
  vInfo: number;
  vInfoThreshold: number;
  /** Every threshold, ascending. */
  curve: IsbiThresholdScores[];
}

/** The thresholds of Fiji's `for (th = 0; th <= 1; th += 0.1)`: 11 values, float64-accumulated. */
export function isbiThresholds(min = 0, max = 1, step = 0.1): number[] {
  const out: number[] = [];
  for (let th = min; th <= max; th += step) out.push(th);
  return out;
}

/** Proposal boundary mask (1 = boundary) of `value > threshold` being cell interior. */
function boundaryMask(cellProbability: Image2D, threshold: number): Uint8Array {
  const src = cellProbability.data;
  const out = new Uint8Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i] > threshold ? 0 : 1;
  return out;
}

/**
 * V_Rand and V_Info of one slice whose proposal is already binary: `proposedBoundary` is 1 where
 * the proposal draws boundary (it is thinned in place when `thinning`, so pass a copy to keep it).
 */
export function isbiBinaryScores(proposedBoundary: Mask, trueCells: Mask, thinning = true): IsbiSliceScores {
  assertSameSize(proposedBoundary, trueCells, 'proposed boundary mask', 'true cell mask');
  const { width, height } = trueCells;
  if (thinning) skeletonizeInPlace(proposedBoundary.data, width, height);
  const proposal = runComponents(proposedBoundary, true);
  const truth = runComponents(trueCells);
  const table = foregroundContingency(truth, proposal);
  return { rand: randScores(table), info: infoScores(table) };
}

/** V_Rand and V_Info of one slice at one threshold (`value > threshold` is cell interior). */
export function isbiSliceScores(slice: IsbiSlice, threshold: number, thinning = true): IsbiSliceScores {
  assertSameSize(slice.cellProbability, slice.trueCells, 'cell probability map', 'true cell mask');
  const { width, height } = slice.trueCells;
  const boundary = { width, height, data: boundaryMask(slice.cellProbability, threshold) };
  return isbiBinaryScores(boundary, slice.trueCells, thinning);
}

/**
 * The ISBI 2012 scores of one or more slices: per threshold, V_Rand and V_Info averaged over the
 * slices; the best of each over the thresholds.
 * @example
 * const { vRand, vInfo } = isbiScores({ cellProbability: probabilityFromGrey(pred), trueCells: cellMaskFromGrey(gt) });
 */
export function isbiScores(slices: IsbiSlice | readonly IsbiSlice[], options: IsbiOptions = {}): IsbiScores {
  const list: readonly IsbiSlice[] = Array.isArray(slices) ? slices : [slices as IsbiSlice];
  if (list.length === 0) throw new EvaluationInputError('isbiScores: no slices given');
  list.forEach((s, k) => {
    assertImage(s.cellProbability, `slice ${k} cell probability map`);
    assertSameSize(s.cellProbability, s.trueCells, `slice ${k} cell probability map`, `slice ${k} true cell mask`);
  });
  const thresholds = options.thresholds ?? isbiThresholds();
  if (thresholds.length === 0) throw new EvaluationInputError('isbiScores: thresholds must not be empty');
  const thinning = options.thinning ?? true;
  // binarization key of a threshold: how many levels are <= it (those pixels are boundary)
  const levels = options.levels ? [...options.levels].sort((a, b) => a - b) : undefined;
  const keyOf = (t: number): number => (levels ? levels.filter((v) => v <= t).length : t);
  const memo = list.map(() => new Map<number, IsbiSliceScores>());
  const curve: IsbiThresholdScores[] = [...thresholds]
    .sort((a, b) => a - b)
    .map((threshold) => {
      const acc = { vRand: 0, vInfo: 0, randSplit: 0, randMerge: 0, infoSplit: 0, infoMerge: 0 };
      const key = keyOf(threshold);
      for (const [k, slice] of list.entries()) {
        let scores = memo[k].get(key);
        if (!scores) {
          scores = isbiSliceScores(slice, threshold, thinning);
          memo[k].set(key, scores);
        }
        const { rand, info } = scores;
        acc.vRand += rand.vRand;
        acc.vInfo += info.vInfo;
        acc.randSplit += rand.split;
        acc.randMerge += rand.merge;
        acc.infoSplit += info.split;
        acc.infoMerge += info.merge;
      }
      return meanThresholdScores({ threshold, ...acc }, list.length);
    });
  let bestRand = curve[0];
  let bestInfo = curve[0];
  for (const point of curve) {
    if (point.vRand > bestRand.vRand) bestRand = point;
    if (point.vInfo > bestInfo.vInfo) bestInfo = point;
  }
  return {
    vRand: bestRand.vRand,
    vRandThreshold: bestRand.threshold,
    vInfo: bestInfo.vInfo,
    vInfoThreshold: bestInfo.threshold,
    curve,
  };
}

/**
 * The original ISBI 2012 leaderboard Rand error: 1 - the best foreground-restricted V_Rand over
 * the thresholds, without thinning the proposal.
 */
export function isbiRandError(slices: IsbiSlice | readonly IsbiSlice[], thresholds?: readonly number[]): number {
  return 1 - isbiScores(slices, { thinning: false, ...(thresholds ? { thresholds } : {}) }).vRand;
}
