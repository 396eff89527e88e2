/**
 * The U-RISC task module: everything of fine-tuning that is U-RISC's and not the generic core's
 * (@emseg/segmentation).
 * - The release layout on disk (`imgs/<track>/{train,val,test}`, `label/<track>/{...}`) opened as
 *   labelled datasets, with the checks that catch the usual mistakes before any training: labels
 *   that are missing, inverted (membrane drawn white), empty or all membrane (wrong polarity,
 *   threshold or file), or images smaller than a patch.
 * - The submission format (membrane black 0, background white 255) and the competition's checks
 *   on it (binary, background at least 5x the membrane).
 * - Validation scoring by the official U-RISC F1 ({@link uriscTask}), which best-model selection
 *   compares.
 */
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  DataError,
  LabeledImages,
  type GreyImage,
  foregroundShare,
  plausibleReading,
  uriscDirectories,
  type LabeledPair,
  type LabeledSample,
  type LabelPolarity,
} from '@emseg/data';
import { checkUriscPrediction, pixelScores, readGrey8, uriscF1, UriscFormatError, type GreyImage as EvalGreyImage } from '@emseg/evaluation';
import type { SegmentationTask } from '@emseg/segmentation';

export interface UriscDataOptions {
  track: string;
  polarity: LabelPolarity;
  labelThreshold: number;
  /** Validation images held out of train when there is no val split (count, or fraction < 1). */
  holdout: number;
  /** Seed of the hold-out split. */
  seed: number;
  /** When given, every validation label is checked up front (see checkMembraneFraction), not at the first validation. */
  maxMembraneFraction?: number;
}

export interface UriscData {
  root: string;
  track: string;
  train: LabeledImages;
  validation: LabeledImages;
  /** Where the validation images come from: the release's val split, or held out of train. */
  validationSource: 'val' | 'holdout';
  /** The test split, when its images and labels are both present. */
  test: LabeledImages | null;
}

const isDir = (path: string) => existsSync(path) && statSync(path).isDirectory();

/**
 * Opens train / validation / test of a U-RISC-layout folder. Images and labels are paired by file
 * stem; a missing or extra label is an error naming the file.
 *
 * @example const data = await openUriscData('/data/urisc', { track: 'Track2', polarity: 'black-foreground', labelThreshold: 128, holdout: 10, seed: 0 });
 */
export async function openUriscData(rootDir: string, options: UriscDataOptions): Promise<UriscData> {
  const root = resolve(rootDir);
  const open = (split: 'train' | 'val' | 'test') =>
    LabeledImages.open({ ...uriscDirectories(root, split, options.track), polarity: options.polarity, threshold: options.labelThreshold });
  const trainDirs = uriscDirectories(root, 'train', options.track);
  for (const dir of [trainDirs.images, trainDirs.labels]) {
    if (!isDir(dir)) {
      throw new DataError(
        dir,
        'does not exist',
        `the U-RISC release layout under ${root}: imgs/${options.track}/{train,val,test} with labels in label/${options.track}/{train,val,test} (is --data the release root, and data.track right?)`,
      );
    }
  }
  const all = await open('train');
  if (all.size === 0) throw new DataError(trainDirs.images, 'holds no images', 'PNG/TIFF training images');
  const valDirs = uriscDirectories(root, 'val', options.track);
  let train = all;
  let validation: LabeledImages;
  let validationSource: UriscData['validationSource'];
  const val = isDir(valDirs.images) ? await open('val') : null;
  if (val !== null && val.size > 0) {
    validation = val;
    validationSource = 'val';
  } else {
    ({ train, validation } = all.split(options.holdout, options.seed));
    validationSource = 'holdout';
  }
  if (options.maxMembraneFraction !== undefined) {
    for (let i = 0; i < validation.size; i++) {
      checkMembraneFraction(validation.pairs[i], { label: await validation.readLabel(i) }, validation.polarity, options.maxMembraneFraction);
    }
  }
  const testDirs = uriscDirectories(root, 'test', options.track);
  const test = isDir(testDirs.images) && isDir(testDirs.labels) ? await open('test') : null;
  return { root, track: options.track, train, validation, validationSource, test: test !== null && test.size > 0 ? test : null };
}

/** Fraction of foreground (membrane) pixels of a mask. */
export function foregroundFraction(sample: LabeledSample): number {
  const { data } = sample.mask;
  let n = 0;
  for (let i = 0; i < data.length; i++) n += data[i];
  return n / data.length;
}

const percent = (f: number) => `${(f * 100).toFixed(f > 0 && f < 0.001 ? 3 : 1)}%`;

/** How a fraction check names the foreground: the noun, the fields to fix, and what is typical. */
export interface ForegroundWords {
  noun: string;
  plural: string;
  maxField: string;
  typical: string;
}

const URISC_WORDS: ForegroundWords = { noun: 'membrane', plural: 'membranes', maxField: 'data.maxMembraneFraction', typical: 'U-RISC: ~5%, black on white' };

/**
 * Membranes are a minority of pixels (U-RISC ~5%), but not none. A label with no membrane, all
 * membrane, or most pixels membrane was read with the wrong polarity or threshold, or is the wrong
 * file. Throws naming the label file, its fraction, the reading in force (`polarity` and the
 * sample's threshold) and a fix that gives a plausible fraction (one is searched for, see
 * plausibleReading); "inverted polarity" only when flipping it is that fix.
 */
export function checkMembraneFraction(
  pair: LabeledPair,
  sample: Pick<LabeledSample, 'label'>,
  polarity: LabelPolarity,
  maxFraction: number,
  words: ForegroundWords = URISC_WORDS,
): void {
  const { threshold, histogram } = sample.label;
  const fraction = foregroundShare(histogram, polarity, threshold);
  if (fraction > 0 && fraction <= maxFraction) return;
  const values = [...histogram.keys()].filter((v) => histogram[v] > 0);
  const range = values.length === 1 ? `every pixel has the value ${values[0]}` : `values ${values[0]}..${values[values.length - 1]}`;
  const reading = `when read as ${polarity} with data.labelThreshold ${threshold} (${range})`;
  const fix = plausibleReading(histogram, polarity, threshold, maxFraction);
  const inverted = fix !== null && fix.threshold === threshold;
  let problem: string;
  const { noun } = words;
  if (fraction === 0) problem = `no pixel is ${noun} (0% foreground) ${reading}`;
  else if (fraction === 1) problem = `every pixel is ${noun} (100% foreground) ${reading}`;
  else
    problem = `${percent(fraction)} of the pixels are ${noun} ${reading}, more than ${(maxFraction * 100).toFixed(0)}% (${words.maxField})${inverted ? ': the label polarity looks inverted' : ''}`;
  const minority = `${words.plural} on some but at most ${(maxFraction * 100).toFixed(0)}% of the pixels (${words.typical})`;
  if (fix === null) {
    throw new DataError(pair.label, problem, `${minority}; no polarity or threshold gives that, so check that this is the right label file for ${pair.image}`);
  }
  const flags = [
    ...(fix.polarity !== polarity ? [`--set data.polarity=${fix.polarity}`] : []),
    ...(fix.threshold !== threshold ? [`--set data.labelThreshold=${fix.threshold}`] : []),
  ].join(' ');
  const then = `${percent(foregroundShare(histogram, fix.polarity, fix.threshold))} ${noun}`;
  const lighter = fix.polarity === 'white-foreground';
  const why = inverted
    ? `if this dataset draws ${words.plural} ${lighter ? 'white' : 'black'}, run with ${flags}`
    : fix.polarity === polarity
      ? `its values all lie on one side of data.labelThreshold ${threshold}: run with ${flags}`
      : `if ${words.plural} are the ${lighter ? 'lighter' : 'darker'} values, run with ${flags}`;
  throw new DataError(pair.label, problem, `${minority}; ${why} (gives ${then}); or check that this is the right label file for ${pair.image}`);
}

/** Every image must hold at least one patch (or tile) of `size` pixels. */
export function checkImageSize(path: string, width: number, height: number, size: number, what: string, fix: string): void {
  if (width < size || height < size) {
    throw new DataError(
      path,
      `is ${width} x ${height} pixels, smaller than the ${what} (${size} x ${size})`,
      `images of at least ${size} x ${size} pixels, or ${fix}`,
    );
  }
}

/**
 * Decodes the training images with their masks, checking sizes against the patch size and the
 * membrane fraction against the polarity guess.
 */
export async function loadTrainingSamples(
  images: LabeledImages,
  patchSize: number,
  maxMembraneFraction: number,
  patchStride?: number,
): Promise<LabeledSample[]> {
  for (const pair of images.pairs) {
    // The suggestion must pass the config checks too: a multiple of 32, and a stride no larger.
    const fit = Math.floor(Math.min(pair.width, pair.height) / 32) * 32;
    const fix =
      fit >= 32
        ? `a smaller patches.size (--set patches.size=${fit}${patchStride !== undefined && patchStride > fit ? ` --set patches.stride=${fit}` : ''})`
        : 'larger images (no patch of 32 px, the smallest U-Net input, fits this one)';
    checkImageSize(pair.image, pair.width, pair.height, patchSize, 'training patch', fix);
  }
  const samples: LabeledSample[] = [];
  for (let i = 0; i < images.size; i++) {
    const sample = await images.load(i);
    checkMembraneFraction(images.pairs[i], sample, images.polarity, maxMembraneFraction);
    samples.push(sample);
  }
  return samples;
}

/**
 * The binary U-RISC submission of a probability map: membrane (p >= threshold) black 0, the rest
 * white 255, 8-bit.
 *
 * @example toSubmission(Float32Array.of(0.9, 0.1), 2, 1, 0.5).data // [0, 255]
 */
export function toSubmission(probability: Float32Array, width: number, height: number, threshold: number): GreyImage & { data: Uint8Array } {
  const data = new Uint8Array(probability.length);
  for (let i = 0; i < data.length; i++) data[i] = probability[i] >= threshold ? 0 : 255;
  return { width, height, bitDepth: 8, data };
}

/** Fraction of pixels a submission draws as membrane (grey 0). */
export function membraneFraction(submission: { data: Uint8Array }): number {
  const { data } = submission;
  let n = 0;
  for (let i = 0; i < data.length; i++) n += data[i] === 0 ? 1 : 0;
  return n / data.length;
}

/**
 * Why the official scorer would reject this submission (not binary, or background less than 5x
 * the membrane pixels), or null when it passes.
 */
export function submissionProblem(submission: { data: Uint8Array }, name: string): string | null {
  const counts = new Float64Array(256);
  const { data } = submission;
  for (let i = 0; i < data.length; i++) counts[data[i]]++;
  try {
    checkUriscPrediction(counts, name);
    return null;
  } catch (err) {
    if (err instanceof UriscFormatError) return err.message;
    throw err;
  }
}

const invert = (grey: EvalGreyImage): EvalGreyImage => ({ ...grey, data: grey.data.map((v) => 255 - v) });

/**
 * Validation the U-RISC way: every label's membrane fraction is checked against the polarity guess,
 * and the binary prediction is scored with the official F1 against the label file read as the
 * competition reads it (membrane black). A prediction the official scorer would reject scores F1 0,
 * with precision and recall from plain pixel counts for information.
 */
export function uriscTask(options: { maxMembraneFraction: number }): SegmentationTask {
  // The label as the scorer reads it, of the last image: validation scores each image at several thresholds.
  let cached: { key: string; truth: EvalGreyImage } | null = null;
  const truthOf = async (label: string, polarity: string): Promise<EvalGreyImage> => {
    const key = `${polarity}\0${label}`;
    if (cached?.key !== key) {
      const grey = await readGrey8(label);
      cached = { key, truth: polarity === 'black-foreground' ? grey : invert(grey) };
    }
    return cached.truth;
  };
  return {
    name: 'urisc',
    metric: 'f1',
    checkSample: (pair, sample, images) => checkMembraneFraction(pair, sample, images.polarity, options.maxMembraneFraction),
    scoreImage: async ({ images, pair, sample, probability, binary, threshold }) => {
      const { width, height } = sample.image;
      const submission = toSubmission(probability, width, height, threshold);
      const name = `prediction of ${pair.image}`;
      const rejected = submissionProblem(submission, name);
      if (rejected !== null) {
        const scores = pixelScores({ width, height, data: binary }, sample.mask);
        return { score: 0, f1: 0, precision: scores.precision, recall: scores.recall, rejected };
      }
      const truth = await truthOf(pair.label, images.polarity);
      const official = uriscF1(submission, truth, { prediction: name, groundTruth: pair.label });
      return { score: official.f1, f1: official.f1, precision: official.precision, recall: official.recall, rejected: null };
    },
  };
}
