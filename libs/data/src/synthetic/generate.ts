/**
 * Synthetic datasets on disk, in the layouts of the real ones:
 * - U-RISC: `imgs/<track>/{train,val,test}/<name>.png` (8-bit grey) with
 *   `label/<track>/{train,val,test}/<name>.tiff` (membrane 0, background 255);
 * - CEM500K: a tree of small unlabeled 8-bit crops, `source-XX/<index>.png`.
 * Each dataset directory is built under a temporary name and renamed into place when complete.
 */
import { readdir, rmdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { publishDirectory, writeJsonAtomic } from '@emseg/fs';
import { DataError } from '../errors.js';
import { writeImage } from '../image-io.js';
import { deriveSeed, Rng } from '../random.js';
import { renderEmScene } from './em-scene.js';

/** Bumped whenever generated pixels change, so cached datasets are regenerated. */
export const SYNTHETIC_GENERATOR_VERSION = 1;

export type UriscSplit = 'train' | 'val' | 'test';
export const URISC_SPLITS: readonly UriscSplit[] = ['train', 'val', 'test'];

export interface SyntheticUriscOptions {
  /** Directory to create (must not exist, or be empty). */
  readonly dir: string;
  readonly seed: number;
  /** Images per split. */
  readonly count: { readonly train: number; readonly val: number; readonly test: number };
  /** Image edge, or [width, height] (U-RISC Track 1: [9958, 9959]; Track 2: 1024). */
  readonly size: number | readonly [number, number];
  /** Default 'Track1'. */
  readonly track?: string;
  /** Mean cell diameter in pixels (default 100: ~7-8% membrane pixels). */
  readonly cellSize?: number;
  /** Fraction of images rendered with low contrast. Default 0.25. */
  readonly lowContrastFraction?: number;
}

export interface SyntheticUriscDataset {
  readonly root: string;
  readonly track: string;
  /** Directories of each split: pass them to `LabeledImages.open`. */
  readonly splits: Record<UriscSplit, { readonly images: string; readonly labels: string; readonly names: readonly string[] }>;
  /** Fraction of membrane pixels per image name. */
  readonly membraneFraction: Record<string, number>;
}

/** Refuses a directory that exists and holds anything (synthetic data never overwrites files); removes an empty one. */
export async function assertFreshDirectory(dir: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new DataError(dir, `cannot be inspected (${(err as NodeJS.ErrnoException).code})`, 'a new directory for synthetic data');
  }
  if (entries.length > 0) throw new DataError(dir, 'already exists and is not empty', 'a new (or empty) directory; synthetic data never overwrites files');
  await rmdir(dir);
}

/** A synthetic image size (an edge, or [width, height]) checked: integers >= 16. */
export function imageSize(size: number | readonly [number, number]): [number, number] {
  const [w, h] = typeof size === 'number' ? [size, size] : size;
  if (!Number.isInteger(w) || !Number.isInteger(h) || w < 16 || h < 16) throw new Error(`synthetic image size must be integers >= 16, got ${w} x ${h}`);
  return [w, h];
}

function uriscLayout(root: string, track: string, names: Record<UriscSplit, readonly string[]>): SyntheticUriscDataset['splits'] {
  const entry = (split: UriscSplit) => ({ images: join(root, 'imgs', track, split), labels: join(root, 'label', track, split), names: names[split] });
  return { train: entry('train'), val: entry('val'), test: entry('test') };
}

/** Describes an already generated U-RISC-layout dataset (e.g. read back from a cache). */
export function syntheticUriscAt(
  root: string,
  track: string,
  names: Record<UriscSplit, readonly string[]>,
  membraneFraction: Record<string, number>,
): SyntheticUriscDataset {
  return { root, track, splits: uriscLayout(root, track, names), membraneFraction };
}

/**
 * Writes a U-RISC-layout dataset of synthetic EM images with exact membrane labels.
 * Deterministic: the same options give byte-identical files.
 *
 * @example
 * const ds = await generateSyntheticUrisc({ dir: 'out/urisc', seed: 1, count: { train: 8, val: 2, test: 2 }, size: 1024 });
 * const train = await LabeledImages.open(ds.splits.train);
 */
export async function generateSyntheticUrisc(options: SyntheticUriscOptions): Promise<SyntheticUriscDataset> {
  const root = resolve(options.dir);
  const track = options.track ?? 'Track1';
  const [width, height] = imageSize(options.size);
  for (const split of URISC_SPLITS) {
    const n = options.count[split];
    if (!Number.isInteger(n) || n < 0) throw new Error(`count.${split} must be a non-negative integer, got ${n}`);
  }
  await assertFreshDirectory(root);
  const names: Record<UriscSplit, string[]> = { train: [], val: [], test: [] };
  const membraneFraction: Record<string, number> = {};
  const published = await publishDirectory(root, async (tmp) => {
    const pending: Promise<void>[] = [];
    for (const [s, split] of URISC_SPLITS.entries()) {
      for (let k = 0; k < options.count[split]; k++) {
        const name = `${split}-${String(k).padStart(3, '0')}`;
        const rng = new Rng(deriveSeed(options.seed, s, k));
        const lowContrast = rng.chance(options.lowContrastFraction ?? 0.25);
        const scene = renderEmScene(rng, { width, height, cellSize: options.cellSize, lowContrast });
        const label = new Uint8Array(scene.membrane.length);
        let membrane = 0;
        for (let i = 0; i < label.length; i++) {
          label[i] = scene.membrane[i] ? 0 : 255;
          membrane += scene.membrane[i];
        }
        names[split].push(name);
        membraneFraction[name] = membrane / label.length;
        const layout = uriscLayout(tmp, track, names);
        // Encoding runs on sharp's threads while the next image renders.
        pending.push(writeImage(join(layout[split].images, `${name}.png`), { width, height, bitDepth: 8, data: scene.image }));
        pending.push(writeImage(join(layout[split].labels, `${name}.tiff`), { width, height, bitDepth: 8, data: label }));
        if (pending.length >= 8) await Promise.all(pending.splice(0));
      }
    }
    await Promise.all(pending);
    await writeJsonAtomic(join(tmp, 'synthetic.json'), {
      generator: 'emseg synthetic U-RISC',
      version: SYNTHETIC_GENERATOR_VERSION,
      options: { ...options, dir: undefined },
      membraneFraction,
    });
  });
  if (!published) throw new DataError(root, 'was created by another process while generating', 'a directory only this call writes');
  return { root, track, splits: uriscLayout(root, track, names), membraneFraction };
}

/** Crop area per canvas area: crops overlap, which keeps generation fast (seconds for thousands). */
const COVERAGE = 4;

export interface SyntheticCropsOptions {
  /** Directory to create (must not exist, or be empty). */
  readonly dir: string;
  readonly seed: number;
  /** Number of crops. */
  readonly count: number;
  /** Crop edge in pixels (CEM500K: 224; quick runs: 64..224). */
  readonly size: number;
  /** Sub-directories the crops are spread over, like CEM500K's source datasets. Default 4. */
  readonly sources?: number;
}

export interface SyntheticCropsDataset {
  readonly root: string;
  readonly count: number;
  readonly size: number;
}

/**
 * Writes `count` unlabeled size x size crops in a CEM500K-like tree. Crops are cut from larger
 * synthetic canvases (cell size varying per canvas, like different magnifications), each canvas
 * yielding crops that together cover it about COVERAGE (4) times. Deterministic by seed.
 */
export async function generateSyntheticCrops(options: SyntheticCropsOptions): Promise<SyntheticCropsDataset> {
  const root = resolve(options.dir);
  const { count, size, seed } = options;
  const sources = options.sources ?? 4;
  if (!Number.isInteger(count) || count < 1) throw new Error(`count must be a positive integer, got ${count}`);
  if (!Number.isInteger(size) || size < 16) throw new Error(`crop size must be an integer >= 16, got ${size}`);
  if (!Number.isInteger(sources) || sources < 1) throw new Error(`sources must be a positive integer, got ${sources}`);
  await assertFreshDirectory(root);
  const canvas = Math.max(4 * size, 512);
  // Every source directory gets at least one canvas of its own.
  const perCanvas = Math.max(1, Math.min(Math.round((COVERAGE * canvas * canvas) / (size * size)), Math.ceil(count / sources)));
  const published = await publishDirectory(root, async (tmp) => {
    const pending: Promise<void>[] = [];
    for (let c = 0; c * perCanvas < count; c++) {
      const rng = new Rng(deriveSeed(seed, 0xc0, c));
      const scene = renderEmScene(rng, { width: canvas, height: canvas, cellSize: rng.uniform(60, 140), lowContrast: rng.chance(0.25) });
      const source = `source-${String(c % sources).padStart(2, '0')}`;
      for (let k = c * perCanvas; k < Math.min(count, (c + 1) * perCanvas); k++) {
        const x = rng.int(canvas - size + 1);
        const y = rng.int(canvas - size + 1);
        const crop = new Uint8Array(size * size);
        for (let r = 0; r < size; r++) crop.set(scene.image.subarray((y + r) * canvas + x, (y + r) * canvas + x + size), r * size);
        pending.push(
          writeImage(join(tmp, source, `${String(k).padStart(7, '0')}.png`), { width: size, height: size, bitDepth: 8, data: crop }, { compressionLevel: 1 }),
        );
        if (pending.length >= 32) await Promise.all(pending.splice(0));
      }
    }
    await Promise.all(pending);
  });
  if (!published) throw new DataError(root, 'was created by another process while generating', 'a directory only this call writes');
  return { root, count, size };
}
