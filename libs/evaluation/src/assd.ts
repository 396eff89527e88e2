/**
 * Average symmetric surface distance between predicted and true membranes.
 *
 * The surface of a mask is its set pixels with at least one 4-neighbour unset, outside the image
 * counting as unset (`mask & ~binary_erosion(mask, cross)`, as medpy and most challenge code do).
 * With d(p, S) the Euclidean distance from pixel p to the nearest pixel of surface S (exact EDT):
 *   ASSD = (sum_{p in S_pred} d(p, S_true) + sum_{q in S_true} d(q, S_pred)) / (|S_pred| + |S_true|)
 * (Heimann et al. 2009). Both directed means are returned too; medpy's `assd` is their average.
 * Distances are in pixels, and in nm when a pixel size is given (U-RISC: 2.18 nm/pixel).
 * Both surfaces empty gives 0; exactly one empty gives Infinity (no surface to measure to).
 */
import { sumDistancesAt } from './edt.js';
import { assertSameSize, type Mask } from './image.js';

export interface AssdOptions {
  /** Physical size of a pixel in nm; adds the `*Nm` fields. */
  pixelSizeNm?: number;
  /**
   * Which pixels stand for a mask: its `boundary` (default, the definition above) or `all` of its
   * set pixels (for one-pixel-wide membranes the two coincide).
   */
  surface?: 'boundary' | 'all';
}

export interface AssdResult {
  /** Average symmetric surface distance, pixels. */
  assd: number;
  /** Mean distance from predicted surface pixels to the true surface, pixels. */
  predictionToTruth: number;
  /** Mean distance from true surface pixels to the predicted surface, pixels. */
  truthToPrediction: number;
  /** Surface pixel counts. */
  predictedSurfacePixels: number;
  trueSurfacePixels: number;
  /** The same distances in nm, when `pixelSizeNm` is given. */
  assdNm?: number;
  predictionToTruthNm?: number;
  truthToPredictionNm?: number;
}

/** Surface pixels of a mask (see the module comment). */
export function surfaceMask(mask: Mask, surface: 'boundary' | 'all' = 'boundary'): Mask {
  const { width: w, height: h, data } = mask;
  const out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    const row = y * w;
    for (let x = 0; x < w; x++) {
      const i = row + x;
      if (data[i] === 0) continue;
      if (
        surface === 'all' ||
        x === 0 ||
        y === 0 ||
        x === w - 1 ||
        y === h - 1 ||
        data[i - 1] === 0 ||
        data[i + 1] === 0 ||
        data[i - w] === 0 ||
        data[i + w] === 0
      ) {
        out[i] = 1;
      }
    }
  }
  return { width: w, height: h, data: out };
}

/** Sum of distances from the set pixels of `from` to the nearest set pixel of `to`, and their count. */
function directedSum(from: Mask, to: Mask): { sum: number; count: number } {
  return sumDistancesAt(to, from);
}

function countSet(m: Mask): number {
  let c = 0;
  for (let i = 0; i < m.data.length; i++) if (m.data[i] !== 0) c++;
  return c;
}

/**
 * ASSD between a predicted and a true membrane mask (nonzero = membrane).
 * @example assd(predMembrane, trueMembrane, { pixelSizeNm: 2.18 }).assdNm
 */
export function assd(predictedMembrane: Mask, trueMembrane: Mask, options: AssdOptions = {}): AssdResult {
  assertSameSize(predictedMembrane, trueMembrane, 'predicted membrane mask', 'true membrane mask');
  const kind = options.surface ?? 'boundary';
  const sp = surfaceMask(predictedMembrane, kind);
  const st = surfaceMask(trueMembrane, kind);
  const np = countSet(sp);
  const nt = countSet(st);
  let result: AssdResult;
  if (np === 0 && nt === 0) {
    result = { assd: 0, predictionToTruth: 0, truthToPrediction: 0, predictedSurfacePixels: 0, trueSurfacePixels: 0 };
  } else if (np === 0 || nt === 0) {
    result = {
      assd: Infinity,
      predictionToTruth: np === 0 ? 0 : Infinity,
      truthToPrediction: nt === 0 ? 0 : Infinity,
      predictedSurfacePixels: np,
      trueSurfacePixels: nt,
    };
  } else {
    const pt = directedSum(sp, st);
    const tp = directedSum(st, sp);
    result = {
      assd: (pt.sum + tp.sum) / (np + nt),
      predictionToTruth: pt.sum / np,
      truthToPrediction: tp.sum / nt,
      predictedSurfacePixels: np,
      trueSurfacePixels: nt,
    };
  }
  const h = options.pixelSizeNm;
  if (h !== undefined) {
    result.assdNm = result.assd * h;
    result.predictionToTruthNm = result.predictionToTruth * h;
    result.truthToPredictionNm = result.truthToPrediction * h;
  }
  return result;
}
