/**
 * Full-image inference: overlapping tiles through the segmenter, blended back with a window so
 * seams do not show, optional flip test-time augmentation; the probability map as a 16-bit image.
 * (A task's binary output format, e.g. the U-RISC submission, lives in its task module.)
 *
 * Memory for a W x H image: the decoded image, one Float32 accumulator (4 W H bytes: 400 MB for
 * 9958 x 9959) and `batchSize` tiles in flight; outputs are made one at a time from the accumulator.
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { DataError, predictTiled, type BlendWindow, type GreyImage } from '@emseg/data';
import type { Segmenter } from './segmenter.js';

export interface InferenceOptions {
  /** Tile edge (network input), a multiple of 32. */
  tileSize: number;
  /** Pixels shared by neighbouring tiles. */
  overlap: number;
  window: BlendWindow;
  /** Tiles per forward pass. */
  batchSize: number;
  /** Average the four flips of every tile. */
  flipTta: boolean;
  /** Reflected context around the image (default overlap / 2, as tilePlan). */
  padding?: number;
}

/** The U-Net's input must be a multiple of this (five stride-2 stages). */
export const TILE_MULTIPLE = 32;

/** Thrown by {@link predictImage} when `stop.requested` turns true between tile batches. */
export class PredictionStopped extends Error {
  constructor(readonly image: string) {
    super(`${image}: prediction stopped on request`);
    this.name = 'PredictionStopped';
  }
}

/**
 * Why these tiling options are unusable, or null: the tile a positive multiple of 32, the overlap
 * a whole number below it, at least one tile per batch. `flag` names an option for the message.
 */
export function inferenceProblem(options: InferenceOptions, flag: (name: 'tileSize' | 'overlap' | 'batchSize') => string = cliFlag): string | null {
  const { tileSize, overlap, batchSize } = options;
  if (!(Number.isInteger(tileSize) && tileSize >= TILE_MULTIPLE && tileSize % TILE_MULTIPLE === 0))
    return `${flag('tileSize')} must be a positive multiple of ${TILE_MULTIPLE} (the U-Net's input), got ${tileSize}`;
  if (!(Number.isInteger(overlap) && overlap >= 0 && overlap < tileSize))
    return `${flag('overlap')} must be a whole number in [0, tile size ${tileSize}), got ${overlap}`;
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) return `${flag('batchSize')} must be a positive whole number of tiles, got ${batchSize}`;
  return null;
}

const cliFlag = (name: 'tileSize' | 'overlap' | 'batchSize') => ({ tileSize: '--tile-size', overlap: '--overlap', batchSize: '--batch-size' })[name];

/**
 * The largest tile that fits an image whose shorter side is `side` and passes every tiling check
 * (a multiple of 32, no larger than the image, above the overlap: the overlap is kept when it
 * fits, else halved to tile / 2). Null when the image is under 32 pixels and no tile fits.
 *
 * @example fittingTiling(90, 64) // { tileSize: 64, overlap: 32 }
 */
export function fittingTiling(side: number, overlap: number): { tileSize: number; overlap: number } | null {
  const tileSize = Math.floor(side / TILE_MULTIPLE) * TILE_MULTIPLE;
  if (tileSize < TILE_MULTIPLE) return null;
  return { tileSize, overlap: overlap < tileSize ? overlap : tileSize / 2 };
}

/**
 * Refuses an image smaller than the tile, naming it and options that do fit, spelled by `option`
 * (default: the predict flags, `--tile-size 64 --overlap 32`; the overlap only when it must change).
 */
export function checkTileFits(
  path: string,
  width: number,
  height: number,
  options: Pick<InferenceOptions, 'tileSize' | 'overlap'>,
  option: (name: 'tileSize' | 'overlap', value: number) => string = (n, v) => `${cliFlag(n)} ${v}`,
): void {
  const { tileSize, overlap } = options;
  if (width >= tileSize && height >= tileSize) return;
  const fit = fittingTiling(Math.min(width, height), overlap);
  const fix = fit
    ? `images of at least ${tileSize} x ${tileSize} pixels, or a smaller tile (${[option('tileSize', fit.tileSize), ...(fit.overlap === overlap ? [] : [option('overlap', fit.overlap)])].join(' ')})`
    : `images of at least ${TILE_MULTIPLE} x ${TILE_MULTIPLE} pixels, the U-Net's smallest input (no tile fits this one)`;
  throw new DataError(path, `is ${width} x ${height} pixels, smaller than the inference tile (${tileSize} x ${tileSize})`, fix);
}

/**
 * Foreground probability of every pixel of `image` (row-major Float32Array of width * height; a
 * multi-class model: its `classes` probabilities per pixel, interleaved), predicted in blended tiles. `name` (a file path) names the image in errors; `onTiles` reports
 * progress. Between tile batches the event loop runs (so a SIGINT handler sees its signal) and
 * `stop.requested` ends the prediction with {@link PredictionStopped}.
 *
 * @example const p = await predictImage(seg, await readImage('test/0.png'), { tileSize: 1024, overlap: 512, window: 'gaussian', batchSize: 2, flipTta: true }, 'test/0.png');
 */
export async function predictImage(
  segmenter: Segmenter,
  image: GreyImage,
  options: InferenceOptions,
  name = 'image',
  onTiles?: (done: number) => void,
  stop?: { readonly requested: boolean },
): Promise<Float32Array> {
  const { tileSize } = options;
  checkTileFits(name, image.width, image.height, options);
  let done = 0;
  return predictTiled(
    image,
    { tileSize, overlap: options.overlap, padding: options.padding, window: options.window, batchSize: options.batchSize, channels: segmenter.classes },
    async (batch, count) => {
      if (stop) {
        await yieldToEventLoop();
        if (stop.requested) throw new PredictionStopped(name);
      }
      const out = segmenter.probabilities(batch, count, tileSize, options.flipTta);
      done += count;
      onTiles?.(done);
      return out;
    },
  );
}

/**
 * The most probable class of every pixel of interleaved class probabilities (`classes` per pixel),
 * ties to the lower class.
 *
 * @example argmaxClasses(Float32Array.of(0.2, 0.8, 0.6, 0.4), 2) // Uint8Array [1, 0]
 */
export function argmaxClasses(probabilities: Float32Array, classes: number): Uint8Array {
  if (!(Number.isInteger(classes) && classes >= 2 && classes <= 256)) throw new Error(`argmaxClasses: classes must be an integer in 2..256, got ${classes}`);
  if (probabilities.length % classes !== 0) throw new Error(`argmaxClasses: ${probabilities.length} values are not whole pixels of ${classes} classes`);
  const out = new Uint8Array(probabilities.length / classes);
  for (let i = 0, o = 0; i < out.length; i++, o += classes) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (probabilities[o + c] > probabilities[o + best]) best = c;
    out[i] = best;
  }
  return out;
}

/** Number of tiles predictImage runs for a width x height image (for progress bars). */
export function tileCount(width: number, height: number, options: InferenceOptions): number {
  const stride = options.tileSize - options.overlap;
  const padding = options.padding ?? Math.floor(options.overlap / 2);
  const axis = (n: number) => (n + 2 * padding <= options.tileSize ? 1 : Math.ceil((n + 2 * padding - options.tileSize) / stride) + 1);
  return axis(width) * axis(height);
}

/** Probabilities as a 16-bit image (round(p * 65535)), for a lossless PNG/TIFF probability map. */
export function toProbability16(probability: Float32Array, width: number, height: number): GreyImage {
  const data = new Uint16Array(probability.length);
  for (let i = 0; i < data.length; i++) data[i] = Math.round(Math.min(1, Math.max(0, probability[i])) * 65535);
  return { width, height, bitDepth: 16, data };
}
