/**
 * U-RISC-style labelled data: image/label pairs matched by file stem across two directories
 * (e.g. `imgs/Track1/train/0.png` with `label/Track1/train/0.tiff`). Labels are 8-bit; U-RISC
 * draws membranes black (0) on white (255) and is not always clean binary, so labels are
 * thresholded at mid-grey. Train/validation splits are made by image, never by patch.
 */
import { dirname, join, relative, resolve, sep } from 'node:path';
import { datasetDigest, type DatasetDigest } from './digest.js';
import { DataError } from './errors.js';
import { readImage, readImageInfo, type ImageInfo } from './image-io.js';
import type { BitDepth, GreyImage, Mask } from './image.js';
import { fileStem, listImageFiles } from './listing.js';
import { mapLimit } from './map-limit.js';
import { Rng } from './random.js';
import { readStackInfo, readStackSlice, type StackInfo } from './stack-io.js';

/** Which label value is foreground: U-RISC draws membranes black ('black-foreground'). */
export type LabelPolarity = 'black-foreground' | 'white-foreground';

export interface OpenLabeledOptions {
  /** Directory of images. */
  readonly images: string;
  /** Directory of labels with the same file stems. */
  readonly labels: string;
  /** Default 'black-foreground' (U-RISC: membrane 0, background 255). */
  readonly polarity?: LabelPolarity;
  /** Label values below it are black, at or above it white. Default 128 (mid-grey). */
  readonly threshold?: number;
  /**
   * Accept 3D multi-page TIFF stacks (with label stacks of the same depth): each z-slice becomes one
   * pair named `<stem>-z<z>`, split and fingerprinted with its stack. Default false: a stack is
   * refused, naming its page count, as every single-image reader does.
   */
  readonly stacks?: boolean;
  /**
   * A multi-class task: the label value of each class, by class index (index 0 is the background).
   * Masks then hold class indices instead of 0/1, and a label value outside the list is refused,
   * naming the file, the value and where it is. Polarity and threshold do not apply.
   */
  readonly classes?: readonly number[];
}

/** One matched pair, checked for size when the dataset is opened. */
export interface LabeledPair {
  /** Shared file stem, e.g. "0" for 0.png / 0.tiff. */
  readonly name: string;
  readonly image: string;
  readonly label: string;
  readonly width: number;
  readonly height: number;
  readonly imageBitDepth: BitDepth;
  /** A slice of a stack: its page in `image` and `label`, and the stack's stem (splits keep a stack together). */
  readonly slice?: { readonly z: number; readonly depth: number; readonly stack: string };
}

/** How a label was read into its mask, with the label's value histogram (to explain an odd mask). */
export interface LabelReading {
  readonly polarity: LabelPolarity;
  readonly threshold: number;
  /** histogram[v] = number of pixels with 8-bit value v. */
  readonly histogram: Float64Array;
}

/** A loaded pair: the image at its native depth and the mask (1 = foreground; a multi-class task: class indices). */
export interface LabeledSample {
  readonly name: string;
  readonly image: GreyImage;
  readonly mask: Mask;
  readonly label: LabelReading;
}

/** Where the U-RISC release keeps one split of one track: `imgs/<track>/<split>`, `label/<track>/<split>`. */
export function uriscDirectories(root: string, split: 'train' | 'val' | 'test', track = 'Track1'): { images: string; labels: string } {
  return { images: join(root, 'imgs', track, split), labels: join(root, 'label', track, split) };
}

/**
 * Label values -> mask: 1 where the value is on the foreground side of `threshold`.
 *
 * @example labelToMask(label, 'black-foreground', 128) // U-RISC: 0 -> 1 (membrane), 255 -> 0
 */
export function labelToMask(label: GreyImage, polarity: LabelPolarity, threshold = 128): Mask {
  const out = new Uint8Array(label.data.length);
  const black = polarity === 'black-foreground';
  for (let i = 0; i < out.length; i++) out[i] = label.data[i] < threshold === black ? 1 : 0;
  return { width: label.width, height: label.height, data: out };
}

/** Refuses a class list that is not distinct 8-bit values, at least two of them. */
function checkClassValues(values: readonly number[]): void {
  if (values.length < 2 || values.length > 255) throw new Error(`classes must list 2 to 255 label values (background first), got ${values.length}`);
  for (const v of values) if (!Number.isInteger(v) || v < 0 || v > 255) throw new Error(`class label values must be integers in 0..255, got ${v}`);
  if (new Set(values).size !== values.length) throw new Error(`class label values must be distinct, got ${values.join(', ')}`);
}

/**
 * Label values -> class indices (`values[i]` is class i). A value outside the list is refused,
 * naming `path`, the value, its first pixel and how many pixels hold it.
 *
 * @example labelToClasses(label, [0, 128, 255], 'masks/a.png') // 0 -> 0, 128 -> 1, 255 -> 2
 */
export function labelToClasses(label: GreyImage, values: readonly number[], path: string): Mask {
  checkClassValues(values);
  const index = new Int16Array(256).fill(-1);
  values.forEach((v, i) => (index[v] = i));
  const out = new Uint8Array(label.data.length);
  for (let i = 0; i < out.length; i++) {
    const c = index[label.data[i]];
    if (c < 0) {
      const v = label.data[i];
      let count = 0;
      for (let k = i; k < label.data.length; k++) if (label.data[k] === v) count++;
      throw new DataError(
        path,
        `has label value ${v} at x ${i % label.width}, y ${Math.floor(i / label.width)} (${count} pixel(s)), which is not in the class map`,
        `only the class map's values (${values.join(', ')}); add ${v} to data.classes or fix the mask`,
      );
    }
    out[i] = c;
  }
  return { width: label.width, height: label.height, data: out };
}

/** Pixels per 8-bit value. */
export function labelHistogram(label: GreyImage): Float64Array {
  const counts = new Float64Array(256);
  for (let i = 0; i < label.data.length; i++) counts[label.data[i]]++;
  return counts;
}

/** The fraction of pixels on the foreground side of `threshold`, from a label's histogram (as labelToMask decides). */
export function foregroundShare(histogram: Float64Array, polarity: LabelPolarity, threshold: number): number {
  let below = 0;
  let total = 0;
  histogram.forEach((n, v) => {
    total += n;
    if (v < threshold) below += n;
  });
  const black = below / Math.max(1, total);
  return polarity === 'black-foreground' ? black : 1 - black;
}

/**
 * A way to read a label whose foreground fraction lies in (0, maxFraction], or null if none: the
 * other polarity; a threshold halfway between the label's lowest and highest values; or both.
 *
 * @example plausibleReading(labelHistogram(allWhite), 'black-foreground', 128, 0.5) // null: one value only
 */
export function plausibleReading(
  histogram: Float64Array,
  polarity: LabelPolarity,
  threshold: number,
  maxFraction: number,
): { polarity: LabelPolarity; threshold: number } | null {
  const present = [...histogram.keys()].filter((v) => histogram[v] > 0);
  const other: LabelPolarity = polarity === 'black-foreground' ? 'white-foreground' : 'black-foreground';
  const candidates = [{ polarity: other, threshold }];
  if (present.length > 1) {
    // Values below the threshold are black: halfway puts the lowest value below it and the highest at or above.
    const halfway = Math.floor((present[0] + present[present.length - 1]) / 2) + 1;
    candidates.push({ polarity, threshold: halfway }, { polarity: other, threshold: halfway });
  }
  return (
    candidates.find((c) => {
      const f = foregroundShare(histogram, c.polarity, c.threshold);
      return f > 0 && f <= maxFraction;
    }) ?? null
  );
}

function stemMap(dir: string, files: readonly string[]): Map<string, string> {
  const byStem = new Map<string, string>();
  for (const f of files) {
    const stem = fileStem(f);
    const other = byStem.get(stem);
    if (other !== undefined) {
      throw new DataError(join(dir, f), `has the same name stem "${stem}" as ${other}`, 'one file per stem, so images and labels pair up unambiguously');
    }
    byStem.set(stem, f);
  }
  return byStem;
}

function checkPair(name: string, image: ImageInfo, label: ImageInfo): LabeledPair {
  if (label.bitDepth !== 8) {
    throw new DataError(label.path, `label is ${label.bitDepth}-bit`, 'an 8-bit label image (U-RISC: 0 = membrane, 255 = background)');
  }
  if (image.width !== label.width || image.height !== label.height) {
    throw new DataError(
      label.path,
      `label is ${label.width}x${label.height} but its image ${image.path} is ${image.width}x${image.height}`,
      'a label of the same size as its image',
    );
  }
  return { name, image: image.path, label: label.path, width: image.width, height: image.height, imageBitDepth: image.bitDepth };
}

export class LabeledImages {
  private constructor(
    readonly pairs: readonly LabeledPair[],
    readonly polarity: LabelPolarity,
    readonly threshold: number,
    /** Label value of each class index, or null for a binary task (see OpenLabeledOptions.classes). */
    readonly classes: readonly number[] | null = null,
  ) {}

  /**
   * Pairs images with labels by stem and checks every pair's header (size, label bit depth).
   *
   * @example
   * const train = await LabeledImages.open(uriscDirectories('data/urisc', 'train'));
   */
  static async open(options: OpenLabeledOptions): Promise<LabeledImages> {
    const imagesDir = resolve(options.images);
    const labelsDir = resolve(options.labels);
    const polarity = options.polarity ?? 'black-foreground';
    const threshold = options.threshold ?? 128;
    if (polarity !== 'black-foreground' && polarity !== 'white-foreground') {
      throw new Error(`label polarity must be 'black-foreground' or 'white-foreground', got ${JSON.stringify(polarity)}`);
    }
    if (!(threshold > 0 && threshold <= 255)) throw new Error(`label threshold must be in (0, 255], got ${threshold}`);
    const classes = options.classes ?? null;
    if (classes !== null) checkClassValues(classes);
    const images = stemMap(imagesDir, await listImageFiles(imagesDir));
    const labels = stemMap(labelsDir, await listImageFiles(labelsDir));
    for (const [stem, file] of labels) {
      if (!images.has(stem))
        throw new DataError(join(labelsDir, file), `label has no image named "${stem}.*" in ${imagesDir}`, 'every label to have an image with the same stem');
    }
    for (const [stem, file] of images) {
      if (!labels.has(stem))
        throw new DataError(join(imagesDir, file), `image has no label named "${stem}.*" in ${labelsDir}`, 'every image to have a label with the same stem');
    }
    const stems = [...images.keys()].sort();
    const read = options.stacks ? readStackInfo : readImageInfo;
    const pairs = await mapLimit(stems, 8, async (stem) => {
      const [image, label] = await Promise.all([read(join(imagesDir, images.get(stem) as string)), read(join(labelsDir, labels.get(stem) as string))]);
      const pair = checkPair(stem, image, label);
      return options.stacks ? stackSlices(pair, image as StackInfo, label as StackInfo) : [pair];
    });
    return new LabeledImages(pairs.flat(), polarity, threshold, classes);
  }

  get size(): number {
    return this.pairs.length;
  }

  get names(): string[] {
    return this.pairs.map((p) => p.name);
  }

  /** Decodes pair `i` (or the pair named `name`) into an image and a binary mask (a stack slice: that page only). */
  async load(which: number | string): Promise<LabeledSample> {
    const pair = this.pair(which);
    const [image, label] = await Promise.all([decode(pair, pair.image), decode(pair, pair.label)]);
    if (label.bitDepth !== 8) throw new DataError(pair.label, `label is ${label.bitDepth}-bit`, 'an 8-bit label image');
    if (image.width !== label.width || image.height !== label.height) {
      throw new DataError(pair.label, `label is ${label.width}x${label.height} but the image is ${image.width}x${image.height}`, 'equal sizes');
    }
    const mask = this.classes ? labelToClasses(label, this.classes, pair.label) : labelToMask(label, this.polarity, this.threshold);
    return { name: pair.name, image, mask, label: this.reading(label) };
  }

  /** Decodes only the label of pair `which` (a check without the image's cost). */
  async readLabel(which: number | string): Promise<LabelReading> {
    const pair = this.pair(which);
    const label = await decode(pair, pair.label);
    if (label.bitDepth !== 8) throw new DataError(pair.label, `label is ${label.bitDepth}-bit`, 'an 8-bit label image');
    return this.reading(label);
  }

  private reading(label: GreyImage): LabelReading {
    return { polarity: this.polarity, threshold: this.threshold, histogram: labelHistogram(label) };
  }

  private pair(which: number | string): LabeledPair {
    const pair = typeof which === 'number' ? this.pairs[which] : this.pairs.find((p) => p.name === which);
    if (pair === undefined) throw new Error(`no labelled pair ${JSON.stringify(which)}; have ${this.names.join(', ')}`);
    return pair;
  }

  /** Loads every pair (fine for U-RISC: 30 x 100 Mpixel is ~6 GB with masks; Track 2 is tiny). */
  async loadAll(): Promise<LabeledSample[]> {
    const out: LabeledSample[] = [];
    for (let i = 0; i < this.pairs.length; i++) out.push(await this.load(i));
    return out;
  }

  /** The pairs with these names, in this dataset's order. */
  subset(names: readonly string[]): LabeledImages {
    const unknown = names.filter((n) => !this.pairs.some((p) => p.name === n));
    if (unknown.length > 0) throw new Error(`unknown image name(s) ${unknown.join(', ')}; have ${this.names.join(', ')}`);
    return new LabeledImages(
      this.pairs.filter((p) => names.includes(p.name)),
      this.polarity,
      this.threshold,
      this.classes,
    );
  }

  /**
   * Splits by image (never by patch, so no validation pixel is trained on): `validation` is a
   * count of images (>= 1) or a fraction in (0, 1), chosen by a seeded shuffle; at least one
   * image stays in training.
   */
  split(validation: number, seed: number): { train: LabeledImages; validation: LabeledImages } {
    // the units held out: images, or whole stacks (adjacent slices are nearly the same image)
    const units = [...new Set(this.pairs.map(unitOf))];
    const n = units.length;
    const count = validation < 1 ? Math.round(validation * n) : validation;
    if (!(validation > 0) || !Number.isInteger(count) || count < 1 || count > n - 1) {
      throw new Error(
        `cannot hold out ${validation} of ${n} ${this.pairs.some((p) => p.slice) ? 'stacks' : 'images'} for validation; need 1 <= count <= ${n - 1} (or a fraction in (0, 1))`,
      );
    }
    const order = new Rng(seed).permutation(n);
    const heldUnits = new Set(Array.from(order.subarray(0, count), (i) => units[i]));
    const held = new Set(this.pairs.filter((p) => heldUnits.has(unitOf(p))).map((p) => p.name));
    return {
      train: new LabeledImages(
        this.pairs.filter((p) => !held.has(p.name)),
        this.polarity,
        this.threshold,
        this.classes,
      ),
      validation: new LabeledImages(
        this.pairs.filter((p) => held.has(p.name)),
        this.polarity,
        this.threshold,
        this.classes,
      ),
    };
  }

  /** Fingerprint of images and labels for MLflow `log-inputs`. */
  digest(): Promise<DatasetDigest> {
    const files = [...new Set(this.pairs.flatMap((p) => [p.image, p.label]))];
    const root = commonDirectory(files);
    return datasetDigest(
      root,
      files.map((f) => relative(root, f)),
    );
  }
}

/** What a split holds out together: a whole stack, or one image. */
const unitOf = (p: LabeledPair) => p.slice?.stack ?? p.name;

/** A pair's image or label: the file, or its page for a stack slice. */
const decode = (pair: LabeledPair, path: string) => (pair.slice ? readStackSlice(path, pair.slice.z) : readImage(path));

/** The slices of a stack pair (one pair for a single-page file); image and label depths must agree. */
function stackSlices(pair: LabeledPair, image: StackInfo, label: StackInfo): LabeledPair[] {
  if (image.depth !== label.depth) {
    throw new DataError(
      label.path,
      `has ${label.depth} page(s) but its image ${image.path} has ${image.depth}`,
      'a label stack of the same depth as its image',
    );
  }
  if (image.depth === 1) return [pair];
  const digits = String(image.depth - 1).length;
  return Array.from({ length: image.depth }, (_, z) => ({
    ...pair,
    name: `${pair.name}-z${String(z).padStart(Math.max(3, digits), '0')}`,
    slice: { z, depth: image.depth, stack: pair.name },
  }));
}

/** The deepest directory containing all `paths` (absolute). */
function commonDirectory(paths: readonly string[]): string {
  let root = dirname(paths[0]);
  while (!paths.every((p) => p.startsWith(root.endsWith(sep) ? root : root + sep))) root = dirname(root);
  return root;
}
