/**
 * The generic segmentation core: full-image inference (tiling is invisible: one tile = the plain
 * forward pass, overlapping tiles blend without seams; flip TTA averages correctly flipped-back
 * predictions; images smaller than a tile are refused by name; 16-bit probability maps), and
 * validation through a task's hooks (its sample check runs first, its score of the thresholded
 * prediction is what the evaluation reports).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSyntheticUrisc, LabeledImages, readImage, tilePlan, uriscDirectories, type GreyImage, type SyntheticUriscDataset } from '@emseg/data';
import { resnetEncoder } from '@emseg/models';
import {
  evaluateSegmenter,
  pixelTask,
  predictImage,
  Segmenter,
  tileCount,
  toProbability16,
  type InferenceOptions,
  type PredictedSample,
} from '@emseg/segmentation';

const tmp = mkdtempSync(join(tmpdir(), 'emseg-segmentation-'));
let segmenter: Segmenter;
let image: GreyImage;
let small: GreyImage;
let ds: SyntheticUriscDataset;

beforeAll(async () => {
  ds = await generateSyntheticUrisc({ dir: join(tmp, 'data'), seed: 7, count: { train: 2, val: 0, test: 0 }, size: 256, cellSize: 80, lowContrastFraction: 0 });
  image = await readImage(join(ds.splits.train.images, 'train-000.png'));
  small = { width: 128, height: 128, bitDepth: 8, data: new Uint8Array(128 * 128) };
  for (let y = 0; y < 128; y++) small.data.set(image.data.subarray(y * 256 + 40, y * 256 + 168), y * 128);
  segmenter = Segmenter.create(
    resnetEncoder({ depth: 18, seed: 5 }),
    { mean: [0.55], std: [0.2] },
    { encoderSource: 'random', encoderRunId: null },
    { decoderChannels: [32, 16, 16, 8, 8], seed: 6 },
  );
});

afterAll(() => {
  segmenter?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

const floats = (img: GreyImage) => Float32Array.from(img.data, (v) => v / 255);
const maxAbs = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
const base: InferenceOptions = { tileSize: 128, overlap: 0, window: 'gaussian', batchSize: 1, flipTta: false };

/** out[y][x] = in[y][w - 1 - x] (horizontal) and/or rows reversed (vertical). */
function flip(values: Float32Array, w: number, h: number, horizontal: boolean, vertical: boolean): Float32Array {
  const out = new Float32Array(values.length);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out[y * w + x] = values[(vertical ? h - 1 - y : y) * w + (horizontal ? w - 1 - x : x)];
  return out;
}

describe('predictImage', () => {
  it('equals the untiled forward pass on an image that fits one tile', async () => {
    const tiled = await predictImage(segmenter, small, base);
    const direct = segmenter.probabilities(floats(small), 1, 128, false);
    expect(tiled.length).toBe(128 * 128);
    expect(maxAbs(tiled, direct)).toBeLessThan(1e-6);
    // not trivially constant
    expect(Math.max(...tiled) - Math.min(...tiled)).toBeGreaterThan(0.01);
  });

  it('flip TTA is the mean of the four flipped predictions, each flipped back', async () => {
    const tta = await predictImage(segmenter, small, { ...base, flipTta: true });
    const x = floats(small);
    const sum = new Float32Array(x.length);
    for (const [h, v] of [
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ] as const) {
      const p = flip(segmenter.probabilities(flip(x, 128, 128, h, v), 1, 128, false), 128, 128, h, v);
      p.forEach((value, i) => (sum[i] += value / 4));
    }
    expect(maxAbs(tta, sum)).toBeLessThan(1e-5);
    expect(maxAbs(tta, await predictImage(segmenter, small, base))).toBeGreaterThan(1e-3);
  });

  it('blends overlapping tiles without seams at the tile borders', async () => {
    const options: InferenceOptions = { ...base, overlap: 64, window: 'gaussian', batchSize: 4 };
    const tiled = await predictImage(segmenter, image, options);
    const averaged = await predictImage(segmenter, image, { ...options, window: 'uniform' });
    const whole = segmenter.probabilities(floats(image), 1, 256, false);
    const { width, height } = image;
    const plan = tilePlan(width, height, { tileSize: 128, overlap: 64 });
    expect(tileCount(width, height, options)).toBe(plan.tiles.length);
    // columns where a tile begins or ends inside the image
    const borders = new Set(plan.xs.flatMap((x) => [x, x + 128]).filter((c) => c > 0 && c < width));
    const jump = (p: Float32Array, c: number) => {
      let s = 0;
      for (let y = 0; y < height; y++) s += Math.abs(p[y * width + c] - p[y * width + c - 1]);
      return s / height;
    };
    // the same statistic on the untiled prediction is the image's own variation at those columns
    const excess = [...borders].map((c) => jump(tiled, c) - jump(whole, c));
    const typical = Array.from({ length: width - 1 }, (_, c) => jump(whole, c + 1)).reduce((a, b) => a + b, 0) / (width - 1);
    process.stderr.write(`seams: typical column step ${typical.toFixed(4)}, excess at tile borders ${excess.map((e) => e.toFixed(4)).join(' ')}\n`);
    for (const e of excess) expect(e).toBeLessThan(0.5 * typical);
    // control: plain averaging of the same tiles does show seams to this statistic
    const averagedExcess = [...borders].map((c) => jump(averaged, c) - jump(whole, c));
    process.stderr.write(`seams with uniform averaging: ${averagedExcess.map((e) => e.toFixed(4)).join(' ')}\n`);
    expect(Math.max(...averagedExcess)).toBeGreaterThan(0.5 * typical);
    // and the blended map stays close to the untiled prediction overall
    const meanAbs = tiled.reduce((s, v, i) => s + Math.abs(v - whole[i]), 0) / tiled.length;
    expect(meanAbs).toBeLessThan(0.05);
  });

  it('refuses an image smaller than a tile, naming it and a tile size that fits', async () => {
    const tiny: GreyImage = { width: 100, height: 90, bitDepth: 8, data: new Uint8Array(100 * 90) };
    await expect(predictImage(segmenter, tiny, base, 'scans/tiny.png')).rejects.toThrow(
      'scans/tiny.png: is 100 x 90 pixels, smaller than the inference tile (128 x 128); expected images of at least 128 x 128 pixels, or a smaller tile (--tile-size 64)',
    );
  });
});

describe('probability maps', () => {
  it('stores probabilities as 16-bit values p * 65535, clamped', () => {
    expect(Array.from(toProbability16(Float32Array.of(0, 0.5, 1, 1.2, -0.1), 5, 1).data)).toEqual([0, 32768, 65535, 65535, 0]);
  });
});

describe('evaluateSegmenter with a task', () => {
  const open = () => LabeledImages.open({ ...uriscDirectories(ds.root, 'train', ds.track), polarity: 'black-foreground', threshold: 128 });

  it("reports the task's score of the thresholded prediction, after the task's check of each sample", async () => {
    const images = await open();
    const calls: string[] = [];
    const seen: PredictedSample[] = [];
    const result = await evaluateSegmenter(segmenter, images, {
      inference: { ...base, tileSize: 256 },
      threshold: 0.4,
      task: {
        name: 'probe',
        metric: 'iou',
        checkSample: (pair) => calls.push(`check ${pair.name}`),
        scoreImage: (p) => {
          calls.push(`score ${p.pair.name}`);
          seen.push(p);
          return { score: p.pair.name.endsWith('0') ? 0.1 : 0.3, f1: p.pair.name.endsWith('0') ? 0.2 : 0.6, precision: 0.5, recall: 0.25, rejected: null };
        },
      },
    });
    expect(calls).toEqual(['check train-000', 'score train-000', 'check train-001', 'score train-001']);
    expect(result.f1).toBeCloseTo(0.4, 12);
    // the task's own metric is averaged beside F1 and named
    expect(result.metric).toBe('iou');
    expect(result.score).toBeCloseTo(0.2, 12);
    expect([result.precision, result.recall]).toEqual([0.5, 0.25]);
    for (const p of seen) {
      expect(p.threshold).toBe(0.4);
      expect(p.binary.every((b, i) => b === (p.probability[i] >= 0.4 ? 1 : 0))).toBe(true);
      const fraction = p.binary.reduce((n, b) => n + b, 0) / p.binary.length;
      expect(result.images.find((r) => r.name === p.pair.name)?.predictedForeground).toBeCloseTo(fraction, 12);
    }
  });

  it("stops at the task's check, naming the file", async () => {
    const images = await open();
    const task = {
      ...pixelTask,
      checkSample: (pair: { label: string }) => {
        throw new Error(`${pair.label}: not a label this task reads`);
      },
    };
    await expect(evaluateSegmenter(segmenter, images, { inference: { ...base, tileSize: 256 }, threshold: 0.5, task })).rejects.toThrow(
      /label\/Track1\/train\/train-000\.tiff: not a label/,
    );
  });

  it('pixelTask scores the plain pixel F1 of the thresholded prediction', async () => {
    const images = await open();
    const result = await evaluateSegmenter(segmenter, images, { inference: { ...base, tileSize: 256 }, threshold: 0.5, task: pixelTask });
    const sample = await images.load(0);
    const p = await predictImage(segmenter, sample.image, { ...base, tileSize: 256 });
    let tp = 0,
      fp = 0,
      fn = 0;
    for (let i = 0; i < p.length; i++) {
      const pred = p[i] >= 0.5,
        truth = sample.mask.data[i] !== 0;
      tp += pred && truth ? 1 : 0;
      fp += pred && !truth ? 1 : 0;
      fn += !pred && truth ? 1 : 0;
    }
    const f1 = tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn);
    expect(result.images[0].f1).toBeCloseTo(f1, 10);
    expect(result.images[0].rejected).toBeNull();
  });
});
