/**
 * Multi-class scores of predicted class maps against true ones, image by image and pooled over all
 * their pixels: per-class IoU, Dice, precision and recall with scikit-learn's semantics (see
 * class-metrics.ts). Maps are 8-bit grey images whose pixel values are the classes (the values
 * `finetune predict` writes for a multi-class model, as its masks drew them). Two passes over the
 * files: one to find the classes when none are given (every value of any map, except the ignore
 * value), one to score; memory holds one pair at a time.
 */
import { EvaluationInputError } from './image.js';
import { classScores, pooledClassScores, type ClassScores } from './class-metrics.js';
import { readGrey8 } from './read-grey.js';
import { pairsOf } from './score-files.js';

export interface ClassFilesOptions {
  /** The classes to score, in this order (default: every value found in the maps, ascending). */
  classes?: readonly number[];
  /** Pixels whose true value is this are not scored (classScores' ignoreValue). */
  ignoreValue?: number;
  /** Skip ground truths that have no prediction instead of failing. */
  ignoreUnpairedGroundTruth?: boolean;
  onImage?: (result: ClassImageResult, index: number, total: number) => void;
}

export interface ClassImageResult {
  name: string;
  prediction: string;
  groundTruth: string;
  scores: ClassScores;
}

export interface ClassFilesResult {
  classes: number[];
  images: ClassImageResult[];
  /** Every image's pixels pooled (the IoU CEM500K's benchmarks report). */
  pooled: ClassScores;
  /** Means over images of the per-image mean IoU / Dice (images with no class present are skipped). */
  meanOfImages: { meanIoU: number; meanDice: number };
}

/**
 * Scores the class maps `pred` (a folder, or one file) against `gt` (same kind), paired by name.
 * @example const { pooled } = await scoreClassFiles('out/pred', 'data/masks', { classes: [0, 128, 255] });
 */
export async function scoreClassFiles(pred: string, gt: string, options: ClassFilesOptions = {}): Promise<ClassFilesResult> {
  const pairs = await pairsOf(pred, gt, options);
  let classes = options.classes ? [...options.classes] : null;
  if (classes === null) {
    const seen = new Set<number>();
    for (const pair of pairs) for (const file of [pair.prediction, pair.groundTruth]) for (const v of new Set((await readGrey8(file)).data)) seen.add(v);
    if (options.ignoreValue !== undefined) seen.delete(options.ignoreValue);
    classes = [...seen].sort((a, b) => a - b);
  }
  const images: ClassImageResult[] = [];
  for (const [k, pair] of pairs.entries()) {
    const [p, t] = await Promise.all([readGrey8(pair.prediction), readGrey8(pair.groundTruth)]);
    if (p.width !== t.width || p.height !== t.height) {
      throw new EvaluationInputError(
        `${pair.prediction} is ${p.width}x${p.height} but its ground truth ${pair.groundTruth} is ${t.width}x${t.height}`,
        pair.prediction,
      );
    }
    const result = { ...pair, scores: classScores(t, p, { classes, ignoreValue: options.ignoreValue }) };
    images.push(result);
    options.onImage?.(result, k, pairs.length);
  }
  const scored = images.map((r) => r.scores).filter((s) => s.presentClasses > 0);
  const mean = (xs: number[]) => (xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length);
  return {
    classes,
    images,
    pooled: pooledClassScores(images.map((r) => r.scores)),
    meanOfImages: { meanIoU: mean(scored.map((s) => s.meanIoU)), meanDice: mean(scored.map((s) => s.meanDice)) },
  };
}
