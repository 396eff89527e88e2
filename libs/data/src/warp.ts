/**
 * Resampling an image through an affine map (output pixel -> source position). The same map
 * applied to an image (bilinear) and to its mask (nearest) keeps them aligned.
 */
import type { Affine } from './affine.js';
import { reflectIndex } from './image.js';

/** What the source looks like outside its borders. */
export type BorderMode = 'reflect' | 'zero';

type Source = Uint8Array | Uint16Array | Float32Array;

/** A single-channel image, row-major. */
export interface Raster<T extends Source> {
  readonly data: T;
  readonly width: number;
  readonly height: number;
}

/** The output of a resampling: its size, the map from its pixels to source positions, the border. */
export interface Warp {
  readonly transform: Affine;
  readonly width: number;
  readonly height: number;
  /** Default 'reflect'. */
  readonly border?: BorderMode;
}

/**
 * `out[v * width + u] = scale * src(transform(u + 0.5, v + 0.5))`, sampled bilinearly (index-space
 * position = mapped position - 0.5). Integer-aligned maps (flips, 90-degree turns, shifts) copy
 * values exactly.
 *
 * @param scale multiplies every value, e.g. 1 / 255 to turn uint8 into [0, 1].
 */
export function warpBilinear(src: Raster<Source>, warp: Warp, scale = 1, out: Float32Array = new Float32Array(warp.width * warp.height)): Float32Array {
  const { data, width: srcW, height: srcH } = src;
  const { width: outW, height: outH } = warp;
  const [a, b, c, d, e, f] = warp.transform;
  const zero = warp.border === 'zero';
  for (let v = 0; v < outH; v++) {
    const vy = v + 0.5;
    let x = a * 0.5 + b * vy + c - 0.5;
    let y = d * 0.5 + e * vy + f - 0.5;
    const o = v * outW;
    for (let u = 0; u < outW; u++, x += a, y += d) {
      const x0 = Math.floor(x);
      const y0 = Math.floor(y);
      const fx = x - x0;
      const fy = y - y0;
      let v00: number, v01: number, v10: number, v11: number;
      if (x0 >= 0 && y0 >= 0 && x0 + 1 < srcW && y0 + 1 < srcH) {
        const i = y0 * srcW + x0;
        v00 = data[i];
        v01 = data[i + 1];
        v10 = data[i + srcW];
        v11 = data[i + srcW + 1];
      } else if (zero) {
        const inX0 = x0 >= 0 && x0 < srcW;
        const inX1 = x0 + 1 >= 0 && x0 + 1 < srcW;
        const inY0 = y0 >= 0 && y0 < srcH;
        const inY1 = y0 + 1 >= 0 && y0 + 1 < srcH;
        v00 = inX0 && inY0 ? data[y0 * srcW + x0] : 0;
        v01 = inX1 && inY0 ? data[y0 * srcW + x0 + 1] : 0;
        v10 = inX0 && inY1 ? data[(y0 + 1) * srcW + x0] : 0;
        v11 = inX1 && inY1 ? data[(y0 + 1) * srcW + x0 + 1] : 0;
      } else {
        const xa = reflectIndex(x0, srcW);
        const xb = reflectIndex(x0 + 1, srcW);
        const ya = reflectIndex(y0, srcH) * srcW;
        const yb = reflectIndex(y0 + 1, srcH) * srcW;
        v00 = data[ya + xa];
        v01 = data[ya + xb];
        v10 = data[yb + xa];
        v11 = data[yb + xb];
      }
      const top = v00 + fx * (v01 - v00);
      const bottom = v10 + fx * (v11 - v10);
      out[o + u] = scale * (top + fy * (bottom - top));
    }
  }
  return out;
}

/**
 * Nearest-neighbour resampling (for masks and labels): the source pixel containing the mapped
 * position of each output pixel centre.
 */
export function warpNearest<T extends Source>(src: Raster<T>, warp: Warp, out?: T): T {
  const { data, width: srcW, height: srcH } = src;
  const { width: outW, height: outH } = warp;
  const result = out ?? new (data.constructor as { new (n: number): T })(outW * outH);
  const [a, b, c, d, e, f] = warp.transform;
  const zero = warp.border === 'zero';
  for (let v = 0; v < outH; v++) {
    const vy = v + 0.5;
    let x = a * 0.5 + b * vy + c;
    let y = d * 0.5 + e * vy + f;
    const o = v * outW;
    for (let u = 0; u < outW; u++, x += a, y += d) {
      const xi = Math.floor(x);
      const yi = Math.floor(y);
      if (xi >= 0 && yi >= 0 && xi < srcW && yi < srcH) result[o + u] = data[yi * srcW + xi];
      else if (zero) result[o + u] = 0;
      else result[o + u] = data[reflectIndex(yi, srcH) * srcW + reflectIndex(xi, srcW)];
    }
  }
  return result;
}
