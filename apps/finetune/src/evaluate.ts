/**
 * Validation by full-image inference: every validation image is predicted in blended tiles exactly
 * as `predict` does, binarised at the threshold and scored with the official U-RISC F1 against its
 * label file; a threshold sweep gives the best-threshold F1 as well. Images are processed one at a
 * time, so memory does not grow with the number of validation images.
 */
import { join } from 'node:path';
import type { LabeledImages } from '@emseg/data';
import { writeFileAtomic } from '@emseg/fs';
import { bestThresholdF1, defaultThresholds, pixelScores, readGrey8, uriscF1, type GreyImage as EvalGreyImage } from '@emseg/evaluation';
import { membraneFraction, predictImage, submissionProblem, toSubmission, type InferenceOptions } from './inference.js';
import { centreCrop, overlayPng } from './overlay.js';
import type { Segmenter } from './segmenter.js';
import { checkMembraneFraction } from './urisc-data.js';

/** Scores of one validation image. */
export interface ImageEvaluation {
  name: string;
  /** Official U-RISC F1 / precision / recall of the binary prediction (F1 0 when rejected). */
  f1: number;
  precision: number;
  recall: number;
  /** Why the official scorer rejects the binary prediction (e.g. background < 5x membrane), or null. */
  rejected: string | null;
  /** Best pixel F1 over the threshold sweep, and its threshold. */
  bestF1: number;
  bestThreshold: number;
  /** Fraction of pixels predicted membrane at the threshold. */
  predictedMembrane: number;
}

/** Scores of a set of images: means of per-image values (the U-RISC folder score is the mean F1). */
export interface Evaluation {
  f1: number;
  precision: number;
  recall: number;
  /** Threshold sweep over the whole set: the threshold with the best mean pixel F1. */
  bestF1: number;
  bestThreshold: number;
  images: ImageEvaluation[];
  /** Overlay PNG files written. */
  overlays: string[];
  seconds: number;
}

export interface EvaluateOptions {
  inference: InferenceOptions;
  threshold: number;
  maxMembraneFraction: number;
  /** Write overlays of the first `count` images (a centred crop of `size`) into `dir`. */
  overlays?: { count: number; size: number; dir: string };
  /** Called after each image. */
  onImage?: (result: ImageEvaluation, index: number, total: number) => void;
}

const invert = (grey: EvalGreyImage): EvalGreyImage => ({ ...grey, data: grey.data.map((v) => 255 - v) });
const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);

/**
 * Predicts and scores every image of `images`.
 *
 * @example const { f1, bestF1 } = await evaluateSegmenter(seg, data.validation, { inference, threshold: 0.5, maxMembraneFraction: 0.5 });
 */
export async function evaluateSegmenter(segmenter: Segmenter, images: LabeledImages, options: EvaluateOptions): Promise<Evaluation> {
  const t0 = performance.now();
  const thresholds = defaultThresholds();
  const curveSum = new Float64Array(thresholds.length);
  const results: ImageEvaluation[] = [];
  const overlays: string[] = [];
  for (let i = 0; i < images.size; i++) {
    const pair = images.pairs[i];
    const sample = await images.load(i);
    checkMembraneFraction(pair, sample, images.polarity, options.maxMembraneFraction);
    const { width, height } = sample.image;
    const probability = await predictImage(segmenter, sample.image, options.inference, pair.image);
    const submission = toSubmission(probability, width, height, options.threshold);
    // The official score reads the label file as the competition does (membrane black).
    const labelGrey = await readGrey8(pair.label);
    const truth = images.polarity === 'black-foreground' ? labelGrey : invert(labelGrey);
    const rejected = submissionProblem(submission, `prediction of ${pair.image}`);
    let official: { f1: number; precision: number; recall: number };
    if (rejected === null) {
      official = uriscF1(submission, truth, { prediction: `prediction of ${pair.image}`, groundTruth: pair.label });
    } else {
      // The competition would reject it: F1 0, precision/recall from plain pixel counts for information.
      const predicted = { width, height, data: submission.data.map((v) => (v === 0 ? 1 : 0)) };
      const scores = pixelScores(predicted, sample.mask);
      official = { f1: 0, precision: scores.precision, recall: scores.recall };
    }
    const sweep = bestThresholdF1({ width, height, data: probability }, sample.mask, thresholds);
    sweep.curve.forEach((point, k) => (curveSum[k] += point.f1));
    const result: ImageEvaluation = {
      name: pair.name,
      f1: official.f1,
      precision: official.precision,
      recall: official.recall,
      rejected,
      bestF1: sweep.best.f1,
      bestThreshold: sweep.best.threshold,
      predictedMembrane: membraneFraction(submission),
    };
    results.push(result);
    if (options.overlays && i < options.overlays.count) {
      const file = join(options.overlays.dir, `${pair.name}.png`);
      await writeFileAtomic(file, overlayPng(sample.image, sample.mask, probability, options.threshold, centreCrop(width, height, options.overlays.size)));
      overlays.push(file);
    }
    options.onImage?.(result, i, images.size);
  }
  let best = 0;
  for (let k = 1; k < thresholds.length; k++) if (curveSum[k] > curveSum[best]) best = k;
  return {
    f1: mean(results.map((r) => r.f1)),
    precision: mean(results.map((r) => r.precision)),
    recall: mean(results.map((r) => r.recall)),
    bestF1: curveSum[best] / Math.max(1, results.length),
    bestThreshold: thresholds[best],
    images: results,
    overlays,
    seconds: (performance.now() - t0) / 1000,
  };
}
