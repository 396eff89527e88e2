/**
 * The U-RISC release layout on disk (`imgs/<track>/{train,val,test}`, `label/<track>/{...}`) opened
 * as labelled datasets, with the checks that catch the usual mistakes before any training: labels
 * that are missing, inverted (membrane drawn white), or images smaller than a patch.
 */
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { DataError, LabeledImages, uriscDirectories, type LabeledPair, type LabeledSample, type LabelPolarity } from '@emseg/data';

export interface UriscDataOptions {
  track: string;
  polarity: LabelPolarity;
  labelThreshold: number;
  /** Validation images held out of train when there is no val split (count, or fraction < 1). */
  holdout: number;
  /** Seed of the hold-out split. */
  seed: number;
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

/**
 * Membranes are a minority of pixels (U-RISC ~5%); a label where most pixels are "membrane" was
 * read with the wrong polarity. Throws naming the label file, its fraction and the fix.
 */
export function checkMembraneFraction(pair: LabeledPair, sample: LabeledSample, polarity: LabelPolarity, maxFraction: number): void {
  const fraction = foregroundFraction(sample);
  if (fraction > maxFraction) {
    const other: LabelPolarity = polarity === 'black-foreground' ? 'white-foreground' : 'black-foreground';
    throw new DataError(
      pair.label,
      `${(fraction * 100).toFixed(1)}% of the pixels are membrane when read as ${polarity} (more than ${(maxFraction * 100).toFixed(0)}%): the label polarity looks inverted`,
      `membranes to be a minority of pixels (U-RISC: ~5%); if this dataset draws membranes ${polarity === 'black-foreground' ? 'white' : 'black'}, run with --set data.polarity=${other}`,
    );
  }
}

/** Every image must hold at least one patch (or tile) of `size` pixels. */
export function checkImageSize(path: string, width: number, height: number, size: number, what: string, fix: string): void {
  if (width < size || height < size) {
    throw new DataError(path, `is ${width} x ${height} pixels, smaller than the ${what} (${size} x ${size})`, `images of at least ${size} x ${size} pixels, or ${fix}`);
  }
}

/**
 * Decodes the training images with their masks, checking sizes against the patch size and the
 * membrane fraction against the polarity guess.
 */
export async function loadTrainingSamples(images: LabeledImages, patchSize: number, maxMembraneFraction: number): Promise<LabeledSample[]> {
  for (const pair of images.pairs) {
    checkImageSize(pair.image, pair.width, pair.height, patchSize, 'training patch', `a smaller patches.size (--set patches.size=${Math.max(32, Math.floor(Math.min(pair.width, pair.height) / 32) * 32)})`);
  }
  const samples: LabeledSample[] = [];
  for (let i = 0; i < images.size; i++) {
    const sample = await images.load(i);
    checkMembraneFraction(images.pairs[i], sample, images.polarity, maxMembraneFraction);
    samples.push(sample);
  }
  return samples;
}
