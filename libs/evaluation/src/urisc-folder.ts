/**
 * The U-RISC folder score: the **mean of per-image F1** over predictions paired with ground truths by
 * file name (the script's `eval_on_whole_dataset`). Not a pooled F1 over all pixels.
 *
 * Two quirks of the published script are not reproduced: it stores each F in a NumPy string array
 * as wide as the longest path (so with paths shorter than ~19 characters F is truncated before the
 * mean) and it calls `np.float`, which NumPy >= 1.24 no longer has. Here the mean is taken over
 * full-precision F values, in file-name order.
 */
import { type ImagePair, pairImageFolders, type PairingOptions } from './pairing.js';
import { readGrey8 } from './read-grey.js';
import { type UriscScore, uriscF1 } from './urisc-f1.js';

/** Per-image result of a folder score. */
export interface UriscImageScore extends UriscScore {
  name: string;
  prediction: string;
  groundTruth: string;
}

export interface UriscFolderScore {
  /** Mean of the per-image F1 values. */
  meanF1: number;
  images: UriscImageScore[];
}

/** Score one pair of files with {@link uriscF1}; errors name the offending file. */
export async function uriscFileScore(pair: ImagePair): Promise<UriscImageScore> {
  const [pred, gt] = await Promise.all([readGrey8(pair.prediction), readGrey8(pair.groundTruth)]);
  const score = uriscF1(pred, gt, { prediction: pair.prediction, groundTruth: pair.groundTruth });
  return { name: pair.name, prediction: pair.prediction, groundTruth: pair.groundTruth, ...score };
}

/**
 * Score every prediction in `predictionDir` against its namesake in `groundTruthDir`.
 * @example const { meanF1, images } = await uriscFolderScore('out/pred', 'data/label');
 */
export async function uriscFolderScore(
  predictionDir: string,
  groundTruthDir: string,
  options: PairingOptions = {},
): Promise<UriscFolderScore> {
  const pairs = await pairImageFolders(predictionDir, groundTruthDir, options);
  const images: UriscImageScore[] = [];
  // One pair at a time: a full U-RISC image pair is ~200 MB decoded.
  for (const pair of pairs) images.push(await uriscFileScore(pair));
  const meanF1 = images.reduce((s, r) => s + r.f1, 0) / images.length;
  return { meanF1, images };
}
