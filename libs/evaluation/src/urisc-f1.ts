/**
 * The U-RISC competition's official F1 (DESIGN.md section 4), restated rule for rule from the
 * organisers' `Evaluation/eval.py` (`eval_on_onepic` / `single_eval_boundary` with `bound_pix = 0`):
 *
 * 1. Both images are read as 8-bit grey (`cv2.imread(path, 0)`, see `readGrey8`) and inverted,
 *    `v' = 255 - v`, so membrane (drawn black) becomes the positive class.
 * 2. The prediction is checked (`check_if_white_back_black_edge`): it must hold at most two distinct
 *    grey values, and the background count (pixels that were 255) must be at least 5x the membrane
 *    count (pixels that were 0).
 * 3. With no boundary tolerance, and sums over the inverted 0..255 values (a non-binary ground truth
 *    is value-weighted):
 *      n_fg = sum(pred'), n_gt = sum(gt'),
 *      precision = sum(pred' * [gt' != 0]) / n_fg, recall = sum(gt' * [pred' != 0]) / n_gt;
 *    n_fg = 0 and n_gt > 0 gives P = 1, R = 0; n_fg > 0 and n_gt = 0 gives P = 0, R = 1; both zero
 *    gives P = R = 1; F = 2PR / (P + R), or 0 when P + R = 0.
 *
 * One documented difference: the script computes the 5x ratio as `background / membrane` and so
 * crashes with ZeroDivisionError when the prediction has no black pixel. An all-white prediction is
 * scored here by the script's empty-prediction rule (P = 1, R = 0, so F = 0 against a non-empty
 * truth), as DESIGN.md asks; a prediction with no black pixel that is not all white is rejected.
 *
 * All sums are exact integers (at most 255 * width * height) and the divisions are the same float64
 * operations numpy performs, so results are bit-identical to the script's.
 */
import { assertSameSize, EvaluationInputError, type GreyImage } from './image.js';

/** The score of one prediction/ground-truth pair under the U-RISC protocol. */
export interface UriscScore {
  f1: number;
  precision: number;
  recall: number;
  /** Pixels the prediction draws as membrane (grey 0). */
  predictedMembranePixels: number;
  /** Pixels the prediction draws as background (grey 255). */
  predictedBackgroundPixels: number;
}

/** Thrown when a prediction breaks the competition's submission rules; `file` names it when known. */
export class UriscFormatError extends EvaluationInputError {
  override readonly name: string = 'UriscFormatError';
}

/** Optional names used in error messages (typically the file paths). */
export interface UriscNames {
  prediction?: string;
  groundTruth?: string;
}

/** Minimum background/membrane pixel ratio the competition accepts. */
export const URISC_MIN_BACKGROUND_RATIO = 5;

/**
 * Joint histogram of (prediction grey, ground-truth grey): `counts[p * 256 + g]` is the number of
 * pixels with prediction value p and ground-truth value g. Every U-RISC quantity is a sum over it.
 */
function jointGreyHistogram(pred: Uint8Array, gt: Uint8Array): Float64Array {
  const hist = new Uint32Array(65536); // counts < 2^32 for images under 4.29 gigapixels
  const n = pred.length;
  let start = 0;
  let blank = 0; // 4-pixel words white in both images, the bulk of a U-RISC pair
  if (pred.byteOffset % 4 === 0 && gt.byteOffset % 4 === 0) {
    const words = n >> 2;
    const pw = new Uint32Array(pred.buffer, pred.byteOffset, words);
    const gw = new Uint32Array(gt.buffer, gt.byteOffset, words);
    for (let k = 0; k < words; k++) {
      if ((pw[k] & gw[k]) === -1) {
        blank++;
        continue;
      }
      const i = k << 2;
      hist[(pred[i] << 8) | gt[i]]++;
      hist[(pred[i + 1] << 8) | gt[i + 1]]++;
      hist[(pred[i + 2] << 8) | gt[i + 2]]++;
      hist[(pred[i + 3] << 8) | gt[i + 3]]++;
    }
    start = words << 2;
  }
  for (let i = start; i < n; i++) hist[(pred[i] << 8) | gt[i]]++;
  const out = Float64Array.from(hist);
  out[65535] += 4 * blank;
  return out;
}

/**
 * Check a prediction against the competition's submission rules, given the 256-bin histogram of its
 * grey values. Throws {@link UriscFormatError} with the script's meaning.
 */
export function checkUriscPrediction(valueCounts: ArrayLike<number>, name = 'prediction'): void {
  const values: number[] = [];
  for (let v = 0; v < 256; v++) if (valueCounts[v] > 0) values.push(v);
  if (values.length > 2) {
    const shown = values.length > 6 ? `${values.slice(0, 6).join(', ')}, ...` : values.join(', ');
    throw new UriscFormatError(
      `${name}: not binarized: ${values.length} distinct grey values (${shown}); the U-RISC protocol ` +
        `needs a strictly binary image (membrane 0, background 255): threshold it first`,
      name,
    );
  }
  const membrane = valueCounts[0];
  const background = valueCounts[255];
  let total = 0;
  for (const v of values) total += valueCounts[v];
  if (membrane === 0) {
    if (background === total) return; // all white: an empty prediction, scored by the empty rule
    throw new UriscFormatError(
      `${name}: no membrane pixel (grey 0) and not all background (grey 255): values are ${values.join(', ')}; ` +
        `submissions must be white background (255) with black membranes (0)`,
      name,
    );
  }
  const ratio = background / membrane;
  if (ratio < URISC_MIN_BACKGROUND_RATIO) {
    throw new UriscFormatError(
      `${name}: background/membrane ratio is ${ratio.toFixed(3)} (${background} pixels of 255, ${membrane} of 0), ` +
        `below ${URISC_MIN_BACKGROUND_RATIO}: submissions must be white background (255) with black membranes (0)`,
      name,
    );
  }
}

/**
 * Precision, recall and F1 from the script's value-weighted sums, with its empty-image rules.
 * @example uriscPrf(0, 10, 0, 0) // { precision: 1, recall: 0, f1: 0 }
 */
export function uriscPrf(predMatch: number, predSum: number, gtMatch: number, gtSum: number): { precision: number; recall: number; f1: number } {
  let precision: number;
  let recall: number;
  if (predSum === 0 && gtSum > 0) {
    precision = 1;
    recall = 0;
  } else if (predSum > 0 && gtSum === 0) {
    precision = 0;
    recall = 1;
  } else if (predSum === 0 && gtSum === 0) {
    precision = 1;
    recall = 1;
  } else {
    precision = predMatch / predSum;
    recall = gtMatch / gtSum;
  }
  const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
  return { precision, recall, f1 };
}

/**
 * The official U-RISC F1 of one 8-bit grey prediction against its 8-bit grey ground truth, both in
 * the competition's convention (membrane black 0, background white 255).
 *
 * @example
 * // 1 x 6: truth has membrane at 0..1, prediction at 1 only
 * uriscF1(grey(6, 1, [255, 0, 255, 255, 255, 255]), grey(6, 1, [0, 0, 255, 255, 255, 255]))
 * // => { precision: 1, recall: 0.5, f1: 0.666..., ... }
 */
export function uriscF1(prediction: GreyImage, groundTruth: GreyImage, names: UriscNames = {}): UriscScore {
  const predName = names.prediction ?? 'prediction';
  const gtName = names.groundTruth ?? 'ground truth';
  assertSameSize(prediction, groundTruth, predName, gtName);
  const hist = jointGreyHistogram(prediction.data, groundTruth.data);

  const predValueCounts = new Float64Array(256);
  for (let p = 0; p < 256; p++) {
    let c = 0;
    for (let g = 0; g < 256; g++) c += hist[(p << 8) | g];
    predValueCounts[p] = c;
  }
  checkUriscPrediction(predValueCounts, predName);

  let predSum = 0; // sum(pred')
  let gtSum = 0; // sum(gt')
  let predMatch = 0; // sum(pred' * [gt' != 0])
  let gtMatch = 0; // sum(gt' * [pred' != 0])
  for (let p = 0; p < 256; p++) {
    const pInv = 255 - p;
    for (let g = 0; g < 256; g++) {
      const c = hist[(p << 8) | g];
      if (c === 0) continue;
      const gInv = 255 - g;
      predSum += c * pInv;
      gtSum += c * gInv;
      if (gInv !== 0) predMatch += c * pInv;
      if (pInv !== 0) gtMatch += c * gInv;
    }
  }
  return {
    ...uriscPrf(predMatch, predSum, gtMatch, gtSum),
    predictedMembranePixels: predValueCounts[0],
    predictedBackgroundPixels: predValueCounts[255],
  };
}
