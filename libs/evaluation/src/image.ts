/**
 * In-memory images the metrics operate on: one channel, row-major, `data.length === width * height`,
 * pixel (x, y) at `data[y * width + x]`. Nothing here touches files, so the fine-tuning app can score
 * predictions without writing them out.
 */

/** Pixel storage accepted by the metrics. */
export type PixelArray = Uint8Array | Uint8ClampedArray | Uint16Array | Int32Array | Float32Array | Float64Array;

/** A single-channel image. */
export interface Image2D<T extends PixelArray = PixelArray> {
  readonly width: number;
  readonly height: number;
  readonly data: T;
}

/** An 8-bit grey image, values 0..255 (as decoded from a PNG/TIFF). */
export type GreyImage = Image2D<Uint8Array>;

/**
 * A binary mask: a pixel is set where `data[i] !== 0`. Which class is "set" is part of the
 * name of every parameter that takes a mask (`membraneMask`, `cellMask`).
 */
export type Mask = Image2D<Uint8Array>;

/** A probability map with values in [0, 1] (e.g. a sigmoid output). */
export type ProbabilityMap = Image2D<Float32Array | Float64Array>;

/** Bad input to a metric: a size mismatch, a value out of range, an unreadable or non-conforming file. */
export class EvaluationInputError extends Error {
  override readonly name: string = 'EvaluationInputError';
  /** The file the problem is in, when there is one. */
  readonly file: string | undefined;

  constructor(message: string, file?: string) {
    super(message);
    this.file = file;
  }
}

/** Wrap a typed array as an image, checking that its length matches `width * height`. */
export function image<T extends PixelArray>(width: number, height: number, data: T, what = 'image'): Image2D<T> {
  const img = { width, height, data };
  assertImage(img, what);
  return img;
}

/** Throw a clear error unless `img` is a well-formed image. `what` names it in the message. */
export function assertImage(img: Image2D, what: string): void {
  const { width, height, data } = img;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new EvaluationInputError(`${what}: width and height must be positive integers, got ${width} x ${height}`);
  }
  if (data.length !== width * height) {
    throw new EvaluationInputError(`${what}: data has ${data.length} values, expected width * height = ${width} * ${height} = ${width * height}`);
  }
}

/**
 * Throw a clear error unless `a` and `b` are well-formed images of the same size.
 * @example assertSameSize(pred, gt, 'prediction', 'ground truth')
 */
export function assertSameSize(a: Image2D, b: Image2D, nameA: string, nameB: string): void {
  assertImage(a, nameA);
  assertImage(b, nameB);
  if (a.width !== b.width || a.height !== b.height) {
    throw new EvaluationInputError(`size mismatch: ${nameA} is ${a.width} x ${a.height} but ${nameB} is ${b.width} x ${b.height} (width x height)`);
  }
}

/**
 * U-RISC labels and submissions draw membranes black (0) on white (255), and labels are not always
 * clean binary: a pixel is membrane where its grey value is below mid-grey (< 128).
 * @example membraneMaskFromGrey({ width: 2, height: 1, data: Uint8Array.of(0, 255) }).data // [1, 0]
 */
export function membraneMaskFromGrey(grey: GreyImage): Mask {
  assertImage(grey, 'grey image');
  const out = new Uint8Array(grey.data.length);
  const src = grey.data;
  for (let i = 0; i < src.length; i++) out[i] = src[i] < 128 ? 1 : 0;
  return { width: grey.width, height: grey.height, data: out };
}

/** The complement of {@link membraneMaskFromGrey}: cell interior where grey >= 128. */
export function cellMaskFromGrey(grey: GreyImage): Mask {
  assertImage(grey, 'grey image');
  const out = new Uint8Array(grey.data.length);
  const src = grey.data;
  for (let i = 0; i < src.length; i++) out[i] = src[i] >= 128 ? 1 : 0;
  return { width: grey.width, height: grey.height, data: out };
}

/**
 * Grey values as probabilities in [0, 1] (v / 255, float32). With the black-membrane convention this
 * is the probability of *cell interior*, which is what the ISBI 2012 metrics threshold.
 */
export function probabilityFromGrey(grey: GreyImage): ProbabilityMap {
  assertImage(grey, 'grey image');
  const out = new Float32Array(grey.data.length);
  const src = grey.data;
  for (let i = 0; i < src.length; i++) out[i] = src[i] / 255;
  return { width: grey.width, height: grey.height, data: out };
}

/** `1 - p` for every pixel: turns a membrane probability into a cell-interior probability and back. */
export function complementProbability(map: ProbabilityMap): ProbabilityMap {
  assertImage(map, 'probability map');
  const out = new Float32Array(map.data.length);
  const src = map.data;
  for (let i = 0; i < src.length; i++) out[i] = 1 - src[i];
  return { width: map.width, height: map.height, data: out };
}
