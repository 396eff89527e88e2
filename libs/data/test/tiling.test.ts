import { describe, expect, it } from 'vitest';
import { Rng, TileStitcher, blendWeights, extractTile, predictTiled, tilePlan, type BlendWindow, type FloatImage, type GreyImage } from '@emseg/data';
import { pattern16, pattern8 } from './helpers.js';

function randomImage(width: number, height: number, seed: number): FloatImage {
  const rng = new Rng(seed);
  return { width, height, data: Float32Array.from({ length: width * height }, () => rng.next()) };
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('tilePlan', () => {
  const sizes: [number, number][] = [
    [1, 1],
    [5, 300],
    [64, 64],
    [100, 37],
    [257, 511],
    [1000, 999],
  ];
  for (const [width, height] of sizes) {
    it(`covers a ${width}x${height} image exactly (every pixel in a tile, tiles in a full grid)`, () => {
      const plan = tilePlan(width, height, { tileSize: 64, overlap: 16 });
      const covered = new Uint8Array(width * height);
      for (const t of plan.tiles) {
        expect(t).toEqual({ index: t.row * plan.xs.length + t.col, row: t.row, col: t.col, x: plan.xs[t.col], y: plan.ys[t.row] });
        for (let y = Math.max(0, t.y); y < Math.min(height, t.y + 64); y++)
          covered.fill(1, y * width + Math.max(0, t.x), y * width + Math.min(width, t.x + 64));
      }
      expect(covered.every((c) => c === 1)).toBe(true);
      expect(plan.tiles).toHaveLength(plan.xs.length * plan.ys.length);
      // No tile lies entirely in the padding.
      for (const x of plan.xs) expect(x + 64).toBeGreaterThan(0);
      for (const x of plan.xs) expect(x).toBeLessThan(width);
    });
  }

  it('gives border pixels reflected context (tiles start at -padding)', () => {
    const plan = tilePlan(1000, 1000, { tileSize: 256, overlap: 64 });
    expect(plan.padding).toBe(32);
    expect(plan.xs[0]).toBe(-32);
    expect(plan.xs.at(-1)).toBe(1000 + 32 - 256);
  });

  it('plans U-RISC Track 1 inference: 1024 tiles with 256 overlap', () => {
    const plan = tilePlan(9958, 9959, { tileSize: 1024, overlap: 256 });
    expect(plan.xs).toHaveLength(13);
    expect(plan.tiles).toHaveLength(169);
  });

  it('rejects an overlap as large as the tile', () => {
    expect(() => tilePlan(100, 100, { tileSize: 32, overlap: 32 })).toThrow(/overlap must be an integer in \[0, tileSize = 32\), got 32/);
  });
});

describe('extractTile', () => {
  it('reflects at the borders (no edge repeat) and scales integers to [0, 1]', () => {
    const img: GreyImage = { width: 4, height: 1, bitDepth: 8, data: Uint8Array.from([0, 51, 102, 255]) };
    const plan = tilePlan(4, 1, { tileSize: 8, overlap: 0 });
    const tile = extractTile(img, plan, plan.tiles[0]);
    // tile x = -2: reflected row ... 102 51 | 0 51 102 255 | 102 51 ...
    expect(plan.tiles[0].x).toBe(-2);
    expect(Array.from(tile.subarray(0, 8), (v) => Math.round(v * 255))).toEqual([102, 51, 0, 51, 102, 255, 102, 51]);
  });
});

describe('stitching', () => {
  const windows: BlendWindow[] = ['gaussian', 'linear', 'uniform'];
  for (const window of windows) {
    it(`tiles of a known image stitch back to the image (${window} blending)`, () => {
      const image = randomImage(333, 250, 5);
      const plan = tilePlan(image.width, image.height, { tileSize: 96, overlap: 32 });
      const stitcher = new TileStitcher(plan, window);
      for (const tile of plan.tiles) stitcher.add(tile, extractTile(image, plan, tile));
      expect(maxAbsDiff(stitcher.finish(), image.data)).toBeLessThan(1e-5);
    });
  }

  it('reconstructs 8- and 16-bit images too, including ones smaller than a tile', async () => {
    for (const image of [
      { width: 40, height: 30, bitDepth: 8 as const, data: pattern8(40, 30) },
      { width: 301, height: 77, bitDepth: 16 as const, data: pattern16(301, 77) },
    ]) {
      const out = await predictTiled(image, { tileSize: 64, overlap: 24, batchSize: 3 }, (batch) => batch.slice());
      const expected = Float32Array.from(image.data, (v) => v / (image.bitDepth === 8 ? 255 : 65535));
      expect(maxAbsDiff(out, expected)).toBeLessThan(1e-5);
    }
  });

  it('hides seams: tiles that disagree by a constant blend smoothly with a ramp, not with plain averaging', () => {
    const image: FloatImage = { width: 400, height: 300, data: new Float32Array(400 * 300).fill(0.5) };
    const plan = tilePlan(image.width, image.height, { tileSize: 128, overlap: 48 });
    const biases = plan.tiles.map((t) => ((t.row + t.col) % 2 === 0 ? 0.2 : -0.2));
    const largestStep = (window: BlendWindow) => {
      const stitcher = new TileStitcher(plan, window);
      for (const t of plan.tiles)
        stitcher.add(
          t,
          extractTile(image, plan, t).map((v) => v + biases[t.index]),
        );
      const out = stitcher.finish();
      let step = 0;
      for (let y = 0; y < image.height; y++) {
        for (let x = 1; x < image.width; x++) step = Math.max(step, Math.abs(out[y * image.width + x] - out[y * image.width + x - 1]));
      }
      return step;
    };
    // Neighbouring tiles disagree by 0.4: averaging jumps at tile edges, blending spreads it out.
    expect(largestStep('uniform')).toBeGreaterThan(0.15);
    expect(largestStep('linear')).toBeLessThan(0.02);
    expect(largestStep('gaussian')).toBeLessThan(0.05);
  });

  it('refuses to finish with a tile missing, or to take a tile twice', () => {
    const plan = tilePlan(100, 100, { tileSize: 64, overlap: 16 });
    const stitcher = new TileStitcher(plan);
    const values = new Float32Array(64 * 64);
    stitcher.add(plan.tiles[0], values);
    expect(() => stitcher.add(plan.tiles[0], values)).toThrow(/tile 0 \(row 0, col 0\) was added twice/);
    expect(() => stitcher.add(plan.tiles[1], new Float32Array(10))).toThrow(/expected 64\^2 = 4096/);
    expect(() => stitcher.finish()).toThrow(/tile 1 \(row 0, col 1\) was never added/);
  });

  it('has positive blending weights everywhere', () => {
    for (const window of ['gaussian', 'linear', 'uniform'] as const) {
      expect(Math.min(...blendWeights(128, 32, window))).toBeGreaterThan(0);
    }
  });
});
