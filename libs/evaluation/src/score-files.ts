/**
 * Score prediction images against ground-truth images on disk with any of the metrics, one pair
 * at a time (a full U-RISC pair decodes to ~200 MB). This is what the `score` CLI runs.
 *
 * Both images are 8-bit grey in the competition convention (membrane black 0, background 255):
 * - `f1`: under `protocol: 'urisc'` the official U-RISC F1 (format checks, value-weighted sums; a
 *   prediction the competition rejects scores 0 and carries the reason in `rejected`);
 *   under `protocol: 'pixel'` pixel scores of the membrane masks (grey < 128);
 * - `vrand`, `vinfo`: ISBI 2012 scores with the prediction as cell probability grey / 255 and the
 *   ground-truth cells grey >= 128; per threshold averaged over images, best threshold reported;
 * - `randerror`: the original ISBI 2012 Rand error (no thinning), averaged the same way;
 * - `assd`: average symmetric surface distance between the membrane masks (grey < 128).
 */
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { assd, type AssdResult } from './assd.js';
import { assertSameSize, cellMaskFromGrey, EvaluationInputError, type GreyImage, membraneMaskFromGrey, probabilityFromGrey } from './image.js';
import { isbiScores, isbiThresholds, meanThresholdScores, type IsbiThresholdScores } from './isbi.js';
import { type ImagePair, pairImageFolders } from './pairing.js';
import { pixelScores } from './pixel-scores.js';
import { readGrey8 } from './read-grey.js';
import { uriscF1OrRejected } from './urisc-folder.js';

export const METRICS = ['f1', 'vrand', 'vinfo', 'randerror', 'assd'] as const;
export type MetricName = (typeof METRICS)[number];
export const PROTOCOLS = ['urisc', 'pixel'] as const;
export type Protocol = (typeof PROTOCOLS)[number];

export interface ScoreFilesOptions {
  protocol?: Protocol;
  metrics?: readonly MetricName[];
  /** nm per pixel for ASSD in nm (default 2.18, U-RISC). */
  pixelSizeNm?: number;
  /** ISBI thresholds (default 0, 0.1, ..., 1). */
  thresholds?: readonly number[];
  /** Follow the competition script and ignore ground truths without a prediction. */
  ignoreUnpairedGroundTruth?: boolean;
  /** Called after each image, e.g. for progress output. */
  onImage?: (result: ImageResult, index: number, total: number) => void;
}

/** Pixel metrics of one image pair, or their mean over the images in a summary. */
export interface PixelMetricValues {
  /** In a summary the mean per-image F1: the U-RISC folder score under protocol urisc. */
  f1?: number;
  precision?: number;
  recall?: number;
  iou?: number;
  pixelError?: number;
}

/** The metrics of one image pair; only the requested ones are present. */
export interface ImageResult extends PixelMetricValues {
  name: string;
  prediction: string;
  groundTruth: string;
  /** Best V_Rand / V_Info of this image alone over the thresholds. */
  vRand?: number;
  vInfo?: number;
  randError?: number;
  assd?: AssdResult;
  /** `f1` under protocol urisc: why the competition rejects this prediction (F1 0), or null. */
  rejected?: string | null;
}

export interface ScoreSummary extends PixelMetricValues {
  images: number;
  /** `f1` under protocol urisc: how many predictions were rejected (scored 0, counted in the means). */
  rejected?: number;
  /** Best over thresholds of the image-averaged V_Rand / V_Info, and that threshold. */
  vRand?: number;
  vRandThreshold?: number;
  vInfo?: number;
  vInfoThreshold?: number;
  /** 1 - best over thresholds of the image-averaged V_Rand without thinning. */
  randError?: number;
  /** Mean per-image ASSD, pixels and nm. */
  assd?: number;
  assdNm?: number;
}

export interface ScoreFilesResult {
  protocol: Protocol;
  metrics: MetricName[];
  pixelSizeNm: number;
  summary: ScoreSummary;
  images: ImageResult[];
  /** Image-averaged ISBI curves per threshold (thinned for vrand/vinfo, not for randerror). */
  isbiCurve?: IsbiThresholdScores[];
  randErrorCurve?: IsbiThresholdScores[];
}

/** The (prediction, ground truth) pairs of two folders (by name, see pairImageFolders) or of two files. */
export async function pairsOf(pred: string, gt: string, options: Pick<ScoreFilesOptions, 'ignoreUnpairedGroundTruth'>): Promise<ImagePair[]> {
  const kind = async (p: string, role: string) => {
    try {
      return (await stat(p)).isDirectory() ? 'dir' : 'file';
    } catch {
      throw new EvaluationInputError(`${role} path ${p} does not exist`, p);
    }
  };
  const [pk, gk] = await Promise.all([kind(pred, 'prediction'), kind(gt, 'ground-truth')]);
  if (pk !== gk) {
    throw new EvaluationInputError(
      `--pred and --gt must both be folders or both be files: ${pred} is a ${pk === 'dir' ? 'folder' : 'file'}, ` +
        `${gt} is a ${gk === 'dir' ? 'folder' : 'file'}`,
    );
  }
  if (pk === 'file') return [{ name: basename(pred), prediction: pred, groundTruth: gt }];
  return pairImageFolders(pred, gt, { ignoreUnpairedGroundTruth: options.ignoreUnpairedGroundTruth ?? false });
}

function mean(xs: number[]): number {
  return xs.reduce((s, x) => s + x, 0) / xs.length;
}

/** Element-wise running sum of ISBI curves. */
function addCurve(acc: IsbiThresholdScores[] | undefined, curve: IsbiThresholdScores[]): IsbiThresholdScores[] {
  if (!acc) return curve.map((p) => ({ ...p }));
  return acc.map((p, k) => ({
    threshold: p.threshold,
    vRand: p.vRand + curve[k].vRand,
    vInfo: p.vInfo + curve[k].vInfo,
    randSplit: p.randSplit + curve[k].randSplit,
    randMerge: p.randMerge + curve[k].randMerge,
    infoSplit: p.infoSplit + curve[k].infoSplit,
    infoMerge: p.infoMerge + curve[k].infoMerge,
  }));
}

function best(curve: IsbiThresholdScores[], key: 'vRand' | 'vInfo'): IsbiThresholdScores {
  let b = curve[0];
  for (const p of curve) if (p[key] > b[key]) b = p;
  return b;
}

/** The probability levels (float32 of grey / 255, as `probabilityFromGrey` stores them) present in an 8-bit image. */
function greyLevels(grey: GreyImage): number[] {
  const seen = new Uint8Array(256);
  for (let i = 0; i < grey.data.length; i++) seen[grey.data[i]] = 1;
  const levels: number[] = [];
  for (let v = 0; v < 256; v++) if (seen[v]) levels.push(Math.fround(v / 255));
  return levels;
}

function scoreImage(
  pair: ImagePair,
  pred: GreyImage,
  gt: GreyImage,
  metrics: Set<MetricName>,
  protocol: Protocol,
  options: { pixelSizeNm: number; thresholds: readonly number[] },
): { result: ImageResult; isbi?: IsbiThresholdScores[]; rand?: IsbiThresholdScores[] } {
  assertSameSize(pred, gt, pair.prediction, pair.groundTruth);
  const result: ImageResult = { name: pair.name, prediction: pair.prediction, groundTruth: pair.groundTruth };
  const out: { result: ImageResult; isbi?: IsbiThresholdScores[]; rand?: IsbiThresholdScores[] } = { result };
  const needMasks = metrics.has('assd') || (metrics.has('f1') && protocol === 'pixel');
  const predMembrane = needMasks ? membraneMaskFromGrey(pred) : undefined;
  const trueMembrane = needMasks ? membraneMaskFromGrey(gt) : undefined;
  if (metrics.has('f1')) {
    if (protocol === 'urisc') {
      const s = uriscF1OrRejected(pred, gt, { prediction: pair.prediction, groundTruth: pair.groundTruth });
      Object.assign(result, { f1: s.f1, precision: s.precision, recall: s.recall, rejected: s.rejected });
    } else {
      const s = pixelScores(predMembrane!, trueMembrane!);
      Object.assign(result, { f1: s.f1, precision: s.precision, recall: s.recall, iou: s.iou, pixelError: s.pixelError });
    }
  }
  if (metrics.has('vrand') || metrics.has('vinfo') || metrics.has('randerror')) {
    const slice = { cellProbability: probabilityFromGrey(pred), trueCells: cellMaskFromGrey(gt) };
    const levels = greyLevels(pred);
    if (metrics.has('vrand') || metrics.has('vinfo')) {
      const s = isbiScores(slice, { thresholds: options.thresholds, levels });
      if (metrics.has('vrand')) result.vRand = s.vRand;
      if (metrics.has('vinfo')) result.vInfo = s.vInfo;
      out.isbi = s.curve;
    }
    if (metrics.has('randerror')) {
      const s = isbiScores(slice, { thresholds: options.thresholds, thinning: false, levels });
      result.randError = 1 - s.vRand;
      out.rand = s.curve;
    }
  }
  if (metrics.has('assd')) result.assd = assd(predMembrane!, trueMembrane!, { pixelSizeNm: options.pixelSizeNm });
  return out;
}

/**
 * Score a prediction folder against a ground-truth folder (paired by name), or one prediction file
 * against one ground-truth file.
 * @example await scoreFiles('pred', 'gt', { protocol: 'urisc', metrics: ['f1', 'vrand', 'vinfo', 'assd'] })
 */
export async function scoreFiles(predictionPath: string, groundTruthPath: string, options: ScoreFilesOptions = {}): Promise<ScoreFilesResult> {
  const protocol = options.protocol ?? 'urisc';
  if (!(PROTOCOLS as readonly string[]).includes(protocol)) {
    throw new EvaluationInputError(`unknown protocol "${protocol}": expected one of ${PROTOCOLS.join(', ')}`);
  }
  const metricList = [...(options.metrics ?? ['f1'])];
  for (const m of metricList) {
    if (!(METRICS as readonly string[]).includes(m)) {
      throw new EvaluationInputError(`unknown metric "${m}": expected some of ${METRICS.join(', ')}`);
    }
  }
  if (metricList.length === 0) throw new EvaluationInputError(`no metric requested: choose from ${METRICS.join(', ')}`);
  const pixelSizeNm = options.pixelSizeNm ?? 2.18;
  if (!(pixelSizeNm > 0)) throw new EvaluationInputError(`pixel size must be a positive number of nm, got ${pixelSizeNm}`);
  const thresholds = options.thresholds ?? isbiThresholds();
  const metrics = new Set<MetricName>(metricList);

  const pairs = await pairsOf(predictionPath, groundTruthPath, options);
  const images: ImageResult[] = [];
  let isbiSum: IsbiThresholdScores[] | undefined;
  let randSum: IsbiThresholdScores[] | undefined;
  for (const [k, pair] of pairs.entries()) {
    const [pred, gt] = await Promise.all([readGrey8(pair.prediction), readGrey8(pair.groundTruth)]);
    const { result, isbi, rand } = scoreImage(pair, pred, gt, metrics, protocol, { pixelSizeNm, thresholds });
    if (isbi) isbiSum = addCurve(isbiSum, isbi);
    if (rand) randSum = addCurve(randSum, rand);
    images.push(result);
    options.onImage?.(result, k, pairs.length);
  }

  const summary: ScoreSummary = { images: images.length };
  const out: ScoreFilesResult = { protocol, metrics: metricList, pixelSizeNm, summary, images };
  if (metrics.has('f1')) {
    summary.f1 = mean(images.map((r) => r.f1!));
    summary.precision = mean(images.map((r) => r.precision!));
    summary.recall = mean(images.map((r) => r.recall!));
    if (protocol === 'urisc') summary.rejected = images.filter((r) => r.rejected).length;
    if (protocol === 'pixel') {
      summary.iou = mean(images.map((r) => r.iou!));
      summary.pixelError = mean(images.map((r) => r.pixelError!));
    }
  }
  if (isbiSum) {
    const curve = isbiSum.map((p) => meanThresholdScores(p, images.length));
    out.isbiCurve = curve;
    if (metrics.has('vrand')) {
      const b = best(curve, 'vRand');
      summary.vRand = b.vRand;
      summary.vRandThreshold = b.threshold;
    }
    if (metrics.has('vinfo')) {
      const b = best(curve, 'vInfo');
      summary.vInfo = b.vInfo;
      summary.vInfoThreshold = b.threshold;
    }
  }
  if (randSum) {
    const curve = randSum.map((p) => meanThresholdScores(p, images.length));
    out.randErrorCurve = curve;
    summary.randError = 1 - best(curve, 'vRand').vRand;
  }
  if (metrics.has('assd')) {
    summary.assd = mean(images.map((r) => r.assd!.assd));
    summary.assdNm = summary.assd * pixelSizeNm;
  }
  return out;
}
