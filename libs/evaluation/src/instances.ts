/**
 * Instance labels from a binary (or probability) prediction, 2D or 3D, the post-processing of
 * empanada (MitoNet) and the cem-dataset baselines:
 *
 * - {@link connectedInstances}: connected components (`skimage.measure.label(mask, connectivity=c)`),
 *   components of fewer than `minSize` pixels removed (`skimage.morphology.remove_small_objects`),
 *   ids 1..n in raster order of each instance's first pixel.
 * - {@link watershedInstances}: touching objects split by a seeded watershed on the Euclidean
 *   distance to the background, as
 *   ```python
 *   distance = ndi.distance_transform_edt(mask)
 *   components = skimage.measure.label(mask, connectivity=c)
 *   peaks = peak_local_max(distance, min_distance=m, labels=components, exclude_border=b)
 *   markers = ndi.label(peak_mask)[0]                     # peak_mask: True at the peaks
 *   labels = watershed(-distance, markers, mask=mask, connectivity=c)
 *   ```
 *   then small instances removed and ids renumbered in raster order.
 *
 * Seeds (exactly `peak_local_max` with `labels`, `p_norm=inf` and no threshold): within each
 * connected component, leaving out the pixels within `excludeBorder` of the image border, a pixel
 * is a candidate when its distance equals the maximum of the distance over its (2m + 1)^n window
 * restricted to that component's (non-excluded) pixels; if every pixel of the component is a
 * candidate (a flat distance), the candidates are instead the pixels that a binary opening with the
 * cross removes. Candidates are taken in decreasing distance, ties in raster order, and (for m > 1)
 * one is kept unless a kept seed of the same component lies at Chebyshev distance < m. Kept seeds
 * that are face neighbours form one marker (`ndi.label`). Seeds of different components never
 * suppress each other, so every component outside the border band gets at least one.
 *
 * Flooding (skimage 0.26's watershed without compactness or watershed lines): a priority queue
 * ordered by decreasing flooding level, ties by age (the order pixels entered the queue). Markers
 * enter first, in raster order, each at its own distance and all with age 0; a popped pixel gives
 * its label to each unlabelled mask neighbour (face neighbours first, each group in raster order of
 * the offsets, as skimage's structure), which enters at level min(its distance, the popped level).
 * The one tie this leaves open, markers of equal distance (equal level, all age 0), is settled as
 * skimage's binary heap settles it: the queue is the same heap with the same sift rules, so the
 * labels equal skimage's pixel for pixel, ridges included (every case of the test fixture).
 */
import { assertMaskVolume, type Connectivity, connectivitySteps, paintRuns, runComponents, type RunComponents } from './components.js';
import { squaredEdt } from './edt.js';
import { EvaluationInputError } from './image.js';

/**
 * A prediction to turn into instances: a binary mask (`Uint8Array`, set where nonzero) or a
 * probability map (`Float32Array` / `Float64Array`, set where `p >= threshold`), 2D or, with
 * `depth`, 3D (voxel (x, y, z) at `data[(z * height + y) * width + x]`; depth 1 is 2D).
 */
export interface ForegroundMap {
  readonly width: number;
  readonly height: number;
  readonly depth?: number;
  readonly data: Uint8Array | Float32Array | Float64Array;
}

/** Storage of the instance ids: Uint16 (at most 65535 instances) or Uint32. */
export type InstanceIdType = 'uint16' | 'uint32';

export interface ConnectedInstanceOptions {
  /** Neighbour count: 4 (default) or 8 in 2D, 6 (default), 18 or 26 in 3D. */
  connectivity?: Connectivity;
  /** Instances with fewer pixels are removed (set to 0); default 1 (keep all). */
  minSize?: number;
  /** Probability maps: foreground where `p >= threshold`; default 0.5. Ignored for Uint8 masks. */
  threshold?: number;
  /** Id storage; default 'uint16', which throws when there are more than 65535 instances. */
  ids?: InstanceIdType;
}

export interface WatershedInstanceOptions extends ConnectedInstanceOptions {
  /** `peak_local_max`'s min_distance: window half-width and seed spacing, an integer >= 1. */
  minDistance: number;
  /**
   * Seeds are not taken within this many pixels of the image border (`exclude_border`): true (the
   * default, as skimage) means `minDistance`, false 0. Objects lying entirely in that band get no
   * seed and are left out.
   */
  excludeBorder?: boolean | number;
}

/** Instance labels (0 = background, ids 1..count), usable as {@link InstanceLabels}. */
export interface Instances<T extends Uint16Array | Uint32Array = Uint16Array | Uint32Array> {
  readonly width: number;
  readonly height: number;
  /** The input's depth, when it had one. */
  readonly depth?: number;
  readonly data: T;
  /** Number of instances. */
  readonly count: number;
}

/** Watershed instances, with the number of markers the flooding started from. */
export interface WatershedInstances<T extends Uint16Array | Uint32Array = Uint16Array | Uint32Array> extends Instances<T> {
  /** Markers (seeds after joining face neighbours), before small instances are removed. */
  readonly seeds: number;
}

interface Shape {
  width: number;
  height: number;
  depth: number;
  /** The input had a `depth` field (echoed in the result). */
  hasDepth: boolean;
}

function foregroundOf(input: ForegroundMap, threshold: number): { shape: Shape; mask: Uint8Array } {
  const { width, height, data } = input;
  if (!(data instanceof Uint8Array || data instanceof Float32Array || data instanceof Float64Array)) {
    throw new EvaluationInputError('prediction: data must be a Uint8Array mask or a Float32Array / Float64Array probability map');
  }
  const depth = assertMaskVolume(input, 'prediction');
  const shape = { width, height, depth, hasDepth: input.depth !== undefined };
  if (data instanceof Uint8Array) return { shape, mask: data };
  if (!Number.isFinite(threshold)) throw new EvaluationInputError(`threshold must be a finite number, got ${threshold}`);
  const mask = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) mask[i] = data[i] >= threshold ? 1 : 0;
  return { shape, mask };
}

function checkInteger(value: number, name: string, min: number): void {
  if (!Number.isInteger(value) || value < min) throw new EvaluationInputError(`${name} must be an integer >= ${min}, got ${value}`);
}

function idArray(ids: InstanceIdType | undefined, count: number, n: number): Uint16Array | Uint32Array {
  if (ids !== undefined && ids !== 'uint16' && ids !== 'uint32') throw new EvaluationInputError(`ids must be 'uint16' or 'uint32', got ${String(ids)}`);
  if (ids === 'uint32') return new Uint32Array(n);
  if (count > 65535) {
    throw new EvaluationInputError(`${count} instances do not fit Uint16 ids (at most 65535); pass ids: 'uint32'`);
  }
  return new Uint16Array(n);
}

function result<T extends Uint16Array | Uint32Array>(shape: Shape, data: T, count: number): Instances<T> {
  const { width, height, depth } = shape;
  return shape.hasDepth ? { width, height, depth, data, count } : { width, height, data, count };
}

/**
 * Connected components of the foreground as instances: `skimage.measure.label(mask, connectivity)`
 * after `remove_small_objects(mask, max_size=minSize - 1, connectivity)`, ids 1..count in raster
 * order of each instance's first pixel (identical ids to skimage's).
 * @example connectedInstances({ width: 3, height: 1, data: Uint8Array.of(1, 0, 1) }).data // Uint16Array [1, 0, 2]
 */
export function connectedInstances(mask: ForegroundMap, options: ConnectedInstanceOptions & { ids: 'uint32' }): Instances<Uint32Array>;
export function connectedInstances(mask: ForegroundMap, options?: ConnectedInstanceOptions & { ids?: 'uint16' }): Instances<Uint16Array>;
export function connectedInstances(mask: ForegroundMap, options?: ConnectedInstanceOptions): Instances;
export function connectedInstances(mask: ForegroundMap, options: ConnectedInstanceOptions = {}): Instances {
  const minSize = options.minSize ?? 1;
  checkInteger(minSize, 'minSize', 0);
  const { shape, mask: fg } = foregroundOf(mask, options.threshold ?? 0.5);
  const rc = runComponents({ width: shape.width, height: shape.height, depth: shape.depth, data: fg }, false, options.connectivity);
  const idOf = new Uint32Array(rc.count + 1);
  let count = 0;
  for (let l = 1; l <= rc.count; l++) if (rc.sizes[l] >= minSize) idOf[l] = ++count;
  const data = idArray(options.ids, count, fg.length);
  paintRuns(rc, data, idOf);
  return result(shape, data, count);
}

/** Neighbour offsets (dx, dy, dz) with 1..steps nonzero coordinates, in skimage's order. */
function neighbourOffsets(steps: number, depth: number): [number, number, number][] {
  const offsets: [number, number, number][] = [];
  const zs = depth > 1 ? [-1, 0, 1] : [0];
  for (const dz of zs) {
    for (const dy of [-1, 0, 1]) {
      for (const dx of [-1, 0, 1]) {
        const m = (dx !== 0 ? 1 : 0) + (dy !== 0 ? 1 : 0) + (dz !== 0 ? 1 : 0);
        if (m >= 1 && m <= steps) offsets.push([dx, dy, dz]);
      }
    }
  }
  // footprint order (raster), stable-sorted by length: Array.prototype.sort is stable
  const len = (o: [number, number, number]) => o[0] * o[0] + o[1] * o[1] + o[2] * o[2];
  return offsets.sort((a, b) => len(a) - len(b));
}

/** Sliding maximum over [i - r, i + r] clipped to the line, of `n` values at `src[at + k * stride]`. */
function maxFilterLine(src: Float64Array, dst: Float64Array, at: number, stride: number, n: number, r: number, queue: Int32Array): void {
  let head = 0;
  let tail = 0;
  let next = 0;
  for (let i = 0; i < n; i++) {
    const hi = Math.min(n - 1, i + r);
    while (next <= hi) {
      const v = src[at + next * stride];
      while (tail > head && src[at + queue[tail - 1] * stride] <= v) tail--;
      queue[tail++] = next++;
    }
    while (queue[head] < i - r) head++;
    dst[at + i * stride] = src[at + queue[head] * stride];
  }
}

/** Separable max filter over a box of half-width r in a bw x bh x bd block (values in `a`; result in `out`). */
function boxMax(a: Float64Array, tmp: Float64Array, out: Float64Array, bw: number, bh: number, bd: number, r: number, queue: Int32Array): void {
  const plane = bw * bh;
  const passes: [number, number][] = [[1, bw]]; // [stride, line length] per axis
  if (bh > 1) passes.push([bw, bh]);
  if (bd > 1) passes.push([plane, bd]);
  const total = plane * bd;
  let src = a;
  passes.forEach(([stride, n], k) => {
    const dst = (passes.length - k) % 2 === 1 ? out : tmp; // the last pass writes `out`
    // one line per position whose coordinate along this axis is 0
    for (let at = 0; at < total; at++) {
      if (Math.floor(at / stride) % n === 0) maxFilterLine(src, dst, at, stride, n, r, queue);
    }
    src = dst;
  });
}

/**
 * Seeds of every component (see the module comment): `peak_local_max(distance, min_distance=m,
 * labels=components, exclude_border=border)`, written as 1 into `peaks`.
 */
function findPeaks(rc: RunComponents, d2: Float64Array, m: number, border: number, peaks: Uint8Array): void {
  const { width: w, height: h, depth: d } = rc;
  const is3d = d > 1;
  const bz = is3d ? border : 0;
  const count = rc.count;
  // bounding boxes of each component's pixels outside the border band, from its runs
  const x0 = new Int32Array(count + 1).fill(w);
  const x1 = new Int32Array(count + 1).fill(-1);
  const y0 = new Int32Array(count + 1).fill(h);
  const y1 = new Int32Array(count + 1).fill(-1);
  const z0 = new Int32Array(count + 1).fill(d);
  const z1 = new Int32Array(count + 1).fill(-1);
  const runsOf = new Int32Array(count + 2); // runs grouped by label: counting sort
  const nRuns = rc.runLabel.length;
  const clipped = (r: number, row: number): [number, number] | undefined => {
    const y = row % h;
    const z = (row - y) / h;
    if (y < border || y >= h - border || z < bz || z >= d - bz) return undefined;
    const s = Math.max(rc.runStart[r], border);
    const e = Math.min(rc.runEnd[r], w - border);
    return s < e ? [s, e] : undefined;
  };
  const rowOf = new Int32Array(nRuns);
  for (let row = 0; row < h * d; row++) for (let r = rc.rowStart[row]; r < rc.rowStart[row + 1]; r++) rowOf[r] = row;
  for (let r = 0; r < nRuns; r++) {
    const l = rc.runLabel[r];
    runsOf[l + 1]++;
    const c = clipped(r, rowOf[r]);
    if (c === undefined) continue;
    const y = rowOf[r] % h;
    const z = (rowOf[r] - y) / h;
    if (c[0] < x0[l]) x0[l] = c[0];
    if (c[1] - 1 > x1[l]) x1[l] = c[1] - 1;
    if (y < y0[l]) y0[l] = y;
    if (y > y1[l]) y1[l] = y;
    if (z < z0[l]) z0[l] = z;
    if (z > z1[l]) z1[l] = z;
  }
  for (let l = 1; l <= count + 1; l++) runsOf[l] += runsOf[l - 1];
  const order = new Int32Array(nRuns);
  const fillAt = runsOf.slice();
  for (let r = 0; r < nRuns; r++) order[fillAt[rc.runLabel[r]]++] = r;

  let capacity = 0;
  let longest = 1;
  for (let l = 1; l <= count; l++) {
    if (x1[l] < 0) continue;
    const bw = x1[l] - x0[l] + 1;
    const bh = y1[l] - y0[l] + 1;
    const bd = z1[l] - z0[l] + 1;
    capacity = Math.max(capacity, bw * bh * bd);
    longest = Math.max(longest, bw, bh, bd);
  }
  const val = new Float64Array(capacity);
  const tmp = new Float64Array(capacity);
  const mx = new Float64Array(capacity);
  const flags = new Uint8Array(capacity);
  const queue = new Int32Array(longest);
  const cross = neighbourOffsets(1, d);

  for (let l = 1; l <= count; l++) {
    if (x1[l] < 0) continue; // entirely in the border band: no seed
    const ox = x0[l];
    const oy = y0[l];
    const oz = z0[l];
    const bw = x1[l] - ox + 1;
    const bh = y1[l] - oy + 1;
    const bd = z1[l] - oz + 1;
    const size = bw * bh * bd;
    val.fill(-1, 0, size);
    for (let k = runsOf[l]; k < runsOf[l + 1]; k++) {
      const r = order[k];
      const row = rowOf[r];
      const c = clipped(r, row);
      if (c === undefined) continue;
      const y = row % h;
      const z = (row - y) / h;
      const src = row * w;
      const dst = ((z - oz) * bh + (y - oy)) * bw - ox;
      for (let x = c[0]; x < c[1]; x++) val[dst + x] = d2[src + x];
    }
    boxMax(val, tmp, mx, bw, bh, bd, m, queue);
    const candidates: number[] = [];
    let inside = 0;
    for (let j = 0; j < size; j++) {
      if (val[j] < 0) continue;
      inside++;
      if (val[j] === mx[j]) candidates.push(j);
    }
    if (candidates.length === inside) {
      // flat distance: skimage takes the pixels a binary opening (cross) removes
      candidates.length = 0;
      isolatedPixels(val, flags, bw, bh, bd, cross);
      for (let j = 0; j < size; j++) if (flags[j] === 2) candidates.push(j);
    }
    candidates.sort((a, b) => val[b] - val[a] || a - b);
    const kept = m > 1 ? spaced(candidates, bw, bh, bd, m) : candidates;
    for (const j of kept) {
      const x = j % bw;
      const y = ((j - x) / bw) % bh;
      const z = (j - x - y * bw) / (bw * bh);
      peaks[((z + oz) * h + (y + oy)) * w + (x + ox)] = 1;
    }
  }
}

/**
 * flags[j] = 2 for the pixels of the block's set (val >= 0) that a binary opening with the cross
 * removes (scipy's binary_opening, outside the block unset); 1 for the others of the set.
 */
function isolatedPixels(val: Float64Array, flags: Uint8Array, bw: number, bh: number, bd: number, cross: [number, number, number][]): void {
  const size = bw * bh * bd;
  const inSet = (x: number, y: number, z: number) => x >= 0 && y >= 0 && z >= 0 && x < bw && y < bh && z < bd && val[(z * bh + y) * bw + x] >= 0;
  // erosion: flags 1 = in set, 3 = in set and eroded
  for (let j = 0; j < size; j++) {
    if (val[j] < 0) {
      flags[j] = 0;
      continue;
    }
    const x = j % bw;
    const y = ((j - x) / bw) % bh;
    const z = (j - x - y * bw) / (bw * bh);
    flags[j] = cross.every(([dx, dy, dz]) => inSet(x + dx, y + dy, z + dz)) ? 3 : 1;
  }
  // dilation of the eroded set: a pixel of the set stays unless neither it nor a cross neighbour is eroded
  const eroded = (x: number, y: number, z: number) => x >= 0 && y >= 0 && z >= 0 && x < bw && y < bh && z < bd && (flags[(z * bh + y) * bw + x] & 2) !== 0;
  const removed: number[] = [];
  for (let j = 0; j < size; j++) {
    if (flags[j] !== 1) continue;
    const x = j % bw;
    const y = ((j - x) / bw) % bh;
    const z = (j - x - y * bw) / (bw * bh);
    if (!cross.some(([dx, dy, dz]) => eroded(x + dx, y + dy, z + dz))) removed.push(j);
  }
  for (let j = 0; j < size; j++) if (flags[j] !== 0) flags[j] = 1;
  for (const j of removed) flags[j] = 2;
}

/**
 * Greedy spacing (skimage's ensure_spacing, p = inf): in the given order, keep a point unless a
 * kept one lies at Chebyshev distance < m. A grid of m-sized cells holds at most one kept point
 * per cell, so only the 3^n cells around a point are checked.
 */
function spaced(points: number[], bw: number, bh: number, bd: number, m: number): number[] {
  const gw = Math.ceil(bw / m);
  const gh = Math.ceil(bh / m);
  const gd = Math.ceil(bd / m);
  const grid = new Int32Array(gw * gh * gd).fill(-1);
  const kept: number[] = [];
  for (const j of points) {
    const x = j % bw;
    const y = ((j - x) / bw) % bh;
    const z = (j - x - y * bw) / (bw * bh);
    const cx = Math.floor(x / m);
    const cy = Math.floor(y / m);
    const cz = Math.floor(z / m);
    let free = true;
    for (let gz = Math.max(0, cz - 1); free && gz <= Math.min(gd - 1, cz + 1); gz++) {
      for (let gy = Math.max(0, cy - 1); free && gy <= Math.min(gh - 1, cy + 1); gy++) {
        for (let gx = Math.max(0, cx - 1); free && gx <= Math.min(gw - 1, cx + 1); gx++) {
          const k = grid[(gz * gh + gy) * gw + gx];
          if (k < 0) continue;
          const kx = k % bw;
          const ky = ((k - kx) / bw) % bh;
          const kz = (k - kx - ky * bw) / (bw * bh);
          if (Math.max(Math.abs(kx - x), Math.abs(ky - y), Math.abs(kz - z)) < m) free = false;
        }
      }
    }
    if (free) {
      grid[(cz * gh + cy) * gw + cx] = j;
      kept.push(j);
    }
  }
  return kept;
}

/**
 * The flooding queue: a binary heap of entries that pops the highest level first, then the lowest
 * age. Markers all have age 0, as in skimage; every later entry's age is its push number. The sift
 * rules are skimage's (strict comparisons; of two equal children the left one), so markers of equal
 * level leave in the same order as there. Levels and ages live in the heap slots, not per entry, so
 * the sifts stay within the (frontier-sized) heap.
 */
class FloodQueue {
  private entry: Int32Array;
  private level: Float64Array;
  private age: Int32Array;
  private size = 0;
  /** The level of the entry `pop` returned last. */
  topLevel = 0;
  constructor(capacity: number) {
    this.entry = new Int32Array(Math.max(16, capacity));
    this.level = new Float64Array(this.entry.length);
    this.age = new Int32Array(this.entry.length);
  }
  get length(): number {
    return this.size;
  }
  push(entry: number, level: number, age: number): void {
    if (this.size === this.entry.length) this.grow();
    const { entry: es, level: ls, age: as } = this;
    let i = this.size++;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const lp = ls[p];
      if (level < lp || (level === lp && age >= as[p])) break; // not strictly before the parent
      es[i] = es[p];
      ls[i] = lp;
      as[i] = as[p];
      i = p;
    }
    es[i] = entry;
    ls[i] = level;
    as[i] = age;
  }
  pop(): number {
    const { entry: es, level: ls, age: as } = this;
    const top = es[0];
    this.topLevel = ls[0];
    const n = --this.size;
    const e = es[n];
    const l = ls[n];
    const a = as[n];
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && (ls[c + 1] > ls[c] || (ls[c + 1] === ls[c] && as[c + 1] < as[c]))) c++;
      if (ls[c] < l || (ls[c] === l && as[c] >= a)) break; // the child is not strictly before the last entry
      es[i] = es[c];
      ls[i] = ls[c];
      as[i] = as[c];
      i = c;
    }
    es[i] = e;
    ls[i] = l;
    as[i] = a;
    return top;
  }
  private grow(): void {
    const n = this.entry.length * 2;
    const entry = new Int32Array(n);
    const level = new Float64Array(n);
    const age = new Int32Array(n);
    entry.set(this.entry);
    level.set(this.level);
    age.set(this.age);
    this.entry = entry;
    this.level = level;
    this.age = age;
  }
}

/**
 * Split touching objects: seeded watershed on the Euclidean distance to the background, restricted
 * to the foreground, seeds and flooding as described in the module comment (skimage's
 * `peak_local_max` + `watershed(-distance, markers, mask=mask)`), instances of fewer than `minSize`
 * pixels removed, ids 1..count in raster order of first pixel. `connectivity` (default face
 * neighbours) is both the components that seeds are found in and the flooding neighbourhood. A
 * foreground without any background pixel has no distance to split by: it is one instance.
 * @example watershedInstances(twoTouchingDiscs, { minDistance: 5 }).count // 2
 */
export function watershedInstances(mask: ForegroundMap, options: WatershedInstanceOptions & { ids: 'uint32' }): WatershedInstances<Uint32Array>;
export function watershedInstances(mask: ForegroundMap, options: WatershedInstanceOptions & { ids?: 'uint16' }): WatershedInstances<Uint16Array>;
export function watershedInstances(mask: ForegroundMap, options: WatershedInstanceOptions): WatershedInstances;
export function watershedInstances(mask: ForegroundMap, options: WatershedInstanceOptions): WatershedInstances {
  const { minDistance } = options;
  checkInteger(minDistance, 'minDistance', 1);
  const minSize = options.minSize ?? 1;
  checkInteger(minSize, 'minSize', 0);
  const excludeBorder = options.excludeBorder ?? true;
  const border = excludeBorder === true ? minDistance : excludeBorder === false ? 0 : excludeBorder;
  checkInteger(border, 'excludeBorder', 0);
  const { shape, mask: fg } = foregroundOf(mask, options.threshold ?? 0.5);
  const { width: w, height: h, depth: d } = shape;
  const volume = { width: w, height: h, depth: d, data: fg };
  const steps = connectivitySteps(options.connectivity ?? (d === 1 ? 4 : 6), d);
  const components = runComponents(volume, false, options.connectivity);
  const n = fg.length;
  let foreground = 0;
  for (let r = 1; r <= components.count; r++) foreground += components.sizes[r];
  if (foreground === n) {
    const whole = connectedInstances(mask, options);
    return { ...whole, seeds: whole.count };
  }

  const background = new Uint8Array(n);
  for (let i = 0; i < n; i++) background[i] = fg[i] === 0 ? 1 : 0;
  const d2 = squaredEdt({ width: w, height: h, depth: d, data: background });
  const peaks = new Uint8Array(n);
  findPeaks(components, d2, minDistance, border, peaks);
  const markers = runComponents({ width: w, height: h, depth: d, data: peaks }, false, d === 1 ? 4 : 6);
  const labels = new Int32Array(n);
  paintRuns(markers, labels);

  // flooding: each foreground pixel enters the queue at most once, labelled as it enters
  const queue = new FloodQueue(1024);
  for (let row = 0; row < h * d; row++) {
    for (let r = markers.rowStart[row]; r < markers.rowStart[row + 1]; r++) {
      for (let x = markers.runStart[r]; x < markers.runEnd[r]; x++) queue.push(row * w + x, d2[row * w + x], 0);
    }
  }
  let age = 1;
  const offsets = neighbourOffsets(steps, d);
  const nOffsets = offsets.length;
  const odx = Int32Array.from(offsets, (o) => o[0]);
  const ody = Int32Array.from(offsets, (o) => o[1]);
  const odz = Int32Array.from(offsets, (o) => o[2]);
  const plane = w * h;
  const step = Int32Array.from(offsets, ([dx, dy, dz]) => dx + dy * w + dz * plane);
  while (queue.length > 0) {
    const i = queue.pop();
    const level = queue.topLevel;
    const label = labels[i];
    const x = i % w;
    const y = ((i - x) / w) % h;
    const z = (i - x - y * w) / plane;
    for (let q = 0; q < nOffsets; q++) {
      const nx = x + odx[q];
      const ny = y + ody[q];
      const nz = z + odz[q];
      if (nx < 0 || nx >= w || ny < 0 || ny >= h || nz < 0 || nz >= d) continue;
      const j = i + step[q];
      if (fg[j] === 0 || labels[j] !== 0) continue;
      labels[j] = label;
      queue.push(j, d2[j] < level ? d2[j] : level, ++age); // reached no higher than the level it is flooded from
    }
  }

  // small instances out, ids in raster order of first pixel
  const sizes = new Float64Array(markers.count + 1);
  for (let i = 0; i < n; i++) sizes[labels[i]]++;
  const idOf = new Uint32Array(markers.count + 1);
  let count = 0;
  for (let i = 0; i < n; i++) {
    const l = labels[i];
    if (l !== 0 && idOf[l] === 0 && sizes[l] >= minSize) idOf[l] = ++count;
  }
  const data = idArray(options.ids, count, n);
  for (let i = 0; i < n; i++) data[i] = idOf[labels[i]];
  return { ...result(shape, data, count), seeds: markers.count };
}
