/**
 * In-memory images. Everything is single-channel (EM is grey), row-major, `data[y * width + x]`.
 */

export type BitDepth = 8 | 16;
export type PixelArray = Uint8Array | Uint16Array;

/** A decoded grey image with its native bit depth (8-bit: Uint8Array, 16-bit: Uint16Array). */
export interface GreyImage {
  readonly width: number;
  readonly height: number;
  readonly bitDepth: BitDepth;
  readonly data: PixelArray;
}

/** Floating-point grey values, normally in [0, 1] (what augmentation and the network see). */
export interface FloatImage {
  readonly width: number;
  readonly height: number;
  readonly data: Float32Array;
}

/** A binary mask: 1 = foreground (membrane), 0 = background. */
export interface Mask {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;
}

/** An axis-aligned pixel rectangle; it may reach outside an image (then it is reflect-padded). */
export interface Rect {
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
}

/** The largest value of a bit depth: 255 or 65535. */
export function maxValue(bitDepth: BitDepth): number {
  return bitDepth === 8 ? 255 : 65535;
}

/** Checks sizes and wraps `data` as a GreyImage (the bit depth follows the array type). */
export function greyImage(width: number, height: number, data: PixelArray): GreyImage {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new Error(`image size must be positive integers, got ${width} x ${height}`);
  }
  if (data.length !== width * height) {
    throw new Error(`image data has ${data.length} values; expected width * height = ${width} * ${height} = ${width * height}`);
  }
  return { width, height, bitDepth: data instanceof Uint16Array ? 16 : 8, data };
}

/** Grey values scaled to [0, 1] (v / 255 or v / 65535). */
export function toFloatImage(image: GreyImage): FloatImage {
  const scale = 1 / maxValue(image.bitDepth);
  const out = new Float32Array(image.data.length);
  for (let i = 0; i < out.length; i++) out[i] = image.data[i] * scale;
  return { width: image.width, height: image.height, data: out };
}

/**
 * Index `i` mirrored into [0, n) without repeating the edge pixel (numpy/PyTorch "reflect"):
 * for n = 4, ... -2 -1 | 0 1 2 3 | 4 5 ... maps to ... 2 1 | 0 1 2 3 | 2 1 ...
 * Works for any distance outside (the pattern repeats with period 2n - 2).
 */
export function reflectIndex(i: number, n: number): number {
  if (i >= 0 && i < n) return i;
  if (n === 1) return 0;
  const period = 2 * n - 2;
  let m = i % period;
  if (m < 0) m += period;
  return m < n ? m : period - m;
}

type TypedArrayCtor<T> = { new (length: number): T };

/**
 * Copies `rect` out of a width x height image into a new array of the same type. Parts of the
 * rectangle outside the image are filled by reflection (see `reflectIndex`), so tiles and patches
 * at the borders have context instead of zeros.
 *
 * @example cutRegion(img.data, img.width, img.height, { x: -8, y: 0, width: 64, height: 64 })
 */
export function cutRegion<T extends Uint8Array | Uint16Array | Float32Array>(data: T, width: number, height: number, rect: Rect, out?: T): T {
  const { x, y, width: w, height: h } = rect;
  const result = out ?? new (data.constructor as TypedArrayCtor<T>)(w * h);
  if (result.length !== w * h) throw new Error(`cutRegion: output has ${result.length} values; expected ${w * h}`);
  const inside = x >= 0 && x + w <= width;
  const cols = inside ? null : Int32Array.from({ length: w }, (_, i) => reflectIndex(x + i, width));
  for (let row = 0; row < h; row++) {
    const sy = reflectIndex(y + row, height) * width;
    if (cols === null) {
      result.set(data.subarray(sy + x, sy + x + w), row * w);
    } else {
      const o = row * w;
      for (let i = 0; i < w; i++) result[o + i] = data[sy + cols[i]];
    }
  }
  return result;
}
