/**
 * 4-connected components of a binary mask, computed on row runs: each row's set pixels are stored
 * as half-open runs [start, end), runs that share a column with a run of the previous row are
 * joined (union-find), and components are numbered 1..count in raster order of their first pixel
 * (the numbering of `skimage.measure.label(mask, connectivity=1)`). Working on runs keeps the
 * component labels and the contingency tables built from them small: O(runs), not O(pixels).
 */
import { assertImage, type Mask } from './image.js';

/** The set pixels of a mask as runs, with the 4-connected component of each run. */
export interface RunComponents {
  width: number;
  height: number;
  /** Runs of row y are `rowStart[y] .. rowStart[y + 1] - 1`. Length height + 1. */
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

/**
 * Runs and 4-connected components of the pixels where `data[i] !== 0` (or `=== 0` with `invert`).
 * @example runComponents(mask(3, 1, [1, 0, 1])).count // 2
 */
export function runComponents(mask: Mask, invert = false): RunComponents {
  assertImage(mask, 'mask');
  const { width: w, height: h, data } = mask;
  const rowStart = new Int32Array(h + 1);
  const starts = new IntList(h * 4);
  const ends = new IntList(h * 4);
  const on = invert ? 0 : 1;
  for (let y = 0; y < h; y++) {
    rowStart[y] = starts.length;
    const row = y * w;
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
  rowStart[h] = starts.length;
  const runStart = starts.toArray();
  const runEnd = ends.toArray();
  const nRuns = runStart.length;

  // Union runs that overlap a run of the previous row in at least one column.
  const parent = new Int32Array(nRuns);
  for (let r = 0; r < nRuns; r++) parent[r] = r;
  for (let y = 1; y < h; y++) {
    let a = rowStart[y - 1];
    const aEnd = rowStart[y];
    let b = rowStart[y];
    const bEnd = rowStart[y + 1];
    while (a < aEnd && b < bEnd) {
      if (runStart[a] < runEnd[b] && runStart[b] < runEnd[a]) {
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
  return { width: w, height: h, rowStart, runStart, runEnd, runLabel, count, sizes };
}

/**
 * Per-pixel labels of the 4-connected components of the set pixels (0 = not set), numbered in
 * raster order like `skimage.measure.label(mask, connectivity=1)`.
 */
export function labelComponents4(mask: Mask): { labels: Int32Array; count: number } {
  const rc = runComponents(mask);
  const labels = new Int32Array(mask.width * mask.height);
  for (let y = 0; y < rc.height; y++) {
    for (let r = rc.rowStart[y]; r < rc.rowStart[y + 1]; r++) {
      labels.fill(rc.runLabel[r], y * rc.width + rc.runStart[r], y * rc.width + rc.runEnd[r]);
    }
  }
  return { labels, count: rc.count };
}
