/**
 * Dataset normalisation: networks see (x - mean) / std of [0, 1] grey values. The mean/std belong
 * to the dataset the encoder was pretrained on and travel with the checkpoint.
 */
import { DataError } from './errors.js';
import { readImage } from './image-io.js';
import { maxValue } from './image.js';
import { Rng } from './random.js';

export interface Normalisation {
  readonly mean: number;
  readonly std: number;
}

/** CEM500K's published statistics of its uint8 crops, on [0, 1] values. */
export const CEM500K_NORMALISATION: Normalisation = { mean: 0.573, std: 0.127 };

/** (x - mean) / std into `out` (default: a new array). */
export function normalise(values: Float32Array, { mean, std }: Normalisation, out = new Float32Array(values.length)): Float32Array {
  if (!(std > 0)) throw new Error(`normalisation std must be > 0, got ${std}`);
  const inv = 1 / std;
  for (let i = 0; i < values.length; i++) out[i] = (values[i] - mean) * inv;
  return out;
}

/**
 * Mean and standard deviation of the [0, 1] grey values of up to `sample` images chosen at random
 * (seeded) from `paths`, pooled over all their pixels.
 */
export async function estimateNormalisation(paths: readonly string[], options: { sample?: number; seed?: number } = {}): Promise<Normalisation> {
  if (paths.length === 0) throw new Error('estimateNormalisation needs at least one image');
  const order = new Rng(options.seed ?? 0).permutation(paths.length);
  const n = Math.min(options.sample ?? 256, paths.length);
  let count = 0;
  let sum = 0;
  let sumSq = 0;
  for (let k = 0; k < n; k++) {
    const img = await readImage(paths[order[k]]);
    const scale = 1 / maxValue(img.bitDepth);
    for (let i = 0; i < img.data.length; i++) {
      const v = img.data[i] * scale;
      sum += v;
      sumSq += v * v;
    }
    count += img.data.length;
  }
  const mean = sum / count;
  const std = Math.sqrt(Math.max(0, sumSq / count - mean * mean));
  if (!(std > 0)) throw new DataError(paths[order[0]], 'the sampled images are all one grey value', 'images with some contrast');
  return { mean, std };
}
