/**
 * CEM500K-style unlabeled crops: a directory tree of (thousands to millions of) small images,
 * listed once into a manifest, shuffled per epoch with a seed, and streamed as batches of
 * augmented views (MoCo: two per crop) with prefetch.
 */
import { readFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { CEM500K_AUGMENTATION, augmentedViews, type AugmentationSpec } from './augment.js';
import { writeFileAtomic } from './atomic.js';
import { CropWorkerPool } from './crop-pool.js';
import { stackImages, type ImageBatch } from './batch.js';
import { datasetDigest, type DatasetDigest } from './digest.js';
import { DataError, describeFsError } from './errors.js';
import { readImage } from './image-io.js';
import type { GreyImage } from './image.js';
import { listImageFiles } from './listing.js';
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
  ) {}

  /**
   * Lists (or reads the manifest of) the crops under `root`.
   *
   * @example const crops = await UnlabeledCrops.open('data/cem500k', { manifest: '.emseg/cem500k.manifest' });
   */
  static async open(root: string, options: OpenCropsOptions = {}): Promise<UnlabeledCrops> {
    const dir = resolve(root);
    const manifest = options.manifest === undefined ? undefined : resolve(options.manifest);
    if (manifest !== undefined && !options.refresh) {
      const cached = await readManifest(manifest);
      if (cached !== null) return new UnlabeledCrops(dir, cached);
    }
    const files = await listImageFiles(dir, { recursive: true, nonImage: options.nonImage, exclude: manifest ? [manifest] : [] });
    if (manifest !== undefined) await writeFileAtomic(manifest, `${MANIFEST_HEADER}\n${files.join('\n')}\n`);
    return new UnlabeledCrops(dir, files);
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

  /** Fingerprint for MLflow `log-inputs`. */
  digest(): Promise<DatasetDigest> {
    return datasetDigest(this.root, this.files);
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
    const views = Array.from({ length: this.views }, (_, v) => stackImages(perCrop.map((c) => c[v]), size, size));
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
