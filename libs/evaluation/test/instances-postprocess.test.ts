import { describe, expect, it } from 'vitest';
import { adaptedRandError, connectedInstances, squaredEdt, watershedInstances, type ForegroundMap, type Instances } from '@emseg/evaluation';
import { decodeRuns, loadFixture } from './helpers.js';

/** A components case of make_postprocess_fixtures.py: skimage label after remove_small_objects. */
interface ComponentCase {
  name: string;
  width: number;
  height: number;
  depth?: number;
  connectivity: 4 | 8 | 6 | 18 | 26;
  minSize: number;
  /** Run-length encoded, [value, count, ...], row-major. */
  mask: number[];
  count: number;
  labels: number[];
}

/** A watershed case: peak_local_max(labels=components) + watershed(-distance, markers, mask). */
interface WatershedCase {
  name: string;
  width: number;
  height: number;
  depth?: number;
  minDistance: number;
  connectivity: 4 | 8 | 6 | 18 | 26;
  excludeBorder: boolean | number;
  minSize: number;
  seeds: number;
  count: number;
  components: number;
  mask?: number[];
  /** p * 255 of a probability map whose p >= 0.5 is the mask. */
  probability255?: number[];
  labels: number[];
}

const fx = loadFixture<{ components: ComponentCase[]; watershed: WatershedCase[] }>('postprocess.json');

function encodeRuns(data: ArrayLike<number>): number[] {
  const out: number[] = [];
  for (let i = 0; i < data.length;) {
    let j = i + 1;
    while (j < data.length && data[j] === data[i]) j++;
    out.push(data[i], j - i);
    i = j;
  }
  return out;
}

function input(c: { width: number; height: number; depth?: number; mask?: number[]; probability255?: number[] }): ForegroundMap {
  const { width, height, depth } = c;
  const data = c.mask ? decodeRuns(c.mask, (n) => new Uint8Array(n)) : decodeRuns(c.probability255!, (n) => new Float32Array(n)).map((v) => v / 255);
  return depth === undefined ? { width, height, data } : { width, height, depth, data };
}

/** Agreement of two label images with raster-ordered ids over the same foreground. */
function agreement(a: Instances, expected: Int32Array): { pixels: number; differing: number; agreement: number; are: number } {
  let pixels = 0;
  let differing = 0;
  for (let i = 0; i < expected.length; i++) {
    if (expected[i] === 0 && a.data[i] === 0) continue;
    pixels++;
    if (a.data[i] !== expected[i]) differing++;
  }
  const flat = (data: Int32Array) => ({ width: a.width, height: a.height * (a.depth ?? 1), data });
  const are = adaptedRandError(flat(expected), flat(Int32Array.from(a.data))).error;
  return { pixels, differing, agreement: 1 - differing / pixels, are };
}

/** Binary disc image: pixels within radius r of each (cx, cy). */
function discs(width: number, height: number, list: [number, number, number][]): ForegroundMap {
  const data = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (list.some(([cx, cy, r]) => (x - cx) ** 2 + (y - cy) ** 2 <= r * r)) data[y * width + x] = 1;
    }
  }
  return { width, height, data };
}

describe('connectedInstances against skimage.measure.label + remove_small_objects', () => {
  for (const c of fx.components) {
    it(c.name, () => {
      const out = connectedInstances(input(c), { connectivity: c.connectivity, minSize: c.minSize });
      expect(out.data).toBeInstanceOf(Uint16Array);
      expect(out.count).toBe(c.count);
      expect(encodeRuns(out.data)).toEqual(c.labels); // identical ids, raster order
      expect([out.width, out.height, out.depth]).toEqual([c.width, c.height, c.depth]);
    });
  }

  it('distinguishes the connectivities and removes specks', () => {
    const count = (name: string) => fx.components.find((c) => c.name === name)!.count;
    expect(count('2d-diagonals-c1')).toBeGreaterThan(count('2d-diagonals-c2'));
    expect(count('3d-blobs-c1-min1')).toBeGreaterThan(count('3d-blobs-c2-min1'));
    expect(count('3d-blobs-c2-min1')).toBeGreaterThan(count('3d-blobs-c3-min1'));
    expect(count('2d-blobs-c1-min1')).toBeGreaterThan(count('2d-blobs-c1-min6'));
  });

  it('thresholds probability maps at p >= threshold', () => {
    const prob = { width: 5, height: 1, data: Float32Array.of(0.5, 0.49, 0.9, 0.2, 0.7) };
    expect([...connectedInstances(prob).data]).toEqual([1, 0, 2, 0, 3]);
    expect([...connectedInstances(prob, { threshold: 0.6 }).data]).toEqual([0, 0, 1, 0, 2]);
  });

  it('Uint16 ids by default, an error naming the count past 65535, Uint32 on request', () => {
    const w = 512;
    const data = new Uint8Array(w * w);
    for (let i = 0; i < data.length; i++) data[i] = ((i % w) + Math.floor(i / w)) % 2; // checkerboard: 131072 4-components
    const board = { width: w, height: w, data };
    expect(() => connectedInstances(board)).toThrow(/131072 instances do not fit Uint16 ids \(at most 65535\); pass ids: 'uint32'/);
    const big = connectedInstances(board, { ids: 'uint32' });
    expect(big.data).toBeInstanceOf(Uint32Array);
    expect(big.count).toBe(131072);
    expect(connectedInstances(board, { connectivity: 8 }).count).toBe(1);
  });

  it('rejects bad options and shapes', () => {
    const m = { width: 2, height: 2, data: new Uint8Array(4) };
    expect(() => connectedInstances(m, { connectivity: 6 })).not.toThrow(); // one slice: 6 means 4
    expect(() => connectedInstances({ ...m, depth: 2, data: new Uint8Array(8) }, { connectivity: 8 })).toThrow(
      /connectivity must be 6, 18 or 26 for a 3D volume, got 8/,
    );
    expect(() => connectedInstances(m, { minSize: 1.5 })).toThrow(/minSize must be an integer >= 0/);
    expect(() => connectedInstances({ width: 3, height: 2, data: new Uint8Array(4) })).toThrow(/prediction: data has 4 values, expected/);
    expect(() => connectedInstances({ width: 2, height: 2, depth: 3, data: new Uint8Array(8) })).toThrow(/width \* height \* depth = 2 \* 2 \* 3 = 12/);
  });
});

describe('squaredEdt in 3D', () => {
  it('equals the brute-force squared distance to the nearest feature voxel', () => {
    const [w, h, d] = [7, 5, 6];
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    const data = Uint8Array.from({ length: w * h * d }, () => (rand() < 0.04 ? 1 : 0));
    const got = squaredEdt({ width: w, height: h, depth: d, data });
    const features = [...data.keys()].filter((i) => data[i] !== 0).map((i) => [i % w, Math.floor(i / w) % h, Math.floor(i / (w * h))]);
    expect(features.length).toBeGreaterThan(0);
    for (let i = 0; i < data.length; i++) {
      const [x, y, z] = [i % w, Math.floor(i / w) % h, Math.floor(i / (w * h))];
      const best = Math.min(...features.map(([a, b, c]) => (a - x) ** 2 + (b - y) ** 2 + (c - z) ** 2));
      expect(got[i]).toBe(best);
    }
    expect([...squaredEdt({ width: 2, height: 1, depth: 2, data: new Uint8Array(4) })]).toEqual([Infinity, Infinity, Infinity, Infinity]);
  });
});

describe('watershedInstances against peak_local_max + watershed(-distance, markers, mask)', () => {
  for (const c of fx.watershed) {
    it(c.name, () => {
      const out = watershedInstances(input(c), {
        minDistance: c.minDistance,
        connectivity: c.connectivity,
        excludeBorder: c.excludeBorder,
        minSize: c.minSize,
      });
      const expected = decodeRuns(c.labels, (n) => new Int32Array(n));
      const a = agreement(out, expected);
      console.log(
        `${c.name}: ${out.count} instances (skimage ${c.count}), ${out.seeds} seeds, ${a.differing} of ${a.pixels} pixels differ, ARE ${a.are.toExponential(2)}`,
      );
      expect(out.seeds).toBe(c.seeds);
      expect(out.count).toBe(c.count);
      expect(a.agreement).toBeGreaterThanOrEqual(0.99);
      expect(a.are).toBeLessThan(0.01);
      // the same heap and tie rules as skimage: identical labels, ridge pixels included
      expect(encodeRuns(out.data)).toEqual(c.labels);
    });
  }

  it('splits two touching discs, which connected components keep as one', () => {
    const two = discs(60, 40, [
      [20, 20, 11],
      [39, 20, 11],
    ]);
    expect(connectedInstances(two).count).toBe(1);
    const out = watershedInstances(two, { minDistance: 5 });
    expect(out.count).toBe(2);
    expect(out.data[20 * 60 + 20]).toBe(1);
    expect(out.data[20 * 60 + 39]).toBe(2);
  });

  it('a foreground without background is one instance; an empty one has none', () => {
    const full = { width: 4, height: 3, data: new Uint8Array(12).fill(1) };
    expect(watershedInstances(full, { minDistance: 2 })).toMatchObject({ count: 1, seeds: 1 });
    expect(watershedInstances({ ...full, data: new Uint8Array(12) }, { minDistance: 2 })).toMatchObject({ count: 0, seeds: 0 });
  });

  it('rejects bad options', () => {
    const m = discs(10, 10, [[5, 5, 3]]);
    expect(() => watershedInstances(m, { minDistance: 0 })).toThrow(/minDistance must be an integer >= 1, got 0/);
    expect(() => watershedInstances(m, { minDistance: 2, excludeBorder: -1 })).toThrow(/excludeBorder must be an integer >= 0/);
  });
});

/** Balls (discs in 2D) on a jittered grid, some touching their neighbours. */
function jitteredBalls(size: number, depth: number, cells: number, seed: number): ForegroundMap & { data: Uint8Array } {
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const data = new Uint8Array(size * size * depth);
  const cell = size / cells;
  const zCells = depth > 1 ? Math.max(1, Math.round(depth / cell)) : 1;
  const zCell = depth / zCells;
  for (let k = 0; k < zCells; k++) {
    for (let j = 0; j < cells; j++) {
      for (let i = 0; i < cells; i++) {
        const cx = (i + 0.5) * cell + (rand() - 0.5) * 0.3 * cell;
        const cy = (j + 0.5) * cell + (rand() - 0.5) * 0.3 * cell;
        const cz = depth > 1 ? (k + 0.5) * zCell + (rand() - 0.5) * 0.3 * zCell : 0;
        const r = cell * (0.22 + 0.3 * rand());
        for (let z = Math.max(0, Math.floor(cz - r)); z <= Math.min(depth - 1, Math.ceil(cz + r)); z++) {
          for (let y = Math.max(0, Math.floor(cy - r)); y <= Math.min(size - 1, Math.ceil(cy + r)); y++) {
            for (let x = Math.max(0, Math.floor(cx - r)); x <= Math.min(size - 1, Math.ceil(cx + r)); x++) {
              if ((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= r * r) data[(z * size + y) * size + x] = 1;
            }
          }
        }
      }
    }
  }
  return depth > 1 ? { width: size, height: size, depth, data } : { width: size, height: size, data };
}

function timed<T>(run: () => T): [T, number] {
  const t = performance.now();
  const out = run();
  return [out, performance.now() - t];
}

describe('performance', () => {
  it('1024 x 1024 mask with about 200 objects: components well under a second', () => {
    const mask = jitteredBalls(1024, 1, 14, 12345); // 196 discs
    connectedInstances(mask); // warm up
    const [cc, ccMs] = timed(() => connectedInstances(mask, { minSize: 20 }));
    const [cc8, cc8Ms] = timed(() => connectedInstances(mask, { connectivity: 8, minSize: 20 }));
    const [ws, wsMs] = timed(() => watershedInstances(mask, { minDistance: 7, minSize: 20 }));
    console.log(
      `1024 x 1024, 196 discs: ${cc.count} 4-components in ${ccMs.toFixed(1)} ms, ${cc8.count} 8-components in ${cc8Ms.toFixed(1)} ms; ` +
        `${ws.count} watershed instances (${ws.seeds} seeds) in ${wsMs.toFixed(1)} ms`,
    );
    expect(cc.count).toBeGreaterThan(120);
    expect(cc.count).toBeLessThan(196);
    expect(ws.count).toBeGreaterThan(cc.count);
    expect(ccMs).toBeLessThan(500);
  });

  it('128^3 volume with about 100 balls', () => {
    const volume = jitteredBalls(128, 128, 5, 777);
    const [cc, ccMs] = timed(() => connectedInstances(volume, { connectivity: 26 }));
    const [ws, wsMs] = timed(() => watershedInstances(volume, { minDistance: 5 }));
    console.log(`128^3, ${5 * 5 * 5} balls: ${cc.count} 26-components in ${ccMs.toFixed(1)} ms; ${ws.count} watershed instances in ${wsMs.toFixed(1)} ms`);
    expect(ws.count).toBeGreaterThan(cc.count);
  });
});
