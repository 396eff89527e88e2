/**
 * The generic binary segmentation task (`segment`): any EM images with binary masks, in the
 * layout most EM datasets ship (Lucchi++, Kasthuri++, ISBI 2012 once exported, ...):
 *
 *   DIR/images/*.png|tif   DIR/masks/*.png|tif                       one set, split here by image
 *   DIR/images/{train,val,test}/   DIR/masks/{train,val,test}/     given splits
 *   DIR/{train,val,test}/images/   DIR/{train,val,test}/masks/     given splits
 *   DIR/imgs/<track>/{train,val,test}/   DIR/label/<track>/{...}     the U-RISC release (one track)
 *
 * Images and masks pair by file stem; 3D multi-page TIFF stacks (with mask stacks of the same
 * depth) train and validate slice by slice, a stack held out whole. Masks are 8-bit; foreground is the `polarity` side of
 * `labelThreshold` (white-foreground by default). Validation and test are scored by foreground
 * IoU (CEM500K's benchmark metric), with F1 (Dice), precision and recall beside it.
 *
 * An instance task also has `instances/` beside every `masks/` folder: 16-bit instance ids (0 =
 * background) with the same stems. The binary prediction becomes instances (connected components
 * or a seeded watershed) and is scored by panoptic quality (PQ) and F1 at IoU 0.5 and 0.75, as
 * empanada reports them.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import {
  DataError,
  fileStem,
  foregroundShare,
  LabeledImages,
  labelToClasses,
  listImageFiles,
  readImage,
  readStackSlice,
  writeImage,
  uriscDirectories,
  writeStack,
  type LabeledPair,
  type LabeledSample,
  type LabelPolarity,
} from '@emseg/data';
import {
  classScores,
  connectedInstances,
  pooledClassScores,
  type ClassScores,
  instanceScores,
  isbiBinaryScores,
  type Mask,
  pixelScores,
  scoresFromCounts,
  watershedInstances,
  type Instances,
  type InstanceScores,
  type PixelScores,
} from '@emseg/evaluation';
import { foregroundMeans, type ClassEntry, type SegmentationTask } from '@emseg/segmentation';
import { checkImageSize, checkMembraneFraction, type ForegroundWords } from './urisc.js';

export type SplitName = 'train' | 'val' | 'test';

export interface SegmentDataOptions {
  polarity: LabelPolarity;
  labelThreshold: number;
  /** Validation images held out of train when there is no val split (count, or fraction < 1). */
  holdout: number;
  seed: number;
  /** An instance task: every mask needs its instance labels in `instances/` beside `masks/`. */
  instances?: boolean;
  /** A multi-class task: the mask value of each class by index (background first); see LabeledImages. */
  classes?: readonly number[] | null;
}

export interface SegmentData {
  root: string;
  /** Which of the layouts the folder has. */
  layout: 'flat' | 'images-masks-splits' | 'split-folders' | 'urisc';
  train: LabeledImages;
  validation: LabeledImages;
  validationSource: 'val' | 'holdout';
  test: LabeledImages | null;
  /** Instance tasks: the instance label file of every pair, keyed by the pair's mask path. */
  instanceFiles: ReadonlyMap<string, string> | null;
}

export const FOREGROUND_WORDS: ForegroundWords = {
  noun: 'foreground',
  plural: 'foreground objects',
  maxField: 'data.maxForegroundFraction',
  typical: 'mitochondria ~5-15%, white on black',
};

const isDir = (path: string) => existsSync(path) && statSync(path).isDirectory();

/** The images and masks folders of `split` under `root` for `layout` (the whole set for 'flat'; `track` for 'urisc'). */
export function segmentDirectories(root: string, layout: SegmentData['layout'], split?: SplitName, track = 'Track1'): { images: string; labels: string } {
  if (layout === 'urisc') return uriscDirectories(root, split ?? 'train', track);
  if (layout === 'flat' || split === undefined) return { images: join(root, 'images'), labels: join(root, 'masks') };
  if (layout === 'images-masks-splits') return { images: join(root, 'images', split), labels: join(root, 'masks', split) };
  return { images: join(root, split, 'images'), labels: join(root, split, 'masks') };
}

function detectLayout(root: string): { layout: SegmentData['layout']; track?: string } {
  if (isDir(join(root, 'images')) && isDir(join(root, 'masks'))) return { layout: isDir(join(root, 'images', 'train')) ? 'images-masks-splits' : 'flat' };
  if (isDir(join(root, 'train', 'images'))) return { layout: 'split-folders' };
  if (isDir(join(root, 'imgs')) && isDir(join(root, 'label'))) {
    const tracks = readdirSync(join(root, 'imgs')).filter((t) => isDir(join(root, 'imgs', t, 'train')));
    if (tracks.length !== 1) {
      throw new DataError(
        join(root, 'imgs'),
        `holds ${tracks.length === 0 ? 'no track with a train/ split' : `several tracks (${tracks.join(', ')})`}`,
        'one U-RISC track (imgs/<track>/train)',
      );
    }
    return { layout: 'urisc', track: tracks[0] };
  }
  throw new DataError(
    root,
    isDir(root) ? 'has neither images/ + masks/ nor train/images/ (nor the U-RISC imgs/ + label/)' : 'does not exist',
    'a labelled folder: images/ and masks/ paired by file stem, optionally with train/, val/, test/ inside each (or train/images, train/masks, ...)',
  );
}

/**
 * Opens train / validation / test of a labelled folder (see the module comment). Without a val
 * split, `holdout` images of train are held out (seeded, by image); without a test split, none.
 *
 * @example const data = await openSegmentData('/data/lucchi', { polarity: 'white-foreground', labelThreshold: 128, holdout: 0.2, seed: 0 });
 */
export async function openSegmentData(rootDir: string, options: SegmentDataOptions): Promise<SegmentData> {
  const root = resolve(rootDir);
  const { layout, track } = detectLayout(root);
  const open = async (split?: SplitName): Promise<LabeledImages | null> => {
    const dirs = segmentDirectories(root, layout, split, track);
    if (!isDir(dirs.images)) return null;
    if (!isDir(dirs.labels)) throw new DataError(dirs.labels, 'does not exist', `the masks of ${dirs.images}, paired by file stem`);
    return LabeledImages.open({ ...dirs, polarity: options.polarity, threshold: options.labelThreshold, stacks: true, classes: options.classes ?? undefined });
  };
  const all = await open(layout === 'flat' ? undefined : 'train');
  const trainDir = segmentDirectories(root, layout, 'train', track).images;
  if (all === null) throw new DataError(trainDir, 'does not exist', 'the training images (train/ beside val/ and test/)');
  if (all.size === 0) throw new DataError(trainDir, 'holds no images', 'PNG/TIFF training images');
  const val = layout === 'flat' ? null : await open('val');
  const test = layout === 'flat' ? null : await open('test');
  let train = all;
  let validation: LabeledImages;
  let validationSource: SegmentData['validationSource'];
  if (val !== null && val.size > 0) {
    validation = val;
    validationSource = 'val';
  } else {
    if (all.size < 2) {
      throw new DataError(
        trainDir,
        `holds ${all.size} image and there is no val split`,
        'at least 2 training images (one is held out for validation), or a val/ split',
      );
    }
    ({ train, validation } = all.split(options.holdout, options.seed));
    validationSource = 'holdout';
  }
  const testSet = test !== null && test.size > 0 ? test : null;
  const instanceFiles = options.instances ? await pairInstances([all, ...(val ? [val] : []), ...(testSet ? [testSet] : [])]) : null;
  return { root, layout, train, validation, validationSource, test: testSet, instanceFiles };
}

/** The instance label file of every mask of `sets` (`instances/<stem>.*` beside `masks/`), checked for size and bit depth. */
async function pairInstances(sets: readonly LabeledImages[]): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  for (const set of sets) {
    const byDir = new Map<string, Map<string, string>>();
    for (const pair of set.pairs) {
      const masks = dirname(pair.label);
      const dir = join(dirname(masks), basename(masks) === 'masks' ? 'instances' : `${basename(masks)}-instances`);
      let stems = byDir.get(dir);
      if (stems === undefined) {
        if (!isDir(dir)) throw new DataError(dir, 'does not exist', `the instance labels of ${masks} (16-bit ids, 0 = background) for data.instances`);
        stems = new Map((await listImageFiles(dir)).map((f) => [fileStem(f), join(dir, f)]));
        byDir.set(dir, stems);
      }
      const stem = pair.slice?.stack ?? pair.name; // a stack's slices share its instance stack
      const file = stems.get(stem);
      if (file === undefined) throw new DataError(pair.label, `has no instance labels named "${stem}.*" in ${dir}`, 'an instance label image per mask');
      files.set(pair.label, file);
    }
  }
  return files;
}

/** Reads instance labels: an 8- or 16-bit grey image of ids (0 = background) of the pair's size; page `z` of a stack. */
export async function readInstanceLabels(path: string, width: number, height: number, z?: number): Promise<Instances<Uint16Array>> {
  const image = z === undefined ? await readImage(path) : await readStackSlice(path, z);
  if (image.width !== width || image.height !== height) {
    throw new DataError(path, `is ${image.width}x${image.height} but its image is ${width}x${height}`, 'instance labels of the same size as the image');
  }
  const data = Uint16Array.from(image.data);
  let count = 0;
  for (const v of data) if (v > count) count = v;
  return { width, height, data, count };
}

/** How a binary prediction becomes instances (the config's `instances` section). */
export interface InstanceOptions {
  method: 'components' | 'watershed';
  connectivity: 4 | 8;
  minSize: number;
  minDistance: number;
}

/**
 * Instances of a binary prediction (1 = foreground); with `depth` > 1 a volume (slice after slice),
 * cut in 3D: connectivity 4 becomes 6 (faces), 8 becomes 26, `minSize` counts voxels.
 */
export function predictedInstances(binary: Uint8Array, width: number, height: number, o: InstanceOptions, depth = 1): Instances<Uint16Array> {
  const mask = depth > 1 ? { width, height, depth, data: binary } : { width, height, data: binary };
  const connectivity = depth > 1 ? (o.connectivity === 4 ? 6 : 26) : o.connectivity;
  return o.method === 'watershed'
    ? watershedInstances(mask, { connectivity, minSize: o.minSize, minDistance: o.minDistance, excludeBorder: false, ids: 'uint16' })
    : connectedInstances(mask, { connectivity, minSize: o.minSize, ids: 'uint16' });
}

/**
 * Validation of an instance task: the thresholded prediction becomes instances and scores its PQ
 * against the pair's instance labels (`instanceFiles`); pixel F1 / precision / recall beside it.
 */
export function instanceTask(options: InstanceOptions, instanceFiles: ReadonlyMap<string, string>): SegmentationTask {
  // The truth of the last image: validation scores each image at several thresholds.
  let cached: { key: string; truth: Instances<Uint16Array> } | null = null;
  return {
    name: 'instances',
    metric: 'pq',
    scoreImage: async ({ pair, sample, binary }) => {
      const { width, height } = sample.image;
      const path = instanceFiles.get(pair.label);
      if (path === undefined) throw new DataError(pair.label, 'has no instance labels', 'an instance label image per mask');
      const key = `${path}\0${pair.slice?.z ?? ''}`;
      if (cached?.key !== key) cached = { key, truth: await readInstanceLabels(path, width, height, pair.slice?.z) };
      const scores = instanceScores(cached.truth, predictedInstances(binary, width, height, options));
      const px = pixelScores({ width, height, data: binary }, sample.mask);
      return { score: scores.pq, f1: px.f1, precision: px.precision, recall: px.recall, rejected: null };
    },
  };
}

/**
 * ISBI 2012 scoring of membranes (foreground = membrane): the cells the predicted membrane encloses
 * (after thinning, as Fiji's script does) against the true cells (the background of the mask),
 * foreground-restricted V-Rand and V-Info.
 */
export function membraneScores(binary: Uint8Array, trueMembrane: Mask): { vRand: number; vInfo: number } {
  const { width, height } = trueMembrane;
  const trueCells = { width, height, data: Uint8Array.from(trueMembrane.data, (v) => (v ? 0 : 1)) };
  const s = isbiBinaryScores({ width, height, data: Uint8Array.from(binary) }, trueCells, true);
  return { vRand: s.rand.vRand, vInfo: s.info.vInfo };
}

/** Validation of membranes by V-Rand (see membraneScores); pixel F1 / precision / recall beside it. */
export const vrandTask: SegmentationTask = {
  name: 'membranes',
  metric: 'vrand',
  scoreImage: ({ binary, sample }) => {
    const px = pixelScores({ width: sample.mask.width, height: sample.mask.height, data: binary }, sample.mask);
    return { score: membraneScores(binary, sample.mask).vRand, f1: px.f1, precision: px.precision, recall: px.recall, rejected: null };
  },
};

/** Instance scores of one predicted image. */
export interface InstanceImageScore extends Omit<InstanceScores, 'matches'> {
  name: string;
  prediction: string;
  groundTruth: string;
}

/**
 * Decodes the training images with their masks. Every image must hold a patch; a mask with more
 * foreground than `maxFraction` (or all of it) is refused with the reading that fixes it. Masks
 * without foreground are allowed (a slice without mitochondria), but not a training set without any.
 */
export async function loadSegmentTraining(images: LabeledImages, patchSize: number, maxFraction: number): Promise<LabeledSample[]> {
  for (const pair of images.pairs) {
    const fit = Math.floor(Math.min(pair.width, pair.height) / 32) * 32;
    checkImageSize(
      pair.image,
      pair.width,
      pair.height,
      patchSize,
      'training patch',
      fit >= 32 ? `a smaller patches.size (--set patches.size=${fit})` : 'larger images',
    );
  }
  const samples: LabeledSample[] = [];
  if (images.classes !== null) {
    // class maps: load() refuses values outside the map; one class besides the background must occur
    let labelled = false;
    for (let i = 0; i < images.size; i++) {
      const sample = await images.load(i);
      labelled ||= sample.mask.data.some((c) => c !== 0);
      samples.push(sample);
    }
    if (!labelled) {
      throw new DataError(
        dirname(images.pairs[0].label),
        `holds no pixel of any class but the background (value ${images.classes[0]}) in its ${images.size} training mask(s)`,
        'training masks that draw the classes of data.classes',
      );
    }
    return samples;
  }
  let foreground = 0;
  for (let i = 0; i < images.size; i++) {
    const sample = await images.load(i);
    const fraction = foregroundShare(sample.label.histogram, images.polarity, images.threshold);
    if (fraction > 0) checkMembraneFraction(images.pairs[i], sample, images.polarity, maxFraction, FOREGROUND_WORDS);
    foreground += fraction;
    samples.push(sample);
  }
  // No mask has foreground: the first one's check names the reading and a fix.
  if (foreground === 0) checkMembraneFraction(images.pairs[0], samples[0], images.polarity, maxFraction, FOREGROUND_WORDS);
  return samples;
}

/** A written mask (8-bit, foreground 255, as `predict --format mask` writes it) as 0/1. */
async function readPredictedMask(file: string): Promise<Mask> {
  const predicted = await readImage(file);
  if (predicted.bitDepth !== 8) throw new DataError(file, `is ${predicted.bitDepth}-bit`, 'an 8-bit mask (foreground 255)');
  return { width: predicted.width, height: predicted.height, data: Uint8Array.from(predicted.data, (v) => (v >= 128 ? 1 : 0)) };
}

/** Scores of one written mask against its label. */
export interface MaskScore extends PixelScores {
  name: string;
  /** With `membranes`: ISBI 2012 V-Rand and V-Info (see membraneScores). */
  vRand?: number;
  vInfo?: number;
  prediction: string;
  groundTruth: string;
}

/** Per-image scores, their means, and the scores of all pixels pooled (CEM500K reports pooled IoU). */
export interface MaskFolderScore {
  images: MaskScore[];
  mean: { iou: number; f1: number; precision: number; recall: number; vRand?: number; vInfo?: number };
  pooled: PixelScores;
}

/**
 * Scores the masks `predictions` (name -> file; foreground 255, as `predict --format mask` writes
 * them) against the labels of `truth`, read with its polarity and threshold, one image at a time.
 */
export async function scoreMasks(
  predictions: ReadonlyMap<string, string>,
  truth: LabeledImages,
  options: { membranes?: boolean } = {},
): Promise<MaskFolderScore> {
  const images: MaskScore[] = [];
  let tp = 0;
  let fp = 0;
  let fn = 0;
  let tn = 0;
  for (let i = 0; i < truth.size; i++) {
    const pair = truth.pairs[i];
    const file = predictions.get(pair.name);
    if (file === undefined) throw new DataError(pair.label, 'has no prediction', `a predicted mask named ${pair.name}.png`);
    const [mask, sample] = await Promise.all([readPredictedMask(file), truth.load(i)]);
    const s = pixelScores(mask, sample.mask);
    tp += s.truePositives;
    fp += s.falsePositives;
    fn += s.falseNegatives;
    tn += s.trueNegatives;
    images.push({ name: pair.name, prediction: file, groundTruth: pair.label, ...s, ...(options.membranes ? membraneScores(mask.data, sample.mask) : {}) });
  }
  const mean = (key: 'iou' | 'f1' | 'precision' | 'recall' | 'vRand' | 'vInfo') => images.reduce((a, r) => a + (r[key] ?? 0), 0) / Math.max(1, images.length);
  const membranes = options.membranes ? { vRand: mean('vRand'), vInfo: mean('vInfo') } : {};
  return {
    images,
    mean: { iou: mean('iou'), f1: mean('f1'), precision: mean('precision'), recall: mean('recall'), ...membranes },
    pooled: scoresFromCounts(tp, fp, fn, tn),
  };
}

/** Per-image mask scores as CSV, with the mean and pooled rows (V-Rand / V-Info columns when scored). */
export function maskScoresCsv(score: MaskFolderScore): string {
  const isbi = score.mean.vRand !== undefined;
  const head = `name,iou,f1,precision,recall,${isbi ? 'v_rand,v_info,' : ''}true_positives,false_positives,false_negatives,prediction,ground_truth`;
  const row = (r: MaskScore) =>
    [
      r.name,
      r.iou,
      r.f1,
      r.precision,
      r.recall,
      ...(isbi ? [r.vRand, r.vInfo] : []),
      r.truePositives,
      r.falsePositives,
      r.falseNegatives,
      JSON.stringify(r.prediction),
      JSON.stringify(r.groundTruth),
    ].join(',');
  const m = score.mean;
  const p = score.pooled;
  return [
    head,
    ...score.images.map(row),
    `mean,${m.iou},${m.f1},${m.precision},${m.recall},${isbi ? `${m.vRand},${m.vInfo},` : ''},,,,`,
    `pooled,${p.iou},${p.f1},${p.precision},${p.recall},${isbi ? ',,' : ''}${p.truePositives},${p.falsePositives},${p.falseNegatives},,`,
    '',
  ].join('\n');
}

/** Per-class scores of one written class map against its mask. */
export interface ClassMaskScore {
  name: string;
  prediction: string;
  groundTruth: string;
  /** Mean IoU / Dice of the foreground classes present in the image (1 when none is). */
  meanIoU: number;
  meanDice: number;
  perClass: { name: string; value: number; iou: number; dice: number; truePixels: number; predictedPixels: number }[];
}

/** Per-image class scores, and per class over all the images' pixels pooled (CEM500K reports pooled IoU). */
export interface ClassFolderScore {
  images: ClassMaskScore[];
  /** Means over images of the per-image foreground means. */
  mean: { meanIoU: number; meanDice: number };
  /** Per class, every image's pixels pooled; meanIoU / meanDice over the foreground classes. */
  pooled: { meanIoU: number; meanDice: number; perClass: ClassMaskScore['perClass'] };
}

/**
 * Scores the class maps `predictions` (name -> file: each pixel a class's mask value, as `predict`
 * writes a multi-class model's output) against the masks of `truth` (opened with its classes),
 * per class IoU and Dice (scikit-learn semantics, see classScores).
 */
export async function scoreClassMasks(
  predictions: ReadonlyMap<string, string>,
  truth: LabeledImages,
  classes: readonly ClassEntry[],
): Promise<ClassFolderScore> {
  const values = classes.map((c) => c.value);
  const all = classes.map((_, i) => i);
  const byImage: ClassScores[] = [];
  const images: ClassMaskScore[] = [];
  for (let i = 0; i < truth.size; i++) {
    const pair = truth.pairs[i];
    const file = predictions.get(pair.name);
    if (file === undefined) throw new DataError(pair.label, 'has no prediction', `a predicted class map named ${pair.name}.png`);
    const [predicted, sample] = await Promise.all([readImage(file), truth.load(i)]);
    if (predicted.bitDepth !== 8) throw new DataError(file, `is ${predicted.bitDepth}-bit`, 'an 8-bit class map (the class values of data.classes)');
    const map = labelToClasses(predicted, values, file);
    const byClass = classScores(sample.mask, map, { classes: all });
    const fg = foregroundMeans(byClass);
    byImage.push(byClass);
    images.push({
      name: pair.name,
      prediction: file,
      groundTruth: pair.label,
      meanIoU: fg.meanIoU,
      meanDice: fg.meanDice,
      perClass: byClass.perClass.map((c, j) => ({ ...classes[j], iou: c.iou, dice: c.dice, truePixels: c.truePixels, predictedPixels: c.predictedPixels })),
    });
  }
  const pooledClasses = byImage.length > 0 ? pooledClassScores(byImage).perClass : null;
  const perClass = classes.map((c, j) => {
    const k = pooledClasses?.[j];
    return { ...c, iou: k?.iou ?? 0, dice: k?.dice ?? 0, truePixels: k?.truePixels ?? 0, predictedPixels: k?.predictedPixels ?? 0 };
  });
  const present = perClass.slice(1).filter((c) => c.truePixels + c.predictedPixels > 0);
  const avg = (xs: number[]) => (xs.length === 0 ? 1 : xs.reduce((a, b) => a + b, 0) / xs.length);
  return {
    images,
    mean: { meanIoU: avg(images.map((r) => r.meanIoU)), meanDice: avg(images.map((r) => r.meanDice)) },
    pooled: { meanIoU: avg(present.map((c) => c.iou)), meanDice: avg(present.map((c) => c.dice)), perClass },
  };
}

/** Per-image class scores as CSV (one IoU and Dice column per class), with the mean and pooled rows. */
export function classScoresCsv(score: ClassFolderScore): string {
  const classes = score.pooled.perClass;
  const slug = (n: string) => n.replace(/[^A-Za-z0-9]+/g, '_');
  const head = ['name', 'mean_iou', 'mean_dice', ...classes.flatMap((c) => [`iou_${slug(c.name)}`, `dice_${slug(c.name)}`]), 'prediction', 'ground_truth'].join(
    ',',
  );
  const rows = score.images.map((r) =>
    [r.name, r.meanIoU, r.meanDice, ...r.perClass.flatMap((c) => [c.iou, c.dice]), JSON.stringify(r.prediction), JSON.stringify(r.groundTruth)].join(','),
  );
  const blank = classes.map(() => ',').join('');
  const p = score.pooled;
  return [
    head,
    ...rows,
    `mean,${score.mean.meanIoU},${score.mean.meanDice},${blank},`,
    `pooled,${p.meanIoU},${p.meanDice},${p.perClass.flatMap((c) => [c.iou, c.dice]).join(',')},,`,
    '',
  ].join('\n');
}

/** Per-image instance scores and their means (PQ is averaged over images, as per-volume PQ is in empanada). */
export interface InstanceFolderScore {
  images: InstanceImageScore[];
  mean: { pq: number; sq: number; rq: number; f1At50: number; f1At75: number };
}

/** The per-image (or per-stack) instance scores with their means. */
function instanceFolderScore(images: InstanceImageScore[]): InstanceFolderScore {
  const mean = (key: 'pq' | 'sq' | 'rq' | 'f1At50' | 'f1At75') => images.reduce((a, r) => a + r[key], 0) / Math.max(1, images.length);
  return { images, mean: { pq: mean('pq'), sq: mean('sq'), rq: mean('rq'), f1At50: mean('f1At50'), f1At75: mean('f1At75') } };
}

/**
 * Turns the written masks `predictions` (name -> file, foreground 255) of `truth` into instances,
 * writes them as 16-bit label images into `outDir` (`<name>.png`, atomically) and scores them
 * against the instance labels.
 */
export async function scoreInstanceMasks(
  predictions: ReadonlyMap<string, string>,
  truth: LabeledImages,
  instanceFiles: ReadonlyMap<string, string>,
  options: InstanceOptions,
  outDir: string,
): Promise<InstanceFolderScore> {
  const images: InstanceImageScore[] = [];
  for (const pair of truth.pairs) {
    const file = predictions.get(pair.name);
    const truthFile = instanceFiles.get(pair.label);
    if (file === undefined) throw new DataError(pair.label, 'has no prediction', `a predicted mask named ${pair.name}.png`);
    if (truthFile === undefined) throw new DataError(pair.label, 'has no instance labels', 'an instance label image per mask');
    const predicted = await readPredictedMask(file);
    const instances = predictedInstances(predicted.data, predicted.width, predicted.height, options);
    const out = join(outDir, `${pair.name}.png`);
    await writeImage(out, { width: instances.width, height: instances.height, bitDepth: 16, data: instances.data });
    const { matches: _matches, ...scores } = instanceScores(await readInstanceLabels(truthFile, pair.width, pair.height, pair.slice?.z), instances);
    images.push({ name: pair.name, prediction: out, groundTruth: truthFile, ...scores });
  }
  return instanceFolderScore(images);
}

/**
 * scoreInstanceMasks for stacks: the written slice masks of each test stack (`<stem>-z<z>`)
 * assembled into a volume, cut into 3D instances (see predictedInstances), written as a 16-bit
 * instance stack `<stem>.tif` into `outDir` and scored in 3D against the stack's instance labels,
 * one row per stack (3D PQ per volume, as empanada reports it). Memory: one stack's masks and labels.
 */
export async function scoreInstanceStacks(
  predictions: ReadonlyMap<string, string>,
  truth: LabeledImages,
  instanceFiles: ReadonlyMap<string, string>,
  options: InstanceOptions,
  outDir: string,
): Promise<InstanceFolderScore> {
  const stacks = new Map<string, LabeledPair[]>();
  for (const pair of truth.pairs) {
    if (!pair.slice) throw new DataError(pair.image, 'is not a stack slice', 'stacks only (scoreInstanceMasks scores 2D images)');
    stacks.set(pair.slice.stack, [...(stacks.get(pair.slice.stack) ?? []), pair]);
  }
  const images: InstanceImageScore[] = [];
  for (const [stem, pairs] of stacks) {
    const { width, height } = pairs[0];
    const depth = pairs.length;
    const plane = width * height;
    const binary = new Uint8Array(plane * depth);
    const labels = new Uint16Array(plane * depth);
    const truthFile = instanceFiles.get(pairs[0].label);
    if (truthFile === undefined) throw new DataError(pairs[0].label, 'has no instance labels', 'an instance label stack per mask stack');
    for (const [z, pair] of pairs.entries()) {
      const file = predictions.get(pair.name);
      if (file === undefined) throw new DataError(pair.label, `has no prediction for slice ${z}`, `a predicted mask named ${pair.name}.png`);
      binary.set((await readPredictedMask(file)).data, z * plane);
      labels.set((await readInstanceLabels(truthFile, width, height, pair.slice?.z)).data, z * plane);
    }
    const instances = predictedInstances(binary, width, height, options, depth);
    const out = join(outDir, `${stem}.tif`);
    await writeStack(
      out,
      Array.from({ length: depth }, (_, z) => ({ width, height, bitDepth: 16 as const, data: instances.data.subarray(z * plane, (z + 1) * plane) })),
    );
    const { matches: _matches, ...scores } = instanceScores({ width, height, depth, data: labels }, { width, height, depth, data: instances.data });
    images.push({ name: stem, prediction: out, groundTruth: truthFile, ...scores });
  }
  return instanceFolderScore(images);
}

/** Per-image instance scores as CSV, with the mean row. */
export function instanceScoresCsv(score: InstanceFolderScore): string {
  const head = 'name,pq,sq,rq,f1_at_50,f1_at_75,true_instances,predicted_instances,true_positives,false_positives,false_negatives,prediction,ground_truth';
  const rows = score.images.map((r) =>
    [
      r.name,
      r.pq,
      r.sq,
      r.rq,
      r.f1At50,
      r.f1At75,
      r.trueInstances,
      r.predictedInstances,
      r.truePositives,
      r.falsePositives,
      r.falseNegatives,
      JSON.stringify(r.prediction),
      JSON.stringify(r.groundTruth),
    ].join(','),
  );
  const m = score.mean;
  return [head, ...rows, `mean,${m.pq},${m.sq},${m.rq},${m.f1At50},${m.f1At75},,,,,,,`, ''].join('\n');
}
