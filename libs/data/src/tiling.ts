/**
 * Full-image inference in tiles: a tile plan with overlap and reflective padding, and a stitcher
 * that blends overlapping tile predictions with a window (Gaussian or linear ramp) so seams do not
 * show. Memory: one full-size Float32 accumulator plus the tiles in flight; the blending
 * normaliser is separable (two 1-D arrays), because tiles form a full rows x columns grid.
 */
import { cutRegion, type FloatImage, type GreyImage, maxValue } from './image.js';
import { gridOffsets } from './patches.js';

export interface TilePlanOptions {
  /** Tile edge in pixels (the network input size). */
  readonly tileSize: number;
  /** Pixels shared by neighbouring tiles; 0 <= overlap < tileSize. */
  readonly overlap: number;
  /**
   * Reflected context added around the image, so border pixels are not at a tile's edge.
   * Default: overlap / 2.
   */
  readonly padding?: number;
}

/** One tile: its grid position and top-left corner in image coordinates (may be negative). */
export interface Tile {
  readonly index: number;
  readonly row: number;
  readonly col: number;
  readonly x: number;
  readonly y: number;
}

export interface TilePlan {
  readonly width: number;
  readonly height: number;
  readonly tileSize: number;
  readonly overlap: number;
  readonly padding: number;
  /** Tile left edges (one per column) and top edges (one per row). */
  readonly xs: readonly number[];
  readonly ys: readonly number[];
  /** Row-major: tiles[row * xs.length + col]. */
  readonly tiles: readonly Tile[];
}

function axisOffsets(length: number, tile: number, stride: number, padding: number): number[] {
  if (length + 2 * padding <= tile) return [-Math.floor((tile - length) / 2)];
  return gridOffsets(length + 2 * padding, tile, stride).map((o) => o - padding);
}

/**
 * Tiles covering a width x height image (plus `padding` of reflected context on each side), with
 * `overlap` pixels shared between neighbours. Any image size works, including smaller than a tile.
 *
 * @example tilePlan(9958, 9959, { tileSize: 1024, overlap: 256 }).tiles.length // 13 * 13 = 169
 */
export function tilePlan(width: number, height: number, options: TilePlanOptions): TilePlan {
  const { tileSize, overlap } = options;
  const padding = options.padding ?? Math.floor(overlap / 2);
  if (!Number.isInteger(tileSize) || tileSize < 1) throw new Error(`tileSize must be a positive integer, got ${tileSize}`);
  if (!Number.isInteger(overlap) || overlap < 0 || overlap >= tileSize) {
    throw new Error(`overlap must be an integer in [0, tileSize = ${tileSize}), got ${overlap}`);
  }
  if (!Number.isInteger(padding) || padding < 0) throw new Error(`padding must be a non-negative integer, got ${padding}`);
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new Error(`image size must be positive integers, got ${width} x ${height}`);
  }
  const stride = tileSize - overlap;
  const xs = axisOffsets(width, tileSize, stride, padding);
  const ys = axisOffsets(height, tileSize, stride, padding);
  const tiles = ys.flatMap((y, row) => xs.map((x, col) => ({ index: row * xs.length + col, row, col, x, y })));
  return { width, height, tileSize, overlap, padding, xs, ys, tiles };
}

/**
 * The tile's pixels, reflect-padded where it reaches outside the image, as floats in [0, 1]
 * (integer images are divided by their maximum value). Length tileSize * tileSize.
 */
export function extractTile(image: GreyImage | FloatImage, plan: TilePlan, tile: Tile, out?: Float32Array): Float32Array {
  const rect = { x: tile.x, y: tile.y, width: plan.tileSize, height: plan.tileSize };
  if (image.data instanceof Float32Array) return cutRegion(image.data, image.width, image.height, rect, out);
  const raw = cutRegion(image.data, image.width, image.height, rect);
  const result = out ?? new Float32Array(raw.length);
  const scale = 1 / maxValue((image as GreyImage).bitDepth);
  for (let i = 0; i < raw.length; i++) result[i] = raw[i] * scale;
  return result;
}

/** How overlapping predictions are weighted across a tile. */
export type BlendWindow = 'gaussian' | 'linear' | 'uniform';

/**
 * 1-D blending weights for a tile of `size` pixels (the 2-D window is the outer product).
 * - gaussian: exp(-d^2 / (2 sigma^2)), d from the tile centre, sigma = size / 8 (as nnU-Net);
 * - linear: ramps up over `overlap` pixels at each end, 1 in the middle;
 * - uniform: all ones (plain averaging; seams show when tiles disagree).
 * All weights are > 0, so every covered pixel has a defined blend.
 */
export function blendWeights(size: number, overlap: number, window: BlendWindow): Float32Array {
  const w = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    if (window === 'uniform') w[i] = 1;
    else if (window === 'linear') w[i] = Math.min(1, (Math.min(i, size - 1 - i) + 1) / (overlap + 1));
    else {
      const sigma = size / 8;
      const d = i + 0.5 - size / 2;
      w[i] = Math.max(Math.exp((-d * d) / (2 * sigma * sigma)), 1e-6);
    }
  }
  return w;
}

/**
 * Accumulates tile predictions (each tileSize^2 floats, row-major; with `channels` > 1, that many
 * interleaved values per pixel) into a full-size blended image of the same layout.
 *
 * @example
 * const stitcher = new TileStitcher(plan, 'gaussian');
 * for (const tile of plan.tiles) stitcher.add(tile, predict(extractTile(image, plan, tile)));
 * const probabilities = stitcher.finish(); // Float32Array(width * height)
 */
export class TileStitcher {
  private readonly sum: Float32Array;
  private readonly weightX: Float32Array;
  private readonly weightY: Float32Array;
  private readonly added: Uint8Array;
  private finished = false;

  constructor(
    readonly plan: TilePlan,
    readonly window: BlendWindow = 'gaussian',
    readonly channels = 1,
  ) {
    if (!(Number.isInteger(channels) && channels >= 1)) throw new Error(`TileStitcher channels must be a positive integer, got ${channels}`);
    this.sum = new Float32Array(plan.width * plan.height * channels);
    this.weightX = blendWeights(plan.tileSize, plan.overlap, window);
    this.weightY = this.weightX;
    this.added = new Uint8Array(plan.tiles.length);
  }

  /** Adds one tile's prediction (tileSize * tileSize * channels values). Each tile exactly once. */
  add(tile: Tile, values: Float32Array): void {
    const { width, height, tileSize } = this.plan;
    const k = this.channels;
    if (this.finished) throw new Error('TileStitcher.add after finish()');
    if (this.plan.tiles[tile.index] !== tile && !sameTile(this.plan.tiles[tile.index], tile)) {
      throw new Error(`tile ${tile.index} is not part of this plan`);
    }
    if (this.added[tile.index]) throw new Error(`tile ${tile.index} (row ${tile.row}, col ${tile.col}) was added twice`);
    if (values.length !== tileSize * tileSize * k) {
      throw new Error(`tile prediction has ${values.length} values; expected ${tileSize}^2${k > 1 ? ` x ${k} channels` : ''} = ${tileSize * tileSize * k}`);
    }
    this.added[tile.index] = 1;
    const c0 = Math.max(0, -tile.x);
    const c1 = Math.min(tileSize, width - tile.x);
    for (let r = Math.max(0, -tile.y); r < tileSize && tile.y + r < height; r++) {
      const wy = this.weightY[r];
      const dst = (tile.y + r) * width + tile.x;
      const src = r * tileSize;
      if (k === 1) {
        for (let c = c0; c < c1; c++) this.sum[dst + c] += wy * this.weightX[c] * values[src + c];
      } else {
        for (let c = c0; c < c1; c++) {
          const w = wy * this.weightX[c];
          for (let j = 0; j < k; j++) this.sum[(dst + c) * k + j] += w * values[(src + c) * k + j];
        }
      }
    }
  }

  /** Divides by the summed weights and returns the blended image (width * height * channels floats). */
  finish(): Float32Array {
    const missing = this.added.indexOf(0);
    if (missing >= 0) {
      const t = this.plan.tiles[missing];
      throw new Error(`tile ${missing} (row ${t.row}, col ${t.col}) was never added; all ${this.plan.tiles.length} tiles are needed`);
    }
    if (!this.finished) {
      const { width, height, xs, ys } = this.plan;
      const nx = axisNormaliser(width, xs, this.weightX);
      const ny = axisNormaliser(height, ys, this.weightY);
      const k = this.channels;
      for (let y = 0; y < height; y++) {
        const o = y * width;
        if (k === 1) for (let x = 0; x < width; x++) this.sum[o + x] /= ny[y] * nx[x];
        else for (let x = 0; x < width; x++) for (let j = 0, n = ny[y] * nx[x]; j < k; j++) this.sum[(o + x) * k + j] /= n;
      }
      this.finished = true;
    }
    return this.sum;
  }
}

function sameTile(a: Tile | undefined, b: Tile): boolean {
  return a !== undefined && a.x === b.x && a.y === b.y && a.row === b.row && a.col === b.col;
}

/** Sum over tiles along one axis of their 1-D weight at each pixel. */
function axisNormaliser(length: number, offsets: readonly number[], weights: Float32Array): Float64Array {
  const n = new Float64Array(length);
  for (const o of offsets) {
    for (let i = Math.max(0, -o); i < weights.length && o + i < length; i++) n[o + i] += weights[i];
  }
  return n;
}

/**
 * Runs `predict` over all tiles of `image`, `batchSize` tiles at a time, and returns the blended
 * full-size prediction. `predict` gets a batch [n, tileSize, tileSize] of floats in [0, 1] (the
 * caller normalises) and returns n * tileSize^2 values in the same layout (times `channels`,
 * interleaved per pixel, for a multi-channel prediction such as class probabilities).
 */
export async function predictTiled(
  image: GreyImage | FloatImage,
  options: TilePlanOptions & { readonly window?: BlendWindow; readonly batchSize?: number; readonly channels?: number },
  predict: (batch: Float32Array, count: number) => Float32Array | Promise<Float32Array>,
): Promise<Float32Array> {
  const plan = tilePlan(image.width, image.height, options);
  const channels = options.channels ?? 1;
  const stitcher = new TileStitcher(plan, options.window ?? 'gaussian', channels);
  const batchSize = options.batchSize ?? 1;
  const area = plan.tileSize * plan.tileSize;
  for (let start = 0; start < plan.tiles.length; start += batchSize) {
    const group = plan.tiles.slice(start, start + batchSize);
    const input = new Float32Array(group.length * area);
    group.forEach((tile, i) => extractTile(image, plan, tile, input.subarray(i * area, (i + 1) * area)));
    const output = await predict(input, group.length);
    if (output.length !== input.length * channels) {
      throw new Error(`predict returned ${output.length} values for ${group.length} tiles; expected ${input.length * channels}`);
    }
    const out = area * channels;
    group.forEach((tile, i) => stitcher.add(tile, output.subarray(i * out, (i + 1) * out)));
  }
  return stitcher.finish();
}
