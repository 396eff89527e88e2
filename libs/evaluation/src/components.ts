/**
 * Connected components of a binary mask (2D) or volume (3D), computed on row runs: each row's set
 * pixels are stored as half-open runs [start, end), runs that touch a run of an earlier neighbouring
 * row are joined (union-find), and components are numbered 1..count in raster order of their first
 * pixel (the numbering of `skimage.measure.label(mask, connectivity=c)`). Working on runs keeps the
 * component labels and the contingency tables built from them small: O(runs), not O(pixels).
 *
 * Connectivity is given as the neighbour count: 4 or 8 in 2D, 6, 18 or 26 in 3D (skimage's
 * connectivity 1, 2 and 3: neighbours are the offsets with at most c nonzero coordinates). A row of
 * a volume is (y, z); two runs in rows (y, z) and (y + dy, z + dz) touch when they share a column,
 * or, where one more nonzero offset is allowed (|dy| + |dz| < c), when they are diagonal neighbours.
 */
import { assertImage, EvaluationInputError, type Mask, type PixelArray } from './image.js';

/**
 * A binary volume: voxel (x, y, z) at `data[(z * height + y) * width + x]`, set where nonzero. No
 * `depth` (or depth 1) is a 2D mask.
 */
export interface MaskVolume {
  readonly width: number;
  readonly height: number;
  readonly depth?: number;
  readonly data: Uint8Array;
}

/** Neighbour counts accepted as connectivity: 4 or 8 in 2D, 6, 18 or 26 in 3D. */
export type Connectivity = 4 | 8 | 6 | 18 | 26;

/** The set pixels of a mask as runs, with the connected component of each run. */
export interface RunComponents {
  width: number;
  height: number;
  /** Number of slices (1 for a 2D mask). Rows are numbered z * height + y. */
  depth: number;
  /** Runs of row r are `rowStart[r] .. rowStart[r + 1] - 1`. Length height * depth + 1. */
  rowStart: Int32Array;
  /** First column of each run. */
  runStart: Int32Array;
  /** One past the last column of each run. */
  runEnd: Int32Array;
  /** Component (1..count) of each run. */
  runLabel: Int32Array;
  /** Number of components. */
  count: number;
  /** Pixel count of each component; index 0 unused. */
  sizes: Float64Array;
}

/** A growable Int32 list. */
class IntList {
  data: Int32Array;
  length = 0;
  constructor(capacity = 1024) {
    this.data = new Int32Array(Math.max(16, capacity));
  }
  push(v: number): void {
    if (this.length === this.data.length) {
      const next = new Int32Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = v;
  }
  toArray(): Int32Array {
    return this.data.slice(0, this.length);
  }
}

function find(parent: Int32Array, i: number): number {
  let root = i;
  while (parent[root] !== root) root = parent[root];
  while (parent[i] !== root) {
    const next = parent[i];
    parent[i] = root;
    i = next;
  }
  return root;
}

/** Throw a clear error unless `mask` is a well-formed 2D image or volume; returns its depth (1 in 2D). */
export function assertMaskVolume(
  mask: { readonly width: number; readonly height: number; readonly depth?: number; readonly data: PixelArray },
  what: string,
): number {
  const depth = mask.depth ?? 1;
  if (depth === 1) {
    assertImage(mask, what);
    return 1;
  }
  const { width, height, data } = mask;
  if (![width, height, depth].every((d) => Number.isInteger(d) && d >= 1)) {
    throw new EvaluationInputError(`${what}: width, height and depth must be positive integers, got ${width} x ${height} x ${depth}`);
  }
  if (data.length !== width * height * depth) {
    throw new EvaluationInputError(
      `${what}: data has ${data.length} values, expected width * height * depth = ${width} * ${height} * ${depth} = ${width * height * depth}`,
    );
  }
  return depth;
}

/**
 * skimage's connectivity (the most nonzero offsets a neighbour may have: 1, 2 or 3) of a neighbour
 * count. A one-slice volume is a 2D image: 6, 18 and 26 are accepted there and mean 4, 8 and 8.
 */
export function connectivitySteps(connectivity: number, depth: number): 1 | 2 | 3 {
  const steps = depth === 1 ? { 4: 1, 8: 2, 6: 1, 18: 2, 26: 2 } : { 6: 1, 18: 2, 26: 3 };
  const c = (steps as Record<number, 1 | 2 | 3 | undefined>)[connectivity];
  if (c === undefined) {
    const allowed = depth === 1 ? '4 or 8' : '6, 18 or 26';
    throw new EvaluationInputError(`connectivity must be ${allowed} for a ${depth === 1 ? '2D image' : '3D volume'}, got ${connectivity}`);
  }
  return c;
}

/**
 * Runs and connected components of the pixels where `data[i] !== 0` (or `=== 0` with `invert`),
 * 4-connected by default (6-connected in 3D).
 * @example runComponents(mask(3, 1, [1, 0, 1])).count // 2
 * @example runComponents(mask(2, 2, [1, 0, 0, 1]), false, 8).count // 1
 */
export function runComponents(mask: Mask | MaskVolume, invert = false, connectivity?: Connectivity): RunComponents {
  const d = assertMaskVolume(mask, 'mask');
  const c = connectivitySteps(connectivity ?? (d === 1 ? 4 : 6), d);
  const { width: w, height: h, data } = mask;
  const rows = h * d;
  const rowStart = new Int32Array(rows + 1);
  const starts = new IntList(rows * 4);
  const ends = new IntList(rows * 4);
  const on = invert ? 0 : 1;
  for (let r = 0; r < rows; r++) {
    rowStart[r] = starts.length;
    const row = r * w;
    let x = 0;
    while (x < w) {
      while (x < w && (data[row + x] !== 0 ? 1 : 0) !== on) x++;
      if (x >= w) break;
      const s = x;
      while (x < w && (data[row + x] !== 0 ? 1 : 0) === on) x++;
      starts.push(s);
      ends.push(x);
    }
  }
  rowStart[rows] = starts.length;
  const runStart = starts.toArray();
  const runEnd = ends.toArray();
  const nRuns = runStart.length;

  // Earlier neighbouring rows (dy, dz) and whether diagonal neighbours in x count (slack 1).
  const neighbours: { dy: number; dz: number; slack: number }[] = [];
  for (const [dy, dz] of [
    [-1, 0],
    [-1, -1],
    [0, -1],
    [1, -1],
  ]) {
    const m = (dy !== 0 ? 1 : 0) + (dz !== 0 ? 1 : 0);
    if (dz !== 0 && d === 1) continue;
    if (m <= c) neighbours.push({ dy, dz, slack: m < c ? 1 : 0 });
  }

  // Union runs that touch a run of an earlier neighbouring row.
  const parent = new Int32Array(nRuns);
  for (let r = 0; r < nRuns; r++) parent[r] = r;
  for (let z = 0; z < d; z++) {
    for (let y = 0; y < h; y++) {
      const row = z * h + y;
      const bBegin = rowStart[row];
      const bEnd = rowStart[row + 1];
      if (bBegin === bEnd) continue;
      for (const { dy, dz, slack } of neighbours) {
        const ny = y + dy;
        const nz = z + dz;
        if (ny < 0 || ny >= h || nz < 0) continue;
        const other = nz * h + ny;
        let a = rowStart[other];
        const aEnd = rowStart[other + 1];
        let b = bBegin;
        while (a < aEnd && b < bEnd) {
          if (runStart[a] < runEnd[b] + slack && runStart[b] < runEnd[a] + slack) {
            const ra = find(parent, a);
            const rb = find(parent, b);
            if (ra !== rb) {
              // keep the earlier run as root so labels follow raster order
              if (ra < rb) parent[rb] = ra;
              else parent[ra] = rb;
            }
          }
          if (runEnd[a] <= runEnd[b]) a++;
          else b++;
        }
      }
    }
  }
  // Number roots in raster order of their first run.
  const runLabel = new Int32Array(nRuns);
  let count = 0;
  for (let r = 0; r < nRuns; r++) {
    const root = find(parent, r);
    if (root === r) runLabel[r] = ++count;
    else runLabel[r] = runLabel[root];
  }
  const sizes = new Float64Array(count + 1);
  for (let r = 0; r < nRuns; r++) sizes[runLabel[r]] += runEnd[r] - runStart[r];
  return { width: w, height: h, depth: d, rowStart, runStart, runEnd, runLabel, count, sizes };
}

/**
 * Write each run's component into `out` (one value per pixel, row-major, rows z * height + y),
 * mapped through `idOf[label]` when given (0 = leave the run's pixels unset). Pixels outside runs
 * are not touched.
 */
export function paintRuns(rc: RunComponents, out: Uint16Array | Uint32Array | Int32Array, idOf?: ArrayLike<number>): void {
  const rows = rc.height * rc.depth;
  for (let row = 0; row < rows; row++) {
    const at = row * rc.width;
    for (let r = rc.rowStart[row]; r < rc.rowStart[row + 1]; r++) {
      const id = idOf === undefined ? rc.runLabel[r] : idOf[rc.runLabel[r]];
      if (id !== 0) out.fill(id, at + rc.runStart[r], at + rc.runEnd[r]);
    }
  }
}

/**
 * Per-pixel labels of the 4-connected components of the set pixels (0 = not set), numbered in
 * raster order like `skimage.measure.label(mask, connectivity=1)`.
 */
export function labelComponents4(mask: Mask): { labels: Int32Array; count: number } {
  const rc = runComponents(mask);
  const labels = new Int32Array(mask.width * mask.height);
  paintRuns(rc, labels);
  return { labels, count: rc.count };
}
