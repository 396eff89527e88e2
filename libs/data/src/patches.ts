/**
 * Where to cut training patches: regular overlapping grids ("cross-crop", U-RISC: 1024 x 1024 at
 * stride 512) and random positions with optional foreground oversampling (membranes are ~5% of
 * U-RISC pixels, so uniform patches are mostly background).
 */
import type { Mask, Rect } from './image.js';
import type { Rng } from './random.js';

function assertPositiveInteger(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got ${value}`);
}

/**
 * Start offsets along one axis, `0, stride, 2 * stride, ...`, with the last one moved back to
 * `length - size` so the windows cover [0, length) exactly with none reaching past the end.
 * If `length <= size` there is one window at 0 (it reaches past the end and is reflect-padded).
 *
 * @example gridOffsets(9958, 1024, 512) // [0, 512, ..., 8704, 8934]: 19 windows
 * @example gridOffsets(2048, 1024, 512) // [0, 512, 1024]
 */
export function gridOffsets(length: number, size: number, stride: number): number[] {
  assertPositiveInteger('length', length);
  assertPositiveInteger('size', size);
  assertPositiveInteger('stride', stride);
  if (stride > size) throw new Error(`stride ${stride} is larger than the window size ${size}: the windows would leave gaps`);
  if (length <= size) return [0];
  const offsets: number[] = [];
  for (let o = 0; o + size < length; o += stride) offsets.push(o);
  offsets.push(length - size);
  return offsets;
}

export interface GridOptions {
  /** Patch edge in pixels (U-RISC: 1024). */
  readonly size: number;
  /** Distance between patch starts (U-RISC: 512, i.e. 50% overlap). */
  readonly stride: number;
}

/**
 * Overlapping size x size patches covering a width x height image, row by row. Every pixel lies in
 * at least one patch; no patch reaches outside the image unless the image is smaller than a patch.
 *
 * @example patchGrid(9958, 9959, { size: 1024, stride: 512 }).length // 19 * 19 = 361
 */
export function patchGrid(width: number, height: number, { size, stride }: GridOptions): Rect[] {
  const xs = gridOffsets(width, size, stride);
  const ys = gridOffsets(height, size, stride);
  return ys.flatMap((y) => xs.map((x) => ({ x, y, width: size, height: size })));
}

/**
 * The foreground pixels of a mask, indexed so that a uniformly random one can be drawn cheaply
 * (a cumulative count per row: O(height) memory, not O(foreground pixels)).
 */
export class ForegroundIndex {
  /** rowStart[y] = number of foreground pixels before row y; rowStart[height] = total. */
  private readonly rowStart: Float64Array;

  constructor(private readonly mask: Mask) {
    const { width, height, data } = mask;
    this.rowStart = new Float64Array(height + 1);
    for (let y = 0; y < height; y++) {
      let n = 0;
      const o = y * width;
      for (let x = 0; x < width; x++) n += data[o + x] !== 0 ? 1 : 0;
      this.rowStart[y + 1] = this.rowStart[y] + n;
    }
  }

  /** Number of foreground pixels. */
  get count(): number {
    return this.rowStart[this.mask.height];
  }

  /** The k-th foreground pixel in row-major order (0 <= k < count). */
  pixel(k: number): { x: number; y: number } {
    if (!(k >= 0 && k < this.count)) throw new Error(`foreground pixel ${k} out of range [0, ${this.count})`);
    let lo = 0;
    let hi = this.mask.height;
    while (hi - lo > 1) {
      const mid = (lo + hi) >>> 1;
      if (this.rowStart[mid] <= k) lo = mid;
      else hi = mid;
    }
    let left = k - this.rowStart[lo];
    const o = lo * this.mask.width;
    for (let x = 0; ; x++) {
      if (this.mask.data[o + x] !== 0 && left-- === 0) return { x, y: lo };
    }
  }

  /** A uniformly random foreground pixel, or null if there is none. */
  sample(rng: Rng): { x: number; y: number } | null {
    return this.count === 0 ? null : this.pixel(rng.int(this.count));
  }
}

export interface RandomPatchOptions {
  /** Patch edge in pixels. */
  readonly size: number;
  /** Foreground pixels of the image's mask; needed for oversampling. */
  readonly foreground?: ForegroundIndex;
  /**
   * Probability that the patch is forced to contain a random foreground pixel (placed uniformly
   * inside the patch). 0 = plain uniform patches. nnU-Net uses 0.33.
   */
  readonly foregroundProbability?: number;
}

function placeAxis(length: number, size: number, rng: Rng, mustContain: number | null): number {
  if (length <= size) return -Math.floor((size - length) / 2); // centred, reflect-padded
  const maxStart = length - size;
  if (mustContain === null) return rng.int(maxStart + 1);
  const lo = Math.max(0, mustContain - size + 1);
  const hi = Math.min(maxStart, mustContain);
  return lo + rng.int(hi - lo + 1);
}

/**
 * A random size x size patch position inside a width x height image; with probability
 * `foregroundProbability` it contains a random foreground pixel.
 *
 * @example samplePatch(rng, 1024, 1024, { size: 256, foreground: new ForegroundIndex(mask), foregroundProbability: 0.5 })
 */
export function samplePatch(rng: Rng, width: number, height: number, options: RandomPatchOptions): Rect {
  const { size, foreground, foregroundProbability = 0 } = options;
  assertPositiveInteger('size', size);
  if (foregroundProbability < 0 || foregroundProbability > 1) throw new Error(`foregroundProbability must be in [0, 1], got ${foregroundProbability}`);
  if (foregroundProbability > 0 && foreground === undefined) throw new Error('foregroundProbability > 0 needs a ForegroundIndex of the mask');
  const pixel = foregroundProbability > 0 && rng.chance(foregroundProbability) ? (foreground as ForegroundIndex).sample(rng) : null;
  const x = placeAxis(width, size, rng, pixel?.x ?? null);
  const y = placeAxis(height, size, rng, pixel?.y ?? null);
  return { x, y, width: size, height: size };
}
