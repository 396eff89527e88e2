/**
 * Resampling an image through an affine map (output pixel -> source position). The same map
 * applied to an image (bilinear) and to its mask (nearest) keeps them aligned.
 */
import type { Affine } from './affine.js';
import { reflectIndex } from './image.js';

/** What the source looks like outside its borders. */
export type BorderMode = 'reflect' | 'zero';

type Source = Uint8Array | Uint16Array | Float32Array;

/**
 * `out[v * outW + u] = scale * src(m(u + 0.5, v + 0.5))`, sampled bilinearly (index-space
 * position = mapped position - 0.5). Integer-aligned maps (flips, 90-degree turns, shifts) copy
 * values exactly.
 *
 * @param scale multiplies every value, e.g. 1 / 255 to turn uint8 into [0, 1].
 */
export function warpBilinear(
  src: Source,
  srcW: number,
  srcH: number,
  m: Affine,
  outW: number,
  outH: number,
  border: BorderMode = 'reflect',
  scale = 1,
  out: Float32Array = new Float32Array(outW * outH),
): Float32Array {
  const [a, b, c, d, e, f] = m;
  const zero = border === 'zero';
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
        v00 = src[i];
        v01 = src[i + 1];
        v10 = src[i + srcW];
        v11 = src[i + srcW + 1];
      } else if (zero) {
        const inX0 = x0 >= 0 && x0 < srcW;
        const inX1 = x0 + 1 >= 0 && x0 + 1 < srcW;
        const inY0 = y0 >= 0 && y0 < srcH;
        const inY1 = y0 + 1 >= 0 && y0 + 1 < srcH;
        v00 = inX0 && inY0 ? src[y0 * srcW + x0] : 0;
        v01 = inX1 && inY0 ? src[y0 * srcW + x0 + 1] : 0;
        v10 = inX0 && inY1 ? src[(y0 + 1) * srcW + x0] : 0;
        v11 = inX1 && inY1 ? src[(y0 + 1) * srcW + x0 + 1] : 0;
      } else {
        const xa = reflectIndex(x0, srcW);
        const xb = reflectIndex(x0 + 1, srcW);
        const ya = reflectIndex(y0, srcH) * srcW;
        const yb = reflectIndex(y0 + 1, srcH) * srcW;
        v00 = src[ya + xa];
        v01 = src[ya + xb];
        v10 = src[yb + xa];
        v11 = src[yb + xb];
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
export function warpNearest<T extends Uint8Array | Uint16Array | Float32Array>(
  src: T,
  srcW: number,
  srcH: number,
  m: Affine,
  outW: number,
  outH: number,
  border: BorderMode = 'reflect',
  out?: T,
): T {
  const result = out ?? new (src.constructor as { new (n: number): T })(outW * outH);
  const [a, b, c, d, e, f] = m;
  for (let v = 0; v < outH; v++) {
    const vy = v + 0.5;
    let x = a * 0.5 + b * vy + c;
    let y = d * 0.5 + e * vy + f;
    const o = v * outW;
    for (let u = 0; u < outW; u++, x += a, y += d) {
      const xi = Math.floor(x);
      const yi = Math.floor(y);
      if (xi >= 0 && yi >= 0 && xi < srcW && yi < srcH) result[o + u] = src[yi * srcW + xi];
      else if (border === 'zero') result[o + u] = 0;
      else result[o + u] = src[reflectIndex(yi, srcH) * srcW + reflectIndex(xi, srcW)];
    }
  }
  return result;
}
