/**
 * The U-RISC folder score: the **mean of per-image F1** over predictions paired with ground truths by
 * file name (the script's `eval_on_whole_dataset`). Not a pooled F1 over all pixels.
 *
 * A prediction the competition rejects (not binary, or background < 5x membrane) does not stop the
 * folder: it scores F1 = precision = recall = 0, carries the reason in `rejected`, and counts as 0
 * in the means, which is what the leaderboard shows for such a submission. Both command lines (the
 * `emseg-eval` CLI and `finetune score`) score folders this way and report through
 * {@link rejectionReport}.
 *
 * Two quirks of the published script are not reproduced: it stores each F in a NumPy string array
 * as wide as the longest path (so with paths shorter than ~19 characters F is truncated before the
 * mean) and it calls `np.float`, which NumPy >= 1.24 no longer has. Here the mean is taken over
 * full-precision F values, in file-name order.
 */
import type { GreyImage } from './image.js';
import { type ImagePair, pairImageFolders, type PairingOptions } from './pairing.js';
import { readGrey8 } from './read-grey.js';
import { type UriscNames, type UriscScore, uriscF1, UriscFormatError } from './urisc-f1.js';

/** A U-RISC score, or the zero score of a rejected prediction. */
export interface UriscResult extends UriscScore {
  /** Why the competition rejects this prediction (it then scores 0), or null. */
  rejected: string | null;
}

/** Per-image result of a folder score. */
export interface UriscImageScore extends UriscResult {
  name: string;
  prediction: string;
  groundTruth: string;
}

export interface UriscFolderScore {
  /** Mean of the per-image F1 values, rejected images counting 0 (the U-RISC folder score). */
  meanF1: number;
  meanPrecision: number;
  meanRecall: number;
  /** How many predictions were rejected (scored 0). */
  rejected: number;
  images: UriscImageScore[];
}

/**
 * {@link uriscF1}, except that a prediction breaking the submission rules scores 0 with the reason
 * instead of throwing. Other bad input (size mismatch) still throws.
 *
 * @example uriscF1OrRejected(grey(2, 1, [0, 0]), gt).rejected // "prediction: background/membrane ratio is 0.000 ..."
 */
export function uriscF1OrRejected(prediction: GreyImage, groundTruth: GreyImage, names: UriscNames = {}): UriscResult {
  try {
    return { ...uriscF1(prediction, groundTruth, names), rejected: null };
  } catch (err) {
    if (!(err instanceof UriscFormatError)) throw err;
    return { f1: 0, precision: 0, recall: 0, predictedMembranePixels: 0, predictedBackgroundPixels: 0, rejected: err.message };
  }
}

/** Score one pair of files with {@link uriscF1OrRejected}; errors name the offending file. */
export async function uriscFileScore(pair: ImagePair): Promise<UriscImageScore> {
  const [pred, gt] = await Promise.all([readGrey8(pair.prediction), readGrey8(pair.groundTruth)]);
  const score = uriscF1OrRejected(pred, gt, { prediction: pair.prediction, groundTruth: pair.groundTruth });
  return { name: pair.name, prediction: pair.prediction, groundTruth: pair.groundTruth, ...score };
}

const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);

/**
 * Score every prediction in `predictionDir` against its namesake in `groundTruthDir`.
 * @example const { meanF1, images } = await uriscFolderScore('out/pred', 'data/label');
 */
export async function uriscFolderScore(predictionDir: string, groundTruthDir: string, options: PairingOptions = {}): Promise<UriscFolderScore> {
  const pairs = await pairImageFolders(predictionDir, groundTruthDir, options);
  const images: UriscImageScore[] = [];
  // One pair at a time: a full U-RISC image pair is ~200 MB decoded.
  for (const pair of pairs) images.push(await uriscFileScore(pair));
  return {
    meanF1: mean(images.map((r) => r.f1)),
    meanPrecision: mean(images.map((r) => r.precision)),
    meanRecall: mean(images.map((r) => r.recall)),
    rejected: images.filter((r) => r.rejected !== null).length,
    images,
  };
}

/**
 * What a command line says about rejected predictions: one warning per rejected image, and an
 * error (the command then exits 1) when every image was rejected, so nothing was really scored.
 *
 * @example const { warnings, error } = rejectionReport(result.images);
 */
export function rejectionReport(images: readonly { rejected?: string | null }[]): { warnings: string[]; error: string | null } {
  const reasons = images.flatMap((r) => (r.rejected ? [r.rejected] : []));
  const warnings = reasons.map((reason) => `warning: rejected, scored 0: ${reason}`);
  const error =
    images.length > 0 && reasons.length === images.length
      ? `nothing was scorable: all ${images.length} prediction(s) were rejected by the U-RISC submission rules (see the warnings), so the score 0 means nothing`
      : null;
  return { warnings, error };
}
