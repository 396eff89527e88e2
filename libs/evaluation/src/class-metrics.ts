/**
 * Multi-class semantic segmentation scores: per-class IoU (Jaccard), Dice (F1), precision and
 * recall of a predicted class map against the true one, and their means. Each class is scored
 * one-vs-rest with the definitions of scikit-learn's `jaccard_score`, `f1_score` and
 * `precision_recall_fscore_support` with `average=None`, `labels=classes` and the same
 * `zero_division` (`y_true` = true map, `y_pred` = predicted map, both flattened):
 * - IoU = TP / (TP + FP + FN), Dice = 2 TP / (2 TP + FP + FN), precision = TP / (TP + FP),
 *   recall = TP / (TP + FN), where TP counts pixels of the class in both maps, FP pixels
 *   predicted as the class but true otherwise, FN pixels true as the class but predicted otherwise.
 * - A 0 / 0 (a class absent from both maps; precision of a class never predicted; recall of a
 *   class never true) is `zeroDivision`: 0 by default (scikit-learn's "warn"), or 1 or NaN.
 * - The means run over the classes *present* (in the true or the predicted map), so a class absent
 *   from both never counts, whatever `zeroDivision` says; values that are NaN (`zeroDivision: NaN`)
 *   are skipped too, like scikit-learn's `average="macro"` does with `zero_division=np.nan`. With
 *   the default class list this is exactly scikit-learn's `average="macro"`.
 * - `ignoreValue`: pixels whose *true* class is this value are left out (as `y_true != ignore`
 *   filtering, the `ignore_index` of semantic segmentation benchmarks). It is never a class: where
 *   the prediction holds it on a scored pixel, that pixel is a false negative of its true class and
 *   a false positive of none.
 * Only pixel values matter, not geometry: a 3D class volume can be passed with height = rows * slices.
 */
import { forEachPairRun } from './pair-runs.js';
import { assertSameSize, EvaluationInputError, type Image2D } from './image.js';

/** A class map: one integer class id per pixel. */
export type ClassMap = Image2D<Uint8Array | Uint16Array | Int32Array>;

export interface ClassScoreOptions {
  /**
   * The classes to score, in this order. Default: every value found in either map on the scored
   * pixels (except `ignoreValue`), ascending. Values outside the list count as any other class.
   */
  classes?: readonly number[];
  /** Pixels whose true class is this value are not scored. */
  ignoreValue?: number;
  /** The value of a 0 / 0: 0 (default), 1 or NaN, as scikit-learn's `zero_division`. */
  zeroDivision?: number;
}

/** The scores of one class. */
export interface ClassScore {
  classId: number;
  /** Pixels of the class in the true map (scikit-learn's support), TP + FN. */
  truePixels: number;
  /** Pixels of the class in the predicted map, TP + FP. */
  predictedPixels: number;
  truePositives: number;
  falsePositives: number;
  falseNegatives: number;
  /** The class occurs in the true or the predicted map (TP + FP + FN > 0); only these are averaged. */
  present: boolean;
  iou: number;
  /** Dice coefficient = F1 of the class. */
  dice: number;
  precision: number;
  recall: number;
}

export interface ClassScores {
  /** One entry per class, in the order of `classes` (default ascending). */
  perClass: ClassScore[];
  /** Number of classes present, over which the means run. */
  presentClasses: number;
  meanIoU: number;
  meanDice: number;
  meanPrecision: number;
  meanRecall: number;
  /** Fraction of scored pixels whose predicted class equals the true one (scikit-learn's `accuracy_score`). */
  pixelAccuracy: number;
  /** Number of scored pixels (those whose true class is not `ignoreValue`). */
  pixels: number;
}

function ratio(numerator: number, denominator: number, zeroDivision: number): number {
  return denominator === 0 ? zeroDivision : numerator / denominator;
}

/** Mean of the non-NaN values; NaN when there are none. */
function meanOf(values: number[]): number {
  const kept = values.filter((v) => !Number.isNaN(v));
  return kept.length === 0 ? NaN : kept.reduce((s, v) => s + v, 0) / kept.length;
}

interface ClassCounts {
  truePixels: Map<number, number>;
  predictedPixels: Map<number, number>;
  truePositives: Map<number, number>;
  pixels: number;
  correct: number;
}

function countClasses(trueClasses: ClassMap, predictedClasses: ClassMap, ignoreValue: number | undefined): ClassCounts {
  assertSameSize(trueClasses, predictedClasses, 'true class map', 'predicted class map');
  const t = trueClasses.data;
  const p = predictedClasses.data;
  const counts: ClassCounts = { truePixels: new Map(), predictedPixels: new Map(), truePositives: new Map(), pixels: 0, correct: 0 };
  const bump = (m: Map<number, number>, k: number, n: number) => m.set(k, (m.get(k) ?? 0) + n);
  const add = (a: number, b: number, n: number) => {
    if (a === ignoreValue) return;
    counts.pixels += n;
    bump(counts.truePixels, a, n);
    if (b !== ignoreValue) bump(counts.predictedPixels, b, n);
    if (a === b) {
      bump(counts.truePositives, a, n);
      counts.correct += n;
    }
  };
  const check = (i: number) => {
    if (!Number.isInteger(t[i]) || !Number.isInteger(p[i])) {
      const x = i % trueClasses.width;
      const y = Math.floor(i / trueClasses.width);
      const which = Number.isInteger(t[i]) ? 'predicted class map' : 'true class map';
      throw new EvaluationInputError(`${which} must hold integer class ids; pixel ${i} (x ${x}, y ${y}) has ${t[i]} (true) and ${p[i]} (predicted)`);
    }
  };
  // Runs of equal (true, predicted) pairs are counted first and added once.
  forEachPairRun(t, p, check, add);
  return counts;
}

function classList(counts: ClassCounts, options: ClassScoreOptions): number[] {
  if (options.classes === undefined) {
    const all = new Set([...counts.truePixels.keys(), ...counts.predictedPixels.keys()]);
    return [...all].sort((a, b) => a - b);
  }
  const seen = new Set<number>();
  for (const c of options.classes) {
    if (!Number.isInteger(c)) throw new EvaluationInputError(`classes must be integers, got ${c}`);
    if (c === options.ignoreValue) throw new EvaluationInputError(`classes must not contain the ignore value ${c}`);
    if (seen.has(c)) throw new EvaluationInputError(`classes lists ${c} twice`);
    seen.add(c);
  }
  return [...options.classes];
}

/**
 * Per-class and mean IoU, Dice, precision and recall of a predicted class map against the true one.
 * @example classScores(image(3, 1, Uint8Array.of(0, 1, 1)), image(3, 1, Uint8Array.of(0, 1, 0))).meanIoU // (1/2 + 1/2) / 2
 */
export function classScores(trueClasses: ClassMap, predictedClasses: ClassMap, options: ClassScoreOptions = {}): ClassScores {
  const zeroDivision = options.zeroDivision ?? 0;
  if (!(Number.isNaN(zeroDivision) || zeroDivision === 0 || zeroDivision === 1)) {
    throw new EvaluationInputError(`zeroDivision must be 0, 1 or NaN, got ${zeroDivision}`);
  }
  if (options.ignoreValue !== undefined && !Number.isInteger(options.ignoreValue)) {
    throw new EvaluationInputError(`ignoreValue must be an integer, got ${options.ignoreValue}`);
  }
  const counts = countClasses(trueClasses, predictedClasses, options.ignoreValue);
  const perClass = classList(counts, options).map((classId): ClassScore => {
    const tp = counts.truePositives.get(classId) ?? 0;
    const truePixels = counts.truePixels.get(classId) ?? 0;
    const predictedPixels = counts.predictedPixels.get(classId) ?? 0;
    return classScore(classId, tp, truePixels, predictedPixels, zeroDivision);
  });
  return summarise(perClass, counts.pixels, counts.correct);
}

/** The scores of one class from its counts. */
function classScore(classId: number, tp: number, truePixels: number, predictedPixels: number, zeroDivision: number): ClassScore {
  const fp = predictedPixels - tp;
  const fn = truePixels - tp;
  return {
    classId,
    truePixels,
    predictedPixels,
    truePositives: tp,
    falsePositives: fp,
    falseNegatives: fn,
    present: tp + fp + fn > 0,
    iou: ratio(tp, tp + fp + fn, zeroDivision),
    dice: ratio(2 * tp, 2 * tp + fp + fn, zeroDivision),
    precision: ratio(tp, tp + fp, zeroDivision),
    recall: ratio(tp, tp + fn, zeroDivision),
  };
}

/** Per-class scores with their means over the classes present, and the pixel accuracy. */
function summarise(perClass: ClassScore[], pixels: number, correct: number): ClassScores {
  const present = perClass.filter((c) => c.present);
  return {
    perClass,
    presentClasses: present.length,
    meanIoU: meanOf(present.map((c) => c.iou)),
    meanDice: meanOf(present.map((c) => c.dice)),
    meanPrecision: meanOf(present.map((c) => c.precision)),
    meanRecall: meanOf(present.map((c) => c.recall)),
    pixelAccuracy: pixels === 0 ? NaN : correct / pixels,
    pixels,
  };
}

/**
 * The per-class scores of several class maps pooled, as if their pixels were one map: counts
 * summed class by class (the lists must score the same classes in the same order), ratios and
 * means recomputed with `zeroDivision` (default 0), as {@link classScores} would compute them.
 * @example pooledClassScores([classScores(t1, p1, { classes }), classScores(t2, p2, { classes })]).meanIoU
 */
export function pooledClassScores(scores: readonly ClassScores[], zeroDivision = 0): ClassScores {
  if (scores.length === 0) throw new EvaluationInputError('pooledClassScores: no scores to pool');
  const ids = scores[0].perClass.map((c) => c.classId);
  for (const s of scores) {
    if (s.perClass.map((c) => c.classId).join() !== ids.join()) {
      throw new EvaluationInputError(`pooledClassScores: class lists differ (${ids.join(', ')} vs ${s.perClass.map((c) => c.classId).join(', ')})`);
    }
  }
  const sum = (k: number, key: 'truePositives' | 'truePixels' | 'predictedPixels') => scores.reduce((a, s) => a + s.perClass[k][key], 0);
  const perClass = ids.map((classId, k) => classScore(classId, sum(k, 'truePositives'), sum(k, 'truePixels'), sum(k, 'predictedPixels'), zeroDivision));
  const pixels = scores.reduce((a, s) => a + s.pixels, 0);
  const correct = scores.reduce((a, s) => a + (s.pixels === 0 ? 0 : Math.round(s.pixelAccuracy * s.pixels)), 0);
  return summarise(perClass, pixels, correct);
}
