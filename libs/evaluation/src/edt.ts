/**
 * Exact Euclidean distance transform in linear time (Meijster, Roerdink & Hesselink 2000):
 * phase 1 finds, for every pixel, the vertical distance to the nearest feature pixel in its column
 * (two row-major sweeps, cache friendly); phase 2 takes, row by row, the lower envelope of the
 * parabolas (x - u)^2 + g(u)^2. Squared distances are integers, so results are exact and
 * `sqrt` of them equals `scipy.ndimage.distance_transform_edt(features == 0)` bit for bit.
 */
import { assertImage, type Mask } from './image.js';

/**
 * Phase 1: vertical distance to the nearest feature in the column, or `inf` (= width + height)
 * where the column has none. Uint16 storage while `inf` fits, else Int32.
 */
function columnDistances(features: Uint8Array, w: number, h: number): { g: Uint16Array | Int32Array; inf: number } {
  const inf = w + h;
  const g = inf < 65535 ? new Uint16Array(w * h) : new Int32Array(w * h);
  for (let x = 0; x < w; x++) g[x] = features[x] !== 0 ? 0 : inf;
  for (let y = 1; y < h; y++) {
    const row = y * w;
    for (let x = 0; x < w; x++) {
      const i = row + x;
      if (features[i] !== 0) g[i] = 0;
      else {
        const up = g[i - w];
        g[i] = up === inf ? inf : up + 1;
      }
    }
  }
  for (let y = h - 2; y >= 0; y--) {
    const row = y * w;
    for (let x = 0; x < w; x++) {
      const i = row + x;
      const down = g[i + w] + 1;
      if (down < g[i]) g[i] = down;
    }
  }
  return { g, inf };
}

/**
 * Call `visit(y, d2)` for every row y with `d2[x]` the squared Euclidean distance from (x, y) to
 * the nearest feature pixel (`Infinity` when there is none). `d2` is reused between rows.
 */
export function forEachRowSquaredDistance(
  features: Mask,
  visit: (y: number, squaredDistances: Float64Array) => void,
): void {
  assertImage(features, 'feature mask');
  const { width: w, height: h } = features;
  const { g, inf } = columnDistances(features.data, w, h);
  const gg = new Float64Array(w); // g(u)^2 of the current row
  const s = new Int32Array(w); // parabola apexes of the lower envelope
  const t = new Float64Array(w); // where each envelope segment starts
  const d2 = new Float64Array(w);
  const infSq = inf * inf;
  for (let y = 0; y < h; y++) {
    const row = y * w;
    for (let u = 0; u < w; u++) {
      const gu = g[row + u];
      gg[u] = gu === inf ? infSq : gu * gu;
    }
    let q = 0;
    s[0] = 0;
    t[0] = 0;
    for (let u = 1; u < w; u++) {
      // f(t, i) = (t - i)^2 + g(i)^2; pop parabolas that u beats at their segment start
      while (q >= 0) {
        const tq = t[q];
        const sq = s[q];
        if ((tq - sq) * (tq - sq) + gg[sq] <= (tq - u) * (tq - u) + gg[u]) break;
        q--;
      }
      if (q < 0) {
        q = 0;
        s[0] = u;
      } else {
        const sq = s[q];
        // Sep(i, u) = floor((u^2 - i^2 + g(u)^2 - g(i)^2) / (2 (u - i)))
        const sep = Math.floor((u * u - sq * sq + gg[u] - gg[sq]) / (2 * (u - sq))) + 1;
        if (sep < w) {
          q++;
          s[q] = u;
          t[q] = sep;
        }
      }
    }
    for (let u = w - 1; u >= 0; u--) {
      const sq = s[q];
      const v = (u - sq) * (u - sq) + gg[sq];
      d2[u] = v >= infSq ? Infinity : v;
      if (u === t[q]) q--;
    }
    visit(y, d2);
  }
}

/**
 * Euclidean distance from every pixel to the nearest feature pixel (nonzero in `features`);
 * features get 0, and every pixel gets `Infinity` when there is no feature at all.
 * @example edt(mask(3, 1, [1, 0, 0])).data // Float64Array [0, 1, 2]
 */
export function edt(features: Mask): { width: number; height: number; data: Float64Array } {
  const { width: w, height: h } = features;
  const out = new Float64Array(w * h);
  forEachRowSquaredDistance(features, (y, d2) => {
    const row = y * w;
    for (let x = 0; x < w; x++) out[row + x] = Math.sqrt(d2[x]);
  });
  return { width: w, height: h, data: out };
}
