/**
 * Training and validation patches from loaded image/label pairs, as batches: grid patches (U-RISC:
 * 1024 x 1024 at stride 512) or random patches with foreground oversampling, each optionally
 * augmented with the same geometry on image and mask. Augmentation samples straight from the
 * full image, so rotations and zooms near a patch edge see real context, not padding.
 */
import { applyAugmentation, sampleAugmentation, type AugmentationSpec } from './augment.js';
import { stackImages, stackMasks, type ImageBatch, type MaskBatch } from './batch.js';
import { cutRegion, maxValue, type Rect } from './image.js';
import type { LabeledSample } from './labeled-images.js';
import { ForegroundIndex, patchGrid, samplePatch } from './patches.js';
import { deriveSeed, Rng } from './random.js';

export interface PatchBatch {
  readonly images: ImageBatch;
  readonly masks: MaskBatch;
  /** Where each patch came from (before augmentation). */
  readonly sources: readonly { readonly name: string; readonly rect: Rect }[];
}

export interface PatchBatchOptions {
  /** Patch edge in pixels. */
  readonly size: number;
  readonly batchSize: number;
  readonly seed: number;
  readonly epoch: number;
  /**
   * 'grid': every grid patch of every image once per epoch (shuffled unless `shuffle: false`);
   * 'random': `patchesPerEpoch` random patches, images drawn in proportion to their area.
   */
  readonly mode: 'grid' | 'random';
  /** Grid stride (default size / 2). */
  readonly stride?: number;
  /** Random mode: patches per epoch (default: as many as the grid would give). */
  readonly patchesPerEpoch?: number;
  /** Random mode: probability of forcing a foreground pixel into the patch. Default 0. */
  readonly foregroundProbability?: number;
  /** Omit for validation (patches are then cut exactly, no resampling). */
  readonly augmentation?: AugmentationSpec;
  /** Grid mode: shuffle the patch order by (seed, epoch). Default true. */
  readonly shuffle?: boolean;
  /** Yield a last, smaller batch. Default false. */
  readonly keepLast?: boolean;
}

interface PatchRef {
  readonly sample: number;
  readonly rect: Rect;
}

function planPatches(samples: readonly LabeledSample[], options: PatchBatchOptions, foreground: (i: number) => ForegroundIndex): PatchRef[] {
  const { size, seed, epoch } = options;
  const stride = options.stride ?? Math.max(1, Math.floor(size / 2));
  const grid = samples.flatMap((s, sample) => patchGrid(s.image.width, s.image.height, { size, stride }).map((rect) => ({ sample, rect })));
  const rng = new Rng(deriveSeed(seed, epoch, 0x9a7c4));
  if (options.mode === 'grid') {
    if (options.shuffle === false) return grid;
    return Array.from(rng.permutation(grid.length), (i) => grid[i]);
  }
  const count = options.patchesPerEpoch ?? grid.length;
  const areas = samples.map((s) => s.image.width * s.image.height);
  const total = areas.reduce((a, b) => a + b, 0);
  const p = options.foregroundProbability ?? 0;
  return Array.from({ length: count }, () => {
    let pick = rng.uniform(0, total);
    let sample = 0;
    while (sample < samples.length - 1 && pick >= areas[sample]) pick -= areas[sample++];
    const { width, height } = samples[sample].image;
    const rect = samplePatch(rng, width, height, { size, foregroundProbability: p, foreground: p > 0 ? foreground(sample) : undefined });
    return { sample, rect };
  });
}

/**
 * Batches of (image, mask) patches for one epoch. Deterministic by (seed, epoch): the patch at
 * epoch position k is augmented with seed deriveSeed(seed, epoch, k).
 *
 * @example
 * for (const batch of patchBatches(await train.loadAll(), { mode: 'random', size: 256, batchSize: 4,
 *   seed: 1, epoch, foregroundProbability: 0.5, augmentation: URISC_AUGMENTATION })) { ... }
 */
export function* patchBatches(samples: readonly LabeledSample[], options: PatchBatchOptions): Generator<PatchBatch> {
  const { size, batchSize, seed, epoch } = options;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`batchSize must be a positive integer, got ${batchSize}`);
  if (samples.length === 0) throw new Error('patchBatches needs at least one labelled image');
  const indexes = new Map<number, ForegroundIndex>();
  const foreground = (i: number) => {
    let index = indexes.get(i);
    if (index === undefined) indexes.set(i, (index = new ForegroundIndex(samples[i].mask)));
    return index;
  };
  const plan = planPatches(samples, options, foreground);
  const end = options.keepLast ? plan.length : plan.length - (plan.length % batchSize);
  for (let start = 0; start < end; start += batchSize) {
    const group = plan.slice(start, Math.min(start + batchSize, end));
    const images: Float32Array[] = [];
    const masks: Uint8Array[] = [];
    group.forEach(({ sample, rect }, k) => {
      const { image, mask } = samples[sample];
      if (options.augmentation) {
        const params = sampleAugmentation(new Rng(deriveSeed(seed, epoch, start + k)), options.augmentation, { region: rect, width: size, height: size });
        const out = applyAugmentation(params, image, mask);
        images.push(out.image);
        masks.push(out.mask as Uint8Array);
      } else {
        const raw = cutRegion(image.data, image.width, image.height, rect);
        const scale = 1 / maxValue(image.bitDepth);
        images.push(Float32Array.from(raw, (v) => v * scale));
        masks.push(cutRegion(mask.data, mask.width, mask.height, rect));
      }
    });
    yield {
      images: stackImages(images, size, size),
      masks: stackMasks(masks, size, size),
      sources: group.map(({ sample, rect }) => ({ name: samples[sample].name, rect })),
    };
  }
}
