/**
 * Grey-value filters on float images (pure functions, no TensorFlow): Gaussian blur and the
 * photometric jitters used by augmentation. Values are expected in [0, 1]; jitters clamp to it.
 */
import { reflectIndex } from './image.js';
import type { Rng } from './random.js';

/** Normalised 1-D Gaussian kernel with radius ceil(3 sigma) (at least 1). */
export function gaussianKernel(sigma: number): Float32Array {
  if (!(sigma > 0)) throw new Error(`Gaussian sigma must be > 0, got ${sigma}`);
  const radius = Math.max(1, Math.ceil(3 * sigma));
  const k = new Float32Array(2 * radius + 1);
  let sum = 0;
  for (let i = -radius; i <= radius; i++) sum += k[i + radius] = Math.exp((-i * i) / (2 * sigma * sigma));
  for (let i = 0; i < k.length; i++) k[i] /= sum;
  return k;
}

/**
 * Separable Gaussian blur with reflected borders. Returns a new array (or writes `out`).
 *
 * @example gaussianBlur(img.data, img.width, img.height, 1.5)
 */
export function gaussianBlur(data: Float32Array, width: number, height: number, sigma: number, out?: Float32Array): Float32Array {
  const k = gaussianKernel(sigma);
  const r = (k.length - 1) / 2;
  const taps = k.length;
  const tmp = new Float32Array(width * height);
  const result = out ?? new Float32Array(width * height);
  if (result === data) throw new Error('gaussianBlur cannot write its output over its input');
  // Horizontal pass: a plain loop in the interior, reflected indices near the left/right edges.
  const edge = Int32Array.from({ length: width + 2 * r }, (_, i) => reflectIndex(i - r, width));
  for (let y = 0; y < height; y++) {
    const o = y * width;
    for (let x = 0; x < width; x++) {
      let s = 0;
      if (x >= r && x + r < width) {
        const base = o + x - r;
        for (let j = 0; j < taps; j++) s += k[j] * data[base + j];
      } else {
        for (let j = 0; j < taps; j++) s += k[j] * data[o + edge[x + j]];
      }
      tmp[o + x] = s;
    }
  }
  // Vertical pass, row by row (contiguous memory): out row y = sum_j k[j] * tmp row (y - r + j).
  for (let y = 0; y < height; y++) {
    const o = y * width;
    result.fill(0, o, o + width);
    for (let j = 0; j < taps; j++) {
      const src = reflectIndex(y - r + j, height) * width;
      const kj = k[j];
      for (let x = 0; x < width; x++) result[o + x] += kj * tmp[src + x];
    }
  }
  return result;
}

function clamp01(v: number): number {
  return v < 0 ? 0 : v > 1 ? 1 : v;
}

/**
 * torchvision ColorJitter semantics, in place: brightness multiplies (x * b), then contrast blends
 * with the image mean (c * x + (1 - c) * mean); both clamp to [0, 1]. Factors of 1 change nothing.
 */
export function adjustBrightnessContrast(data: Float32Array, brightness: number, contrast: number): void {
  if (brightness === 1 && contrast === 1) return;
  let sum = 0;
  for (let i = 0; i < data.length; i++) {
    const v = clamp01(data[i] * brightness);
    data[i] = v;
    sum += v;
  }
  if (contrast === 1) return;
  const offset = (1 - contrast) * (sum / data.length);
  for (let i = 0; i < data.length; i++) data[i] = clamp01(contrast * data[i] + offset);
}

/** Gamma correction in place: x -> x^gamma (gamma < 1 brightens mid-greys). */
export function adjustGamma(data: Float32Array, gamma: number): void {
  if (gamma === 1) return;
  for (let i = 0; i < data.length; i++) data[i] = Math.pow(data[i] < 0 ? 0 : data[i], gamma);
}

/**
 * Adds zero-mean Gaussian noise of standard deviation `std` in place (Box-Muller, both deviates
 * of each pair used), clamping to [0, 1].
 */
export function addGaussianNoise(data: Float32Array, std: number, rng: Rng): void {
  if (std === 0) return;
  for (let i = 0; i < data.length; i += 2) {
    let u = rng.next();
    while (u === 0) u = rng.next();
    const r = std * Math.sqrt(-2 * Math.log(u));
    const theta = 2 * Math.PI * rng.next();
    data[i] = clamp01(data[i] + r * Math.cos(theta));
    if (i + 1 < data.length) data[i + 1] = clamp01(data[i + 1] + r * Math.sin(theta));
  }
}
