/**
 * CEM500K-style unlabeled crops: a directory tree of (thousands to millions of) small images,
 * listed once into a manifest (every crop's header checked on the way, so a corrupt crop is found
 * at the start, not days later when its batch comes up), shuffled per epoch with a seed, and
 * streamed as batches of augmented views (MoCo: two per crop) with prefetch.
 */
import { open as openFile, readFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { CEM500K_AUGMENTATION, augmentedViews, type AugmentationSpec } from './augment.js';
import { writeFileAtomic } from '@emseg/fs';
import { CropWorkerPool } from './crop-pool.js';
import { stackImages, type ImageBatch } from './batch.js';
import { datasetDigest, type DatasetDigest } from './digest.js';
import { DataError, describeFsError } from './errors.js';
import { readImage, readImageInfo } from './image-io.js';
import type { GreyImage } from './image.js';
import { listImageFiles } from './listing.js';
import { mapLimit } from './map-limit.js';
import { deriveSeed, Rng } from './random.js';

const MANIFEST_HEADER = '# emseg crop manifest v1';

export interface OpenCropsOptions {
  /**
   * A text file caching the listing (one relative path per line). If it exists it is read instead
   * of walking the tree; otherwise the tree is listed and the manifest written (atomically).
   */
  readonly manifest?: string;
  /** List the tree again even if the manifest exists (and rewrite it). */
  readonly refresh?: boolean;
  /** A non-image file in the tree: throw (default) or skip it. */
  readonly nonImage?: 'error' | 'skip';
  /**
   * When the tree is listed (not when a manifest is read), every crop's header is checked (see
   * `checkCrop`). A crop that fails: 'fail' (default) throws a BadCropsError listing all of them;
   * 'skip' leaves it out of the crops and the manifest, listed in `headerCheck.skipped`.
   */
  readonly badCrops?: 'fail' | 'skip';
  /** Crops narrower or shorter than this fail the check (e.g. the network's input size). */
  readonly minSize?: number;
}

/** A crop that failed the check: its path relative to the root, and the full error message. */
export interface BadCrop {
  readonly file: string;
  readonly problem: string;
}

/** What the check of a freshly listed tree found. */
export interface CropCheck {
  readonly checked: number;
  /** Crops left out ('skip'); empty under 'fail', which throws instead. */
  readonly skipped: readonly BadCrop[];
  readonly seconds: number;
}

/** Thrown by `UnlabeledCrops.open` (badCrops 'fail') when crops fail the check; `bad` lists all of them. */
export class BadCropsError extends DataError {
  constructor(
    root: string,
    readonly bad: readonly BadCrop[],
    readonly checked: number,
    fix = 'remove or replace these files, or leave them out (badCrops: skip)',
  ) {
    super(root, `${bad.length} of ${checked} crops fail the header check`, `only readable single-image crops: ${fix}`);
    this.name = 'BadCropsError';
    this.message +=
      bad
        .slice(0, 5)
        .map((b) => `\n  ${b.problem}`)
        .join('') + (bad.length > 5 ? `\n  ... and ${bad.length - 5} more` : '');
  }
}

const PNG_END = Buffer.from('0000000049454e44ae426082', 'hex'); // an empty IEND chunk

/**
 * Fast check of one crop without decoding its pixels: the header must be readable (format, bit
 * depth, one page; see readImageInfo), the size at least `minSize`, and a PNG must end with its
 * IEND chunk (a truncated PNG still has a valid header). Returns the problem, or null.
 */
export async function checkCrop(path: string, minSize = 1): Promise<string | null> {
  try {
    const info = await readImageInfo(path);
    if (info.width < minSize || info.height < minSize) {
      return new DataError(path, `is ${info.width} x ${info.height} pixels, smaller than ${minSize} x ${minSize}`, `crops of at least ${minSize} x ${minSize}`)
        .message;
    }
    if (info.format === 'png') {
      const handle = await openFile(path, 'r');
      try {
        const { size } = await handle.stat();
        const tail = Buffer.alloc(PNG_END.length);
        await handle.read(tail, 0, tail.length, Math.max(0, size - tail.length));
        if (!tail.equals(PNG_END)) return new DataError(path, 'does not end with the PNG end chunk (IEND): the file is truncated', 'a complete PNG').message;
      } finally {
        await handle.close();
      }
    }
    return null;
  } catch (err) {
    if (err instanceof DataError) return err.message;
    throw err;
  }
}

export interface CropStreamOptions {
  /** Run seed; with `epoch` it fixes the order and every augmentation. */
  readonly seed: number;
  readonly epoch: number;
  /** Crops per batch (CEM500K: 128). */
  readonly batchSize: number;
  /** Output edge of each view in pixels (CEM500K: 224). */
  readonly size: number;
  /** Augmented views per crop. Default 2 (query and key). */
  readonly views?: number;
  /** Default: the CEM500K recipe. */
  readonly augmentation?: AugmentationSpec;
  /** Batches prepared ahead of the consumer. Default 2. */
  readonly prefetch?: number;
  /** Skip a last, incomplete batch (MoCo wants equal batches). Default true. */
  readonly dropLast?: boolean;
  /**
   * Worker threads that decode and augment crops while the main thread trains (tfjs-node blocks
   * the main thread during a step, so in-process loading cannot overlap with it). 0 (default)
   * loads in-process. Results are identical either way.
   */
  readonly workers?: number;
}

/** One batch: `views[v]` holds view v of every crop, in the same crop order. */
export interface ViewBatch {
  /** Position of this batch in the epoch (0, 1, ...). */
  readonly index: number;
  /** Indices (into `UnlabeledCrops.files`) of the crops in this batch. */
  readonly crops: Uint32Array;
  readonly views: readonly ImageBatch[];
}

/** How well loading keeps up: time the consumer spent waiting for a batch that was not ready. */
export interface LoaderStats {
  batches: number;
  crops: number;
  /** Total milliseconds spent inside `next()` waiting for data. */
  waitMs: number;
}

export class UnlabeledCrops {
  private constructor(
    /** Absolute root directory. */
    readonly root: string,
    /** Crop paths relative to `root`, sorted. */
    readonly files: readonly string[],
    /** The manifest the listing was read from or written to, if any. */
    readonly manifest: string | null,
    /** The check of a freshly listed tree; null when the listing came from an existing manifest. */
    readonly headerCheck: CropCheck | null,
  ) {}

  /**
   * Lists (or reads the manifest of) the crops under `root`.
   *
   * @example const crops = await UnlabeledCrops.open('data/cem500k', { manifest: '.emseg/cem500k.manifest' });
   */
  static async open(root: string, options: OpenCropsOptions = {}): Promise<UnlabeledCrops> {
    const dir = resolve(root);
    const manifest = options.manifest === undefined ? null : resolve(options.manifest);
    if (manifest !== null && !options.refresh) {
      const cached = await readManifest(manifest);
      if (cached !== null) return new UnlabeledCrops(dir, cached, manifest, null);
    }
    const listed = await listImageFiles(dir, { recursive: true, nonImage: options.nonImage, exclude: manifest ? [manifest] : [] });
    const t0 = performance.now();
    const problems = await mapLimit(listed, 16, (f) => checkCrop(join(dir, f), options.minSize));
    const bad = listed.flatMap((file, i) => (problems[i] === null ? [] : [{ file, problem: problems[i] as string }]));
    if (bad.length > 0 && options.badCrops !== 'skip') throw new BadCropsError(dir, bad, listed.length);
    const files = bad.length === 0 ? listed : listed.filter((_, i) => problems[i] === null);
    if (files.length === 0) throw new DataError(dir, `has no usable crops: all ${listed.length} fail the header check`, 'at least one readable crop');
    if (manifest !== null) await writeFileAtomic(manifest, `${MANIFEST_HEADER}\n${files.join('\n')}\n`);
    return new UnlabeledCrops(dir, files, manifest, { checked: listed.length, skipped: bad, seconds: (performance.now() - t0) / 1000 });
  }

  get size(): number {
    return this.files.length;
  }

  /** Absolute path of crop `i`. */
  path(i: number): string {
    const rel = this.files[i];
    if (rel === undefined) throw new Error(`crop index ${i} out of range [0, ${this.files.length})`);
    return join(this.root, rel);
  }

  /** Decodes crop `i`. */
  read(i: number): Promise<GreyImage> {
    return readImage(this.path(i));
  }

  /** The crop order of an epoch: a permutation of 0..size-1 fixed by (seed, epoch). */
  epochOrder(seed: number, epoch: number): Uint32Array {
    return new Rng(deriveSeed(seed, epoch)).permutation(this.files.length);
  }

  /** Fingerprint for MLflow `log-inputs`. A crop listed in a reused manifest but gone is named with the manifest. */
  digest(): Promise<DatasetDigest> {
    const listing =
      this.manifest === null || this.headerCheck !== null
        ? undefined
        : `a crop listed in the manifest ${this.manifest}; if crops were removed or added on purpose, delete the manifest so the crops are listed again (the crop order of the remaining epochs then changes)`;
    return datasetDigest(this.root, this.files, { listing });
  }

  /**
   * Streams one epoch as batches of augmented views, preparing `prefetch` batches ahead (decoding
   * runs on sharp's thread pool). Batch contents depend only on (seed, epoch, position), never on
   * timing: crop at epoch position p, view v, is augmented with seed deriveSeed(seed, epoch, p, v).
   *
   * @example
   * for await (const batch of crops.stream({ seed: 1, epoch, batchSize: 128, size: 224 })) {
   *   const [q, k] = batch.views.map((v) => imageBatchToTensor(v, CEM500K_NORMALISATION));
   * }
   */
  stream(options: CropStreamOptions): CropStream {
    return new CropStream(this, options);
  }
}

async function readManifest(path: string): Promise<string[] | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new DataError(path, describeFsError(err), 'a crop manifest written by UnlabeledCrops.open');
  }
  const lines = text.split('\n').filter((l) => l.length > 0);
  if (lines[0] !== MANIFEST_HEADER) {
    throw new DataError(path, `first line is ${JSON.stringify(lines[0] ?? '')}`, `a crop manifest starting with "${MANIFEST_HEADER}"`);
  }
  const files = lines.slice(1);
  const bad = files.find((f) => isAbsolute(f) || f.split('/').includes('..'));
  if (bad !== undefined) throw new DataError(path, `lists ${JSON.stringify(bad)}`, 'paths relative to the crop directory');
  if (files.length === 0) throw new DataError(path, 'lists no crops', 'at least one crop');
  return files;
}

/** One epoch of view batches; iterate it once with `for await`. `stats` says how much the consumer waited. */
export class CropStream implements AsyncIterable<ViewBatch> {
  readonly stats: LoaderStats = { batches: 0, crops: 0, waitMs: 0 };
  /** Number of batches this epoch yields. */
  readonly batchCount: number;
  private readonly views: number;
  private readonly spec: AugmentationSpec;
  private readonly prefetch: number;

  constructor(
    private readonly crops: UnlabeledCrops,
    private readonly options: CropStreamOptions,
  ) {
    const { batchSize, size } = options;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`batchSize must be a positive integer, got ${batchSize}`);
    if (!Number.isInteger(size) || size < 1) throw new Error(`size must be a positive integer, got ${size}`);
    this.views = options.views ?? 2;
    this.spec = options.augmentation ?? CEM500K_AUGMENTATION;
    this.prefetch = Math.max(1, options.prefetch ?? 2);
    const dropLast = options.dropLast ?? true;
    this.batchCount = dropLast ? Math.floor(crops.size / batchSize) : Math.ceil(crops.size / batchSize);
    if (this.batchCount === 0) {
      throw new DataError(crops.root, `has ${crops.size} crops, fewer than one batch of ${batchSize}`, 'at least batchSize crops (or dropLast: false)');
    }
  }

  private async loadBatch(order: Uint32Array, index: number, pool: CropWorkerPool | null): Promise<ViewBatch> {
    const { seed, epoch, batchSize, size } = this.options;
    const start = index * batchSize;
    const items = order.subarray(start, Math.min(start + batchSize, order.length));
    const perCrop = await Promise.all(
      Array.from(items, async (crop, k) => {
        const seeds = Array.from({ length: this.views }, (_, v) => deriveSeed(seed, epoch, start + k, v));
        if (pool !== null) return pool.run({ path: this.crops.path(crop), seeds, spec: this.spec, size });
        const image = await this.crops.read(crop);
        return augmentedViews(image, seeds, this.spec, size);
      }),
    );
    const views = Array.from({ length: this.views }, (_, v) =>
      stackImages(
        perCrop.map((c) => c[v]),
        size,
        size,
      ),
    );
    return { index, crops: Uint32Array.from(items), views };
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<ViewBatch> {
    const order = this.crops.epochOrder(this.options.seed, this.options.epoch);
    const workers = this.options.workers ?? 0;
    const pool = workers > 0 ? new CropWorkerPool(workers) : null;
    const queue: Promise<ViewBatch>[] = [];
    let next = 0;
    const fill = () => {
      while (queue.length < this.prefetch && next < this.batchCount) {
        const pending = this.loadBatch(order, next++, pool);
        pending.catch(() => undefined); // surfaced when awaited below; avoid an unhandled rejection meanwhile
        queue.push(pending);
      }
    };
    try {
      fill();
      while (queue.length > 0) {
        const pending = queue.shift() as Promise<ViewBatch>;
        fill();
        const t0 = performance.now();
        const batch = await pending;
        this.stats.waitMs += performance.now() - t0;
        this.stats.batches++;
        this.stats.crops += batch.crops.length;
        yield batch;
      }
    } finally {
      await pool?.close();
    }
  }
}
