/**
 * Integrated gradients (Sundararajan et al. 2017) and the attribution field S_k of the U-RISC paper
 * (Shi et al. 2022): which input pixels made the network call one output pixel membrane, and how
 * large an area they cover.
 *
 *   IG_i(x) = (x_i - x'_i) * integral_0^1 dF(x' + a (x - x')) / dx_i da
 *
 * for a scalar target F (one output pixel's logit or probability), an input window x and a baseline
 * x', approximated by the trapezoid rule over m + 1 points a = 0, 1/m, ..., 1. Completeness:
 * sum_i IG_i = F(x) - F(x') up to the quadrature error. The field is normalised by its largest
 * magnitude to [-1, 1]; S_k counts the pixels whose normalised attribution exceeds k (signed: pixels
 * that push the output up) and converts the count to an area, count * h^2 for h nm per pixel.
 *
 * Pure functions (windows, baselines, S_k, pixel sampling) need no TensorFlow; `integratedGradients`
 * runs any target function and `pixelTarget` makes the target of a segmenter.
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { Rng, cutRegion, gaussianBlur, type Mask, type Rect } from '@emseg/data';
import { tf, type Tensor, type Tensor1D, type Tensor4D } from '@emseg/tf';
import { TILE_MULTIPLE, type Segmenter } from '@emseg/segmentation';

/** A scalar per image of a batch: [b, h, w, 1] grey values in [0, 1] -> [b]. */
export type TargetFn = (images: Tensor4D) => Tensor1D;

export interface IgOptions {
  /** Intervals m of the path integral (m + 1 gradient evaluations). */
  steps: number;
  /** Interpolated images per forward/backward pass (bounds memory). */
  batch: number;
  /** Called after each batch with the gradient evaluations done so far (of steps + 1). */
  onBatch?: (done: number, total: number) => void;
  /** Checked between batches (the event loop runs there, so a SIGINT handler sees its signal). */
  stop?: { readonly requested: boolean };
}

/** Thrown by {@link integratedGradients} when `stop.requested` turns true between batches. */
export class AttributionStopped extends Error {
  constructor() {
    super('attribution stopped on request');
    this.name = 'AttributionStopped';
  }
}

export interface IgResult {
  /** Attribution of every input pixel, row-major, the window's size. */
  attribution: Float32Array;
  /** F(x) and F(x'). */
  target: number;
  baselineTarget: number;
  /** sum_i IG_i; completeness says it equals target - baselineTarget. */
  sum: number;
}

/**
 * Points and weights of the trapezoid rule on [0, 1] with `steps` intervals: a_j = j / m, weight
 * 1 / m inside and 1 / (2 m) at both ends.
 *
 * @example trapezoid(2) // { alphas: [0, 0.5, 1], weights: [0.25, 0.5, 0.25] }
 */
export function trapezoid(steps: number): { alphas: Float32Array; weights: Float32Array } {
  if (!(Number.isInteger(steps) && steps >= 1)) throw new Error(`integrated gradients needs a whole number of steps >= 1, got ${steps}`);
  const alphas = new Float32Array(steps + 1);
  const weights = new Float32Array(steps + 1);
  for (let j = 0; j <= steps; j++) {
    alphas[j] = j / steps;
    weights[j] = j === 0 || j === steps ? 0.5 / steps : 1 / steps;
  }
  return { alphas, weights };
}

/**
 * Integrated gradients of `target` at `input` (a height x width window of grey values) from
 * `baseline` (same size). Gradients of the interpolated images are taken `batch` at a time: the
 * target of one image depends only on that image (inference mode), so the gradient of the batch's
 * sum is every image's own gradient.
 *
 * @example const ig = await integratedGradients(pixelTarget(seg, 256, 256), window, blackBaseline(window), 512, 512, { steps: 50, batch: 4 });
 */
export async function integratedGradients(
  target: TargetFn,
  input: Float32Array,
  baseline: Float32Array,
  height: number,
  width: number,
  options: IgOptions,
): Promise<IgResult> {
  if (input.length !== height * width || baseline.length !== input.length) {
    throw new Error(`integrated gradients: input (${input.length}) and baseline (${baseline.length}) must both hold ${height} x ${width} values`);
  }
  if (!(Number.isInteger(options.batch) && options.batch >= 1))
    throw new Error(`integrated gradients: batch must be a whole number >= 1, got ${options.batch}`);
  const { alphas, weights } = trapezoid(options.steps);
  const x = tf.tensor4d(input, [1, height, width, 1]);
  const base = tf.tensor4d(baseline, [1, height, width, 1]);
  const delta = tf.sub(x, base);
  const gradient = tf.grad((images: Tensor) => target(images as Tensor4D).sum());
  let integral: Tensor = tf.zeros([height, width]);
  try {
    for (let start = 0; start < alphas.length; start += options.batch) {
      if (options.stop) {
        await yieldToEventLoop();
        if (options.stop.requested) throw new AttributionStopped();
      }
      const end = Math.min(alphas.length, start + options.batch);
      const next = tf.tidy(() => {
        const a = tf.tensor4d(alphas.subarray(start, end), [end - start, 1, 1, 1]);
        const w = tf.tensor4d(weights.subarray(start, end), [end - start, 1, 1, 1]);
        const path = tf.add(base, tf.mul(a, delta));
        const g = gradient(path);
        return tf.add(integral, tf.mul(g, w).sum([0, 3]));
      });
      integral.dispose();
      integral = next;
      options.onBatch?.(end, alphas.length);
    }
    const attribution = tf.tidy(() => tf.mul(integral, delta.reshape([height, width])));
    const ends = tf.tidy(() => target(tf.concat([x, base], 0)));
    try {
      const [fx, fBase] = ends.dataSync() as Float32Array;
      const values = attribution.dataSync() as Float32Array;
      let sum = 0;
      for (let i = 0; i < values.length; i++) sum += values[i];
      return { attribution: Float32Array.from(values), target: fx, baselineTarget: fBase, sum };
    } finally {
      attribution.dispose();
      ends.dispose();
    }
  } finally {
    tf.dispose([x, base, delta, integral]);
  }
}

/** What is attributed: the output logit (default; IG of a logit has no saturation) or the probability. */
export type AttributionTarget = 'logit' | 'probability';

/**
 * The target of output pixel (x, y) of a window: the segmenter's membrane logit there, or its
 * sigmoid. Inputs are grey values in [0, 1]; the segmenter normalises them.
 */
export function pixelTarget(segmenter: Segmenter, x: number, y: number, kind: AttributionTarget = 'logit'): TargetFn {
  return (images) => {
    // checked before any op runs: a throw inside tf.grad would leave the forward's tensors on its tape
    const [, h, w] = images.shape;
    if (!(Number.isInteger(x) && Number.isInteger(y) && x >= 0 && y >= 0 && x < w && y < h))
      throw new Error(`pixel (${x}, ${y}) is outside the ${w} x ${h} output`);
    return tf.tidy(() => {
      const logits = segmenter.forward(images, false);
      const value = logits.slice([0, y, x, 0], [-1, 1, 1, 1]).reshape([-1]) as Tensor1D;
      return kind === 'probability' ? (tf.sigmoid(value) as Tensor1D) : value;
    });
  };
}

/** The baselines x': black (all grey 0), mean (zero in the model's normalised space: the paper's), blur. */
export type BaselineKind = 'black' | 'mean' | 'blur';

/**
 * The baseline of a window. `black`: grey 0 everywhere; `mean`: the model's normalisation mean
 * (all zeros after normalisation, as the U-RISC paper's attribution); `blur`: a Gaussian-blurred copy
 * (sigma `blurSigma`, default 8 px) that keeps brightness but removes membranes.
 */
export function makeBaseline(
  window: Float32Array,
  width: number,
  height: number,
  kind: BaselineKind,
  options: { mean?: number; blurSigma?: number } = {},
): Float32Array {
  if (kind === 'black') return new Float32Array(window.length);
  if (kind === 'mean') return new Float32Array(window.length).fill(options.mean ?? 0.5);
  return gaussianBlur(window, width, height, options.blurSigma ?? 8);
}

/**
 * The window around pixel (x, y) of a width x height image: `size` (a multiple of 32) centred on the
 * pixel, shifted to lie inside the image (clipped at the borders, never padded); an image side
 * shorter than `size` gives the largest multiple of 32 that fits. Null when the image is under 32
 * pixels on a side.
 *
 * @example attributionWindow(10, 500, 1000, 1000, 512) // { x: 0, y: 244, width: 512, height: 512 }
 */
export function attributionWindow(x: number, y: number, width: number, height: number, size: number): Rect | null {
  const side = (n: number) => Math.min(size, Math.floor(n / TILE_MULTIPLE) * TILE_MULTIPLE);
  const w = side(width);
  const h = side(height);
  if (w < TILE_MULTIPLE || h < TILE_MULTIPLE) return null;
  const start = (p: number, s: number, n: number) => Math.max(0, Math.min(n - s, p - Math.floor(s / 2)));
  return { x: start(x, w, width), y: start(y, h, height), width: w, height: h };
}

/**
 * The field divided by its largest magnitude, so it lies in [-1, 1] (an all-zero field stays zero).
 *
 * @example normalizeField(Float32Array.of(2, -4, 1)).field // [0.5, -1, 0.25]
 */
export function normalizeField(field: Float32Array): { field: Float32Array; maxAbs: number } {
  let maxAbs = 0;
  for (let i = 0; i < field.length; i++) maxAbs = Math.max(maxAbs, Math.abs(field[i]));
  const out = new Float32Array(field.length);
  if (maxAbs > 0) for (let i = 0; i < field.length; i++) out[i] = field[i] / maxAbs;
  return { field: out, maxAbs };
}

/**
 * The largest |value| of a normalised field on the window's edges that lie inside the image (edges on
 * the image border are the image's own end). Above k, the field was cut by the window and S_k
 * undercounts: a larger window is needed.
 */
export function cutEdgeMax(normalized: Float32Array, window: Rect, imageWidth: number, imageHeight: number): number {
  const { x, y, width: w, height: h } = window;
  let max = 0;
  const at = (c: number, r: number) => (max = Math.max(max, Math.abs(normalized[r * w + c])));
  if (y > 0) for (let c = 0; c < w; c++) at(c, 0);
  if (y + h < imageHeight) for (let c = 0; c < w; c++) at(c, h - 1);
  if (x > 0) for (let r = 0; r < h; r++) at(0, r);
  if (x + w < imageWidth) for (let r = 0; r < h; r++) at(w - 1, r);
  return max;
}

/** Pixels of a normalised field whose value exceeds k (strictly). */
export function fieldPixels(normalized: Float32Array, k: number): number {
  let n = 0;
  for (let i = 0; i < normalized.length; i++) if (normalized[i] > k) n++;
  return n;
}

export interface AttributionArea {
  k: number;
  pixels: number;
  /** pixels * pixelSize^2. */
  nm2: number;
}

/**
 * S_k of a normalised field for each k: the count of pixels above k and their area in nm^2 at
 * `pixelSizeNm` nm per pixel.
 *
 * @example attributionAreas(Float32Array.of(1, 0.5, 0.02, -1), [0.01, 0.1], 2) // [{ k: 0.01, pixels: 3, nm2: 12 }, { k: 0.1, pixels: 2, nm2: 8 }]
 */
export function attributionAreas(normalized: Float32Array, ks: readonly number[], pixelSizeNm: number): AttributionArea[] {
  if (!(pixelSizeNm > 0)) throw new Error(`pixel size must be > 0 nm, got ${pixelSizeNm}`);
  return ks.map((k) => {
    const pixels = fieldPixels(normalized, k);
    return { k, pixels, nm2: pixels * pixelSizeNm * pixelSizeNm };
  });
}

/** Outcome classes of a pixel against the label. */
export type PixelClass = 'tp' | 'fp' | 'fn';
export const PIXEL_CLASSES: readonly PixelClass[] = ['tp', 'fp', 'fn'];
export const CLASS_NAMES: Record<PixelClass | 'chosen', string> = { tp: 'true positive', fp: 'false positive', fn: 'false negative', chosen: 'chosen' };

export interface SampledPixel {
  x: number;
  y: number;
  cls: PixelClass;
}

/**
 * Up to `perClass` pixels of each class, drawn uniformly without replacement (reservoir sampling,
 * seeded): true positives (predicted and labelled membrane), false positives (predicted only), false
 * negatives (labelled only). `predicted` and `truth` are masks (1 = membrane) of the same size.
 */
export function samplePixels(predicted: Mask, truth: Mask, perClass: number, seed: number): SampledPixel[] {
  if (predicted.width !== truth.width || predicted.height !== truth.height) {
    throw new Error(`the prediction (${predicted.width} x ${predicted.height}) and the label (${truth.width} x ${truth.height}) differ in size`);
  }
  const rng = new Rng(seed);
  const reservoirs: Record<PixelClass, number[]> = { tp: [], fp: [], fn: [] };
  const seen: Record<PixelClass, number> = { tp: 0, fp: 0, fn: 0 };
  const p = predicted.data;
  const t = truth.data;
  for (let i = 0; i < p.length; i++) {
    const cls: PixelClass | null = p[i] ? (t[i] ? 'tp' : 'fp') : t[i] ? 'fn' : null;
    if (cls === null) continue;
    const n = seen[cls]++;
    const r = reservoirs[cls];
    if (n < perClass) r.push(i);
    else {
      const j = rng.int(n + 1);
      if (j < perClass) r[j] = i;
    }
  }
  const out: SampledPixel[] = [];
  for (const cls of PIXEL_CLASSES)
    for (const i of [...reservoirs[cls]].sort((a, b) => a - b)) out.push({ x: i % predicted.width, y: Math.floor(i / predicted.width), cls });
  return out;
}

/** Cuts a window out of a float image (row-major). */
export function cutWindow(data: Float32Array, width: number, height: number, rect: Rect): Float32Array {
  return cutRegion(data, width, height, rect);
}

export interface ClassSummary {
  cls: PixelClass | 'chosen';
  k: number;
  n: number;
  meanPixels: number;
  meanNm2: number;
  /** Sample standard deviation (n - 1), 0 for n < 2. */
  stdNm2: number;
}

/** Mean and standard deviation of S_k (nm^2) per class and k. */
export function summarizeAreas(
  records: ReadonlyArray<{ cls: PixelClass | 'chosen'; areas: readonly AttributionArea[] }>,
  ks: readonly number[],
): ClassSummary[] {
  const out: ClassSummary[] = [];
  const classes = [...new Set(records.map((r) => r.cls))];
  for (const cls of classes) {
    for (const k of ks) {
      const of = records.filter((r) => r.cls === cls).map((r) => r.areas.find((a) => a.k === k)!);
      const n = of.length;
      const meanNm2 = of.reduce((s, a) => s + a.nm2, 0) / n;
      const meanPixels = of.reduce((s, a) => s + a.pixels, 0) / n;
      const stdNm2 = n < 2 ? 0 : Math.sqrt(of.reduce((s, a) => s + (a.nm2 - meanNm2) ** 2, 0) / (n - 1));
      out.push({ cls, k, n, meanPixels, meanNm2, stdNm2 });
    }
  }
  return out;
}
