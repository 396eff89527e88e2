/**
 * Validation by full-image inference: every validation image is predicted in blended tiles exactly
 * as `predict` does, binarised at the threshold and scored by the task (U-RISC: the official F1);
 * a threshold sweep of the pixel F1 gives the best-threshold F1 as well. With candidate thresholds,
 * the task's score is computed at each of them too, and the best one is `chosen`: the decision
 * threshold the model is saved with. Images are processed one at a time, so memory does not grow
 * with the number of validation images.
 */
import { join } from 'node:path';
import type { LabeledImages } from '@emseg/data';
import { writeFileAtomic } from '@emseg/fs';
import { bestThresholdF1, classScores, defaultThresholds, pooledClassScores, type ClassScores } from '@emseg/evaluation';
import { argmaxClasses, predictImage, type InferenceOptions } from './inference.js';
import { centreCrop, overlayPng } from './overlay.js';
import type { ClassEntry, Segmenter } from './segmenter.js';
import type { BinaryScore, SegmentationTask } from './task.js';

/** Scores of one validation image. */
export interface ImageEvaluation extends BinaryScore {
  name: string;
  /** Best pixel F1 over the threshold sweep, and its threshold. */
  bestF1: number;
  bestThreshold: number;
  /** Fraction of pixels predicted foreground at the threshold. */
  predictedForeground: number;
}

/** The task's scores of a set of images binarised at one threshold (means over the images). */
export interface ThresholdScore {
  threshold: number;
  /** The task's metric (mean over the images), which the choice compares. */
  score: number;
  f1: number;
  precision: number;
  recall: number;
  /** Images whose prediction the task rejected at this threshold (scored F1 0). */
  rejected: number;
}

/** Scores of a set of images: means of per-image values (the U-RISC folder score is the mean F1). */
export interface Evaluation {
  /** Which metric `score` is (SegmentationTask.metric). */
  metric: string;
  /** The task's scores at the configured threshold (EvaluateOptions.threshold); `score` is its metric. */
  score: number;
  f1: number;
  precision: number;
  recall: number;
  /**
   * The best of the candidate thresholds and the configured one by the task's mean score (ties: the
   * one nearest the configured threshold); the configured threshold's scores without candidates.
   */
  chosen: ThresholdScore;
  /** The task's scores at every threshold tried, ascending. */
  byThreshold: ThresholdScore[];
  /** Threshold sweep over the whole set: the threshold with the best mean pixel F1. */
  bestF1: number;
  bestThreshold: number;
  images: ImageEvaluation[];
  /** A multi-class model: IoU and Dice of every class (background first) over all the images' pixels. */
  classes?: ClassEvaluation[];
  /** Overlay PNG files written. */
  overlays: string[];
  seconds: number;
}

/** The scores of one class over a set of images (its pixels pooled). */
export interface ClassEvaluation {
  name: string;
  value: number;
  iou: number;
  dice: number;
  truePixels: number;
  predictedPixels: number;
}

export interface EvaluateOptions {
  task: SegmentationTask;
  inference: InferenceOptions;
  threshold: number;
  /** Thresholds to score the task at besides `threshold`, to choose from (default: none). */
  candidates?: readonly number[];
  /** Write overlays of the first `count` images (a centred crop of `size`) into `dir`. */
  overlays?: { count: number; size: number; dir: string };
  /** Called after each image. */
  onImage?: (result: ImageEvaluation, index: number, total: number) => void;
}

/** Each image of `images` loaded, checked by the task and predicted whole, one at a time. */
async function* predictedImages(segmenter: Segmenter, images: LabeledImages, options: EvaluateOptions) {
  for (let i = 0; i < images.size; i++) {
    const pair = images.pairs[i];
    const sample = await images.load(i);
    options.task.checkSample?.(pair, sample, images);
    yield { i, pair, sample, probability: await predictImage(segmenter, sample.image, options.inference, pair.image) };
  }
}

const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);

/**
 * Predicts and scores every image of `images`.
 *
 * @example const { f1, bestF1 } = await evaluateSegmenter(seg, data.validation, { task: pixelTask, inference, threshold: 0.5 });
 */
export async function evaluateSegmenter(segmenter: Segmenter, images: LabeledImages, options: EvaluateOptions): Promise<Evaluation> {
  if (segmenter.classMap !== null) return evaluateClasses(segmenter, segmenter.classMap, images, options);
  const t0 = performance.now();
  const { task, threshold } = options;
  const tried = [...new Set([threshold, ...(options.candidates ?? [])])].sort((a, b) => a - b);
  const sums = tried.map((t) => ({ threshold: t, score: 0, f1: 0, precision: 0, recall: 0, rejected: 0 }));
  const thresholds = defaultThresholds();
  const curveSum = new Float64Array(thresholds.length);
  const results: ImageEvaluation[] = [];
  const overlays: string[] = [];
  for await (const { i, pair, sample, probability } of predictedImages(segmenter, images, options)) {
    const { width, height } = sample.image;
    const binary = new Uint8Array(probability.length);
    let foreground = 0;
    for (let k = 0; k < binary.length; k++) foreground += binary[k] = probability[k] >= threshold ? 1 : 0;
    const score = await task.scoreImage({ images, pair, sample, probability, binary, threshold });
    const scratch = tried.length > 1 ? new Uint8Array(probability.length) : binary;
    for (const sum of sums) {
      let s = score;
      if (sum.threshold !== threshold) {
        for (let k = 0; k < scratch.length; k++) scratch[k] = probability[k] >= sum.threshold ? 1 : 0;
        s = await task.scoreImage({ images, pair, sample, probability, binary: scratch, threshold: sum.threshold });
      }
      sum.score += s.score;
      sum.f1 += s.f1;
      sum.precision += s.precision;
      sum.recall += s.recall;
      sum.rejected += s.rejected === null ? 0 : 1;
    }
    const sweep = bestThresholdF1({ width, height, data: probability }, sample.mask, thresholds);
    sweep.curve.forEach((point, k) => (curveSum[k] += point.f1));
    const result: ImageEvaluation = {
      name: pair.name,
      score: score.score,
      f1: score.f1,
      precision: score.precision,
      recall: score.recall,
      rejected: score.rejected,
      bestF1: sweep.best.f1,
      bestThreshold: sweep.best.threshold,
      predictedForeground: foreground / Math.max(1, binary.length),
    };
    results.push(result);
    if (options.overlays && i < options.overlays.count) {
      const file = join(options.overlays.dir, `${pair.name}.png`);
      await writeFileAtomic(file, overlayPng(sample.image, sample.mask, probability, threshold, centreCrop(width, height, options.overlays.size)));
      overlays.push(file);
    }
    options.onImage?.(result, i, images.size);
  }
  let best = 0;
  for (let k = 1; k < thresholds.length; k++) if (curveSum[k] > curveSum[best]) best = k;
  const n = Math.max(1, results.length);
  const byThreshold = sums.map((t) => ({ ...t, score: t.score / n, f1: t.f1 / n, precision: t.precision / n, recall: t.recall / n }));
  return {
    metric: task.metric,
    score: mean(results.map((r) => r.score)),
    f1: mean(results.map((r) => r.f1)),
    precision: mean(results.map((r) => r.precision)),
    recall: mean(results.map((r) => r.recall)),
    chosen: chooseThreshold(byThreshold, threshold),
    byThreshold,
    bestF1: curveSum[best] / Math.max(1, results.length),
    bestThreshold: thresholds[best],
    images: results,
    overlays,
    seconds: (performance.now() - t0) / 1000,
  };
}

/**
 * The means of a map's foreground classes (all but class 0, the first of `scores.perClass`) over
 * those present in the truth or the prediction; 1 when none is (nothing to find, nothing found).
 */
export function foregroundMeans(scores: ClassScores): { meanIoU: number; meanDice: number; meanPrecision: number; meanRecall: number } {
  const present = scores.perClass.slice(1).filter((c) => c.present);
  const avg = (key: 'iou' | 'dice' | 'precision' | 'recall') => (present.length === 0 ? 1 : present.reduce((a, c) => a + c[key], 0) / present.length);
  return { meanIoU: avg('iou'), meanDice: avg('dice'), meanPrecision: avg('precision'), meanRecall: avg('recall') };
}

/**
 * evaluateSegmenter for a multi-class model: the argmax class map of each image against its mask
 * (class indices), scored by the mean IoU of the foreground classes (see classesTask). No
 * threshold applies: `chosen` is the configured threshold's entry, the only one.
 */
async function evaluateClasses(segmenter: Segmenter, classMap: readonly ClassEntry[], images: LabeledImages, options: EvaluateOptions): Promise<Evaluation> {
  const t0 = performance.now();
  const { task, threshold } = options;
  if (task.metric !== 'miou')
    throw new Error(`a ${classMap.length}-class model is scored by class (task metric "miou"), not by the "${task.metric}" of task ${task.name}`);
  const k = classMap.length;
  const all = Array.from({ length: k }, (_, c) => c);
  const byImage: ClassScores[] = [];
  const results: ImageEvaluation[] = [];
  const overlays: string[] = [];
  for await (const { i, pair, sample, probability } of predictedImages(segmenter, images, options)) {
    const { width, height } = sample.image;
    const predicted = { width, height, data: argmaxClasses(probability, k) };
    const scores = classScores(sample.mask, predicted, { classes: all });
    byImage.push(scores);
    const fg = foregroundMeans(scores);
    let predictedForeground = 0;
    for (const v of predicted.data) if (v !== 0) predictedForeground++;
    const result: ImageEvaluation = {
      name: pair.name,
      score: fg.meanIoU,
      f1: fg.meanDice,
      precision: fg.meanPrecision,
      recall: fg.meanRecall,
      rejected: null,
      bestF1: fg.meanDice,
      bestThreshold: threshold,
      predictedForeground: predictedForeground / Math.max(1, predicted.data.length),
    };
    results.push(result);
    if (options.overlays && i < options.overlays.count) {
      // foreground = any class but the background
      const p = new Float32Array(width * height);
      for (let j = 0; j < p.length; j++) p[j] = 1 - probability[j * k];
      const truth = { width, height, data: Uint8Array.from(sample.mask.data, (v) => (v ? 1 : 0)) };
      const file = join(options.overlays.dir, `${pair.name}.png`);
      await writeFileAtomic(file, overlayPng(sample.image, truth, p, 0.5, centreCrop(width, height, options.overlays.size)));
      overlays.push(file);
    }
    options.onImage?.(result, i, images.size);
  }
  const chosen: ThresholdScore = {
    threshold,
    score: mean(results.map((r) => r.score)),
    f1: mean(results.map((r) => r.f1)),
    precision: mean(results.map((r) => r.precision)),
    recall: mean(results.map((r) => r.recall)),
    rejected: 0,
  };
  const pooled = byImage.length > 0 ? pooledClassScores(byImage).perClass : null;
  return {
    metric: task.metric,
    score: chosen.score,
    f1: chosen.f1,
    precision: chosen.precision,
    recall: chosen.recall,
    chosen,
    byThreshold: [chosen],
    bestF1: chosen.f1,
    bestThreshold: threshold,
    images: results,
    classes: classMap.map((c, j) => {
      const k = pooled?.[j];
      return { name: c.name, value: c.value, iou: k?.iou ?? 0, dice: k?.dice ?? 0, truePixels: k?.truePixels ?? 0, predictedPixels: k?.predictedPixels ?? 0 };
    }),
    overlays,
    seconds: (performance.now() - t0) / 1000,
  };
}

/** The best threshold by the task's mean score; ties go to the one nearest `preferred`, then to the lower one. */
export function chooseThreshold(scores: readonly ThresholdScore[], preferred: number): ThresholdScore {
  let best = scores[0];
  for (const s of scores.slice(1)) {
    // 1e-9: 0.3 and 0.7 are equally near 0.5 although their float distances differ in the last bit
    const nearer = Math.abs(s.threshold - preferred) < Math.abs(best.threshold - preferred) - 1e-9;
    if (s.score > best.score || (s.score === best.score && nearer)) best = s;
  }
  return best;
}
