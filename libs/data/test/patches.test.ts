import { describe, expect, it } from 'vitest';
import { ForegroundIndex, Rng, gridOffsets, patchGrid, samplePatch, type Mask } from '@emseg/data';

describe('gridOffsets / patchGrid', () => {
  it('cuts U-RISC Track 1 images into 19 x 19 patches of 1024 at stride 512, the last flush with the edge', () => {
    const xs = gridOffsets(9958, 1024, 512);
    expect(xs).toHaveLength(19);
    expect(xs.slice(0, 3)).toEqual([0, 512, 1024]);
    expect(xs.at(-2)).toBe(8704);
    expect(xs.at(-1)).toBe(9958 - 1024);
    expect(patchGrid(9958, 9959, { size: 1024, stride: 512 })).toHaveLength(19 * 19);
  });

  it('gives exact multiples no extra patch', () => {
    expect(gridOffsets(2048, 1024, 512)).toEqual([0, 512, 1024]);
    expect(gridOffsets(1024, 1024, 512)).toEqual([0]);
  });

  it('covers every pixel, never reaches outside, and keeps the stride between neighbours', () => {
    const rng = new Rng(3);
    for (let trial = 0; trial < 200; trial++) {
      const size = 1 + rng.int(40);
      const stride = 1 + rng.int(size);
      const length = size + rng.int(200);
      const offsets = gridOffsets(length, size, stride);
      const covered = new Uint8Array(length);
      for (const o of offsets) {
        expect(o).toBeGreaterThanOrEqual(0);
        expect(o + size).toBeLessThanOrEqual(length);
        covered.fill(1, o, o + size);
      }
      expect(covered.every((c) => c === 1)).toBe(true);
      for (let i = 1; i < offsets.length; i++) {
        expect(offsets[i] - offsets[i - 1]).toBeGreaterThan(0);
        expect(offsets[i] - offsets[i - 1]).toBeLessThanOrEqual(stride);
      }
    }
  });

  it('returns one padded patch for an image smaller than the patch', () => {
    expect(patchGrid(100, 50, { size: 128, stride: 64 })).toEqual([{ x: 0, y: 0, width: 128, height: 128 }]);
  });

  it('rejects a stride that would leave gaps, and non-integer sizes', () => {
    expect(() => gridOffsets(1000, 256, 300)).toThrow(/stride 300 is larger than the window size 256/);
    expect(() => gridOffsets(1000, 25.5, 10)).toThrow(/size must be a positive integer, got 25.5/);
  });
});

function sparseMask(width: number, height: number, points: [number, number][]): Mask {
  const data = new Uint8Array(width * height);
  for (const [x, y] of points) data[y * width + x] = 1;
  return { width, height, data };
}

describe('ForegroundIndex', () => {
  it('enumerates the foreground pixels in row-major order', () => {
    const points: [number, number][] = [
      [3, 0],
      [7, 0],
      [0, 2],
      [9, 5],
      [1, 6],
    ];
    const index = new ForegroundIndex(sparseMask(10, 7, points));
    expect(index.count).toBe(5);
    expect(points.map((_, k) => index.pixel(k))).toEqual(points.map(([x, y]) => ({ x, y })));
    expect(() => index.pixel(5)).toThrow(/out of range/);
    expect(new ForegroundIndex(sparseMask(4, 4, [])).sample(new Rng(1))).toBeNull();
  });
});

describe('samplePatch', () => {
  const width = 500;
  const height = 400;
  // A membrane-like sparse foreground: one short segment in a corner.
  const mask = sparseMask(
    width,
    height,
    Array.from({ length: 30 }, (_, i) => [450 + i, 20] as [number, number]),
  );
  const foreground = new ForegroundIndex(mask);
  const containsForeground = (r: { x: number; y: number; width: number; height: number }) =>
    r.y <= 20 && r.y + r.height > 20 && r.x + r.width > 450 && r.x < 480;

  it('places uniform patches inside the image, reproducibly by seed', () => {
    const a = Array.from({ length: 50 }, (_, i, rng = new Rng(i)) => samplePatch(rng, width, height, { size: 64 }));
    const b = Array.from({ length: 50 }, (_, i, rng = new Rng(i)) => samplePatch(rng, width, height, { size: 64 }));
    expect(a).toEqual(b);
    for (const r of a) {
      expect(r.x).toBeGreaterThanOrEqual(0);
      expect(r.y).toBeGreaterThanOrEqual(0);
      expect(r.x + 64).toBeLessThanOrEqual(width);
      expect(r.y + 64).toBeLessThanOrEqual(height);
    }
  });

  it('oversamples foreground: every patch contains some at p = 1, about half at p = 0.5', () => {
    const rng = new Rng(11);
    const forced = Array.from({ length: 300 }, () => samplePatch(rng, width, height, { size: 64, foreground, foregroundProbability: 1 }));
    expect(forced.every(containsForeground)).toBe(true);
    const half = Array.from({ length: 2000 }, () => samplePatch(rng, width, height, { size: 64, foreground, foregroundProbability: 0.5 }));
    const uniform = Array.from({ length: 2000 }, () => samplePatch(rng, width, height, { size: 64 }));
    const share = (rs: typeof half) => rs.filter(containsForeground).length / rs.length;
    expect(share(half)).toBeGreaterThan(0.45);
    expect(share(half)).toBeLessThan(0.6);
    expect(share(uniform)).toBeLessThan(0.05);
  });

  it('needs a foreground index to oversample', () => {
    expect(() => samplePatch(new Rng(1), 100, 100, { size: 10, foregroundProbability: 0.5 })).toThrow(/needs a ForegroundIndex/);
  });
});
