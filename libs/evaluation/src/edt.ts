/**
 * Exact Euclidean distance transform in linear time (Meijster, Roerdink & Hesselink 2000):
 * phase 1 finds, for every pixel, the vertical distance g to the nearest feature pixel in its column
 * (a downward and an upward row-major sweep, cache friendly); phase 2 takes, row by row, the lower
 * envelope of the parabolas (x - u)^2 + g(u)^2. Squared distances are integers, so results are exact and
 * `sqrt` of them equals `scipy.ndimage.distance_transform_edt(features == 0)` bit for bit.
 */
import { assertMaskVolume, type MaskVolume } from './components.js';
import { assertImage, type Mask } from './image.js';

/**
 * Phase 1, downward sweep: distance to the nearest feature at or above each pixel in its column,
 * or `inf` (= width + height) where there is none. Uint16 storage while `inf` fits, else Int32.
 * The upward sweep is fused with phase 2 (see {@link upwardRow}), row by row from the bottom,
 * so each row is finished while it is still in cache.
 */
function downwardDistances(features: Uint8Array, w: number, h: number): { g: Uint16Array | Int32Array; inf: number } {
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
  return { g, inf };
}

/** Upward sweep for row y (row y + 1 already final): g becomes the distance to the nearest feature in the column. */
function upwardRow(g: Uint16Array | Int32Array, w: number, h: number, y: number): void {
  if (y >= h - 1) return;
  const row = y * w;
  for (let x = 0; x < w; x++) {
    const i = row + x;
    const down = g[i + w] + 1;
    if (down < g[i]) g[i] = down;
  }
}

/** F[u] = u^2 + g(u)^2 of row y, for phase 2. */
function fillF(g: Uint16Array | Int32Array, w: number, y: number, inf: number, F: Float64Array): void {
  const row = y * w;
  const infSq = inf * inf;
  for (let u = 0; u < w; u++) {
    const gu = g[row + u];
    F[u] = u * u + (gu >= inf ? infSq : gu * gu);
  }
}

/**
 * Phase 2 on one row: the lower envelope of the parabolas (x - u)^2 + g(u)^2, whose value at x is
 * the squared distance d2[x] (Meijster). Segment k of the envelope is parabola s[k] from x = t[k];
 * returns the last segment's index. With F[u] = u^2 + g(u)^2 parabola u at x is F[u] - 2xu + x^2,
 * so comparisons drop the common x^2; every intersection is >= 0, so `| 0` is the floor.
 */
function buildEnvelope(F: Float64Array, w: number, s: Int32Array, t: Int32Array): number {
  let q = 0;
  s[0] = 0;
  t[0] = 0;
  for (let u = 1; u < w; u++) {
    const Fu = F[u];
    let sq = s[q];
    // pop parabolas that u beats at the start of their segment
    for (;;) {
      const tq = t[q];
      if (F[sq] - 2 * tq * sq <= Fu - 2 * tq * u) break;
      if (--q < 0) break;
      sq = s[q];
    }
    if (q < 0) {
      q = 0;
      s[0] = u;
    } else {
      // Sep(sq, u) + 1: first x where u's parabola is strictly below sq's (>= w: never in this row)
      const x = (Fu - F[sq]) / (2 * (u - sq));
      const sep = x >= w ? w : (x | 0) + 1;
      if (sep < w) {
        q++;
        s[q] = u;
        t[q] = sep;
      }
    }
  }
  return q;
}

/** Read the envelope built by {@link buildEnvelope} into d2 (squared distances, Infinity past `infSq`). */
function fillRow(F: Float64Array, w: number, s: Int32Array, t: Int32Array, q: number, d2: Float64Array, infSq: number): void {
  for (let u = w - 1; u >= 0; u--) {
    const sq = s[q];
    const v = F[sq] - 2 * u * sq + u * u;
    d2[u] = v >= infSq ? Infinity : v;
    if (u === t[q]) q--;
  }
}

/**
 * Call `visit(y, d2)` for every row y (bottom to top) with `d2[x]` the squared Euclidean distance from (x, y) to
 * the nearest feature pixel (`Infinity` when there is none). `d2` is reused between rows.
 */
export function forEachRowSquaredDistance(features: Mask, visit: (y: number, squaredDistances: Float64Array) => void): void {
  assertImage(features, 'feature mask');
  const { width: w, height: h } = features;
  const { g, inf } = downwardDistances(features.data, w, h);
  const F = new Float64Array(w); // u^2 + g(u)^2 of the current row
  const s = new Int32Array(w); // parabola apexes of the lower envelope
  const t = new Int32Array(w); // where each envelope segment starts
  const d2 = new Float64Array(w);
  const infSq = inf * inf;
  for (let y = h - 1; y >= 0; y--) {
    upwardRow(g, w, h, y);
    fillF(g, w, y, inf, F);
    fillRow(F, w, s, t, buildEnvelope(F, w, s, t), d2, infSq);
    visit(y, d2);
  }
}

/**
 * Sum of Euclidean distances from the set pixels of `queries` to the nearest set pixel of
 * `features`, and their count, without materializing the transform. Per row, each query first
 * scans outward over the column distances g (exact: it stops once the column offset alone exceeds
 * the best squared distance found), which is cheap when features are near, as between two
 * segmentations of the same membranes; a row whose scans would cost more than a few envelope
 * builds falls back to the envelope. Infinity when there are queries but no feature.
 */
export function sumDistancesAt(features: Mask, queries: Mask): { sum: number; count: number } {
  assertImage(features, 'feature mask');
  const { width: w, height: h } = features;
  const { g, inf } = downwardDistances(features.data, w, h);
  const F = new Float64Array(w);
  const s = new Int32Array(w);
  const t = new Int32Array(w);
  const infSq = inf * inf;
  const qd = queries.data;
  const budget = 4 * w; // scan steps per row before the envelope is cheaper
  let sum = 0;
  let count = 0;
  for (let y = h - 1; y >= 0; y--) {
    const row = y * w;
    upwardRow(g, w, h, y);
    let rowSum = 0;
    let rowCount = 0;
    let steps = 0;
    let scanned = true;
    for (let x = 0; x < w && scanned; x++) {
      if (qd[row + x] === 0) continue;
      const gx = g[row + x];
      let best = gx >= inf ? Infinity : gx * gx;
      for (let r = 1; r * r < best; r++) {
        if (++steps > budget) {
          scanned = false;
          break;
        }
        const left = x - r;
        const right = x + r;
        if (left < 0 && right >= w) break;
        if (left >= 0) {
          const gl = g[row + left];
          if (gl < inf) {
            const c = r * r + gl * gl;
            if (c < best) best = c;
          }
        }
        if (right < w) {
          const gr = g[row + right];
          if (gr < inf) {
            const c = r * r + gr * gr;
            if (c < best) best = c;
          }
        }
      }
      rowSum += Math.sqrt(best);
      rowCount++;
    }
    if (!scanned) {
      rowSum = 0;
      rowCount = 0;
      fillF(g, w, y, inf, F);
      let q = buildEnvelope(F, w, s, t);
      for (let u = w - 1; u >= 0; u--) {
        if (qd[row + u] !== 0) {
          const sq = s[q];
          const v = F[sq] - 2 * u * sq + u * u;
          rowSum += v >= infSq ? Infinity : Math.sqrt(v);
          rowCount++;
        }
        if (u === t[q]) q--;
      }
    }
    sum += rowSum;
    count += rowCount;
  }
  return { sum, count };
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

/**
 * Squared Euclidean distance from every pixel (2D) or voxel (3D) to the nearest feature (nonzero in
 * `features`), as exact integers in a Float64Array (`Infinity` everywhere when there is no feature);
 * `Math.sqrt` of it equals `scipy.ndimage.distance_transform_edt(features == 0)`. A volume is done
 * separably: the 2D transform of every slice, then along z the lower envelope of the parabolas
 * (z - u)^2 + d2(u) (the same envelope as the rows, Meijster phase 2, with slice distances in place
 * of column distances).
 * @example squaredEdt({ width: 3, height: 1, depth: 2, data: Uint8Array.of(1, 0, 0, 0, 0, 0) }) // [0, 1, 4, 1, 2, 5]
 */
export function squaredEdt(features: Mask | MaskVolume): Float64Array {
  const d = assertMaskVolume(features, 'feature mask');
  const { width: w, height: h, data } = features;
  const plane = w * h;
  const out = new Float64Array(plane * d);
  for (let z = 0; z < d; z++) {
    const slice = { width: w, height: h, data: data.subarray(z * plane, (z + 1) * plane) };
    forEachRowSquaredDistance(slice, (y, d2) => out.set(d2, z * plane + y * w));
  }
  if (d === 1) return out;
  const inf = w + h + d;
  const infSq = inf * inf; // above every finite squared distance, so (z - u)^2 + infSq stays "none"
  const F = new Float64Array(d);
  const s = new Int32Array(d);
  const t = new Int32Array(d);
  const column = new Float64Array(d);
  for (let i = 0; i < plane; i++) {
    for (let u = 0; u < d; u++) {
      const v = out[u * plane + i];
      F[u] = u * u + (v === Infinity ? infSq : v);
    }
    fillRow(F, d, s, t, buildEnvelope(F, d, s, t), column, infSq);
    for (let u = 0; u < d; u++) out[u * plane + i] = column[u];
  }
  return out;
}
