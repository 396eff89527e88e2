/**
 * Issue 14, the math of attribution: integrated gradients are exact on linear models ((x - x') * w),
 * complete on a really (briefly) trained U-Net (sum of attributions = F(x) - F(x') within 1% at 50
 * steps), leak no tensors over a loop; S_k counts and scales with the pixel size squared; windows
 * clip at the borders; the pixel sampler returns true/false positives and false negatives that are.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LabeledImages, readImage, toFloatImage, type Mask } from '@emseg/data';
import { resnetEncoder } from '@emseg/models';
import { tensorCountGuard, tf, type Tensor1D, type Tensor4D } from '@emseg/tf';
import {
  attributionAreas,
  attributionWindow,
  cutEdgeMax,
  fieldPixels,
  integratedGradients,
  makeBaseline,
  normalizeField,
  pixelTarget,
  samplePixels,
  summarizeAreas,
  trapezoid,
} from '../src/attribution.js';
import { finetune } from '@emseg/segmentation';
import { Segmenter } from '@emseg/segmentation';
import { loadTrainingSamples } from '../src/tasks/urisc.js';
import { taskFor, tempDir, tinyConfig, tinyUrisc } from './helpers.js';

/** A seeded pseudo-random window of grey values in [0, 1]. */
function randomWindow(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 32;
  }
  return out;
}

describe('trapezoid rule', () => {
  it('puts half weight on both ends and sums to 1', () => {
    const { alphas, weights } = trapezoid(4);
    expect([...alphas]).toEqual([0, 0.25, 0.5, 0.75, 1]);
    expect([...weights]).toEqual([0.125, 0.25, 0.25, 0.25, 0.125]);
    expect(() => trapezoid(0)).toThrow(/steps/);
  });
});

describe('integrated gradients on linear models', () => {
  it("a dense layer: IG = (x - x') * w exactly", async () => {
    const h = 8;
    const w = 6;
    const weights = randomWindow(h * w, 3).map((v) => v * 2 - 1);
    const kernel = tf.tensor2d(weights, [h * w, 1]);
    const target = (images: Tensor4D) =>
      tf.tidy(
        () =>
          images
            .reshape([-1, h * w])
            .matMul(kernel)
            .add(0.7)
            .reshape([-1]) as Tensor1D,
      );
    const x = randomWindow(h * w, 5);
    const base = makeBaseline(x, w, h, 'blur', { blurSigma: 1 });
    const ig = await integratedGradients(target, x, base, h, w, { steps: 3, batch: 2 });
    for (let i = 0; i < x.length; i++) expect(ig.attribution[i]).toBeCloseTo((x[i] - base[i]) * weights[i], 5);
    expect(ig.sum).toBeCloseTo(ig.target - ig.baselineTarget, 4);
    kernel.dispose();
  });

  it("a single 5 x 5 convolution: IG at one output pixel = (x - x') * the kernel around it, 0 elsewhere", async () => {
    const size = 16;
    const k = 5;
    const r = 2;
    const weights = randomWindow(k * k, 11).map((v) => v - 0.5);
    const kernel = tf.tensor4d(weights, [k, k, 1, 1]);
    const px = 7;
    const py = 9;
    const target = (images: Tensor4D) => tf.tidy(() => tf.conv2d(images, kernel, 1, 'same').slice([0, py, px, 0], [-1, 1, 1, 1]).reshape([-1]) as Tensor1D);
    const x = randomWindow(size * size, 13);
    const base = makeBaseline(x, size, size, 'black');
    const ig = await integratedGradients(target, x, base, size, size, { steps: 1, batch: 4 });
    for (let y = 0; y < size; y++) {
      for (let xx = 0; xx < size; xx++) {
        const dy = y - py + r;
        const dx = xx - px + r;
        const inside = dy >= 0 && dy < k && dx >= 0 && dx < k;
        const expected = inside ? x[y * size + xx] * weights[dy * k + dx] : 0;
        expect(ig.attribution[y * size + xx]).toBeCloseTo(expected, 6);
      }
    }
    kernel.dispose();
  });
});

describe('S_k', () => {
  it('counts the pixels of a hand-made field above k', () => {
    // 10 x 10 field: one peak 1, a ring of 0.5, a few at 0.03, negatives that never count
    const field = new Float32Array(100);
    field[55] = 4;
    for (const i of [44, 45, 46, 54, 56, 64, 65, 66]) field[i] = 2;
    for (const i of [0, 9, 90]) field[i] = 0.12;
    for (const i of [1, 2]) field[i] = -4;
    const { field: n, maxAbs } = normalizeField(field);
    expect(maxAbs).toBe(4);
    expect(Math.min(...n)).toBe(-1);
    expect(Math.max(...n)).toBe(1);
    expect(fieldPixels(n, 0.01)).toBe(12);
    expect(fieldPixels(n, 0.05)).toBe(9);
    expect(fieldPixels(n, 0.5)).toBe(1); // strictly above k: the ring at exactly 0.5 is out
    expect(attributionAreas(n, [0.01, 0.05], 2.18)).toEqual([
      { k: 0.01, pixels: 12, nm2: 12 * 2.18 * 2.18 },
      { k: 0.05, pixels: 9, nm2: 9 * 2.18 * 2.18 },
    ]);
    expect(normalizeField(new Float32Array(4)).field).toEqual(new Float32Array(4));
  });

  it('scales with the pixel size squared', () => {
    const n = normalizeField(randomWindow(400, 17).map((v) => v - 0.3)).field;
    const a = attributionAreas(n, [0.01, 0.05], 2.18);
    const b = attributionAreas(n, [0.01, 0.05], 4.36);
    for (let i = 0; i < a.length; i++) {
      expect(b[i].pixels).toBe(a[i].pixels);
      expect(b[i].nm2 / a[i].nm2).toBeCloseTo(4, 10);
    }
    expect(() => attributionAreas(n, [0.01], 0)).toThrow(/pixel size/);
  });

  it('summarises mean, sample std and n per class', () => {
    const rec = (cls: 'tp' | 'fp', nm2: number) => ({ cls, areas: [{ k: 0.01, pixels: nm2, nm2 }] });
    const s = summarizeAreas([rec('tp', 10), rec('tp', 20), rec('fp', 7)], [0.01]);
    expect(s).toEqual([
      { cls: 'tp', k: 0.01, n: 2, meanPixels: 15, meanNm2: 15, stdNm2: Math.sqrt(50) },
      { cls: 'fp', k: 0.01, n: 1, meanPixels: 7, meanNm2: 7, stdNm2: 0 },
    ]);
  });
});

describe('attribution windows', () => {
  it('centre the pixel, shift inside the image at the borders and shrink to a multiple of 32', () => {
    expect(attributionWindow(500, 500, 1000, 1000, 512)).toEqual({ x: 244, y: 244, width: 512, height: 512 });
    expect(attributionWindow(10, 990, 1000, 1000, 512)).toEqual({ x: 0, y: 488, width: 512, height: 512 });
    expect(attributionWindow(50, 50, 300, 100, 512)).toEqual({ x: 0, y: 2, width: 288, height: 96 });
    expect(attributionWindow(5, 5, 20, 100, 512)).toBeNull();
  });

  it('tell when the field is cut by a window edge inside the image, not by the image border', () => {
    const field = new Float32Array(16); // 4 x 4 window
    field[0] = 0.5; // top-left corner: on the top and left edges
    const inside = { x: 10, y: 10, width: 4, height: 4 };
    expect(cutEdgeMax(field, inside, 100, 100)).toBe(0.5);
    expect(cutEdgeMax(field, { ...inside, x: 0, y: 0 }, 100, 100)).toBe(0); // those edges are the image's
    field[15] = -0.7; // bottom-right
    expect(cutEdgeMax(field, { ...inside, x: 0, y: 0 }, 100, 100)).toBeCloseTo(0.7, 6);
    expect(cutEdgeMax(field, { x: 96, y: 96, width: 4, height: 4 }, 100, 100)).toBe(0.5);
  });
});

describe('the pixel sampler', () => {
  it('returns true positives, false positives and false negatives that really are, at most N each, seeded', () => {
    const width = 40;
    const height = 30;
    const pred = new Uint8Array(width * height);
    const truth = new Uint8Array(width * height);
    const g = randomWindow(width * height * 2, 23);
    for (let i = 0; i < pred.length; i++) {
      pred[i] = g[i] < 0.3 ? 1 : 0;
      truth[i] = g[pred.length + i] < 0.3 ? 1 : 0;
    }
    const predicted: Mask = { width, height, data: pred };
    const label: Mask = { width, height, data: truth };
    const picked = samplePixels(predicted, label, 5, 7);
    for (const cls of ['tp', 'fp', 'fn'] as const) expect(picked.filter((p) => p.cls === cls)).toHaveLength(5);
    for (const p of picked) {
      const i = p.y * width + p.x;
      expect([pred[i], truth[i]]).toEqual(p.cls === 'tp' ? [1, 1] : p.cls === 'fp' ? [1, 0] : [0, 1]);
    }
    expect(samplePixels(predicted, label, 5, 7)).toEqual(picked);
    expect(samplePixels(predicted, label, 5, 8)).not.toEqual(picked);
    // a class with fewer pixels than N gives all of them
    const one: Mask = { width: 3, height: 1, data: Uint8Array.of(1, 0, 0) };
    const oneTruth: Mask = { width: 3, height: 1, data: Uint8Array.of(1, 1, 0) };
    expect(samplePixels(one, oneTruth, 5, 1)).toEqual([
      { x: 0, y: 0, cls: 'tp' },
      { x: 1, y: 0, cls: 'fn' },
    ]);
    expect(() => samplePixels(one, predicted, 1, 1)).toThrow(/differ in size/);
  });
});

describe('integrated gradients of a trained tiny U-Net', () => {
  const tmp = tempDir('attribution');
  let segmenter: Segmenter;
  let window: Float32Array;
  let confident: { x: number; y: number };
  const size = 64;

  beforeAll(async () => {
    const ds = await tinyUrisc(join(tmp.dir, 'data'), { count: { train: 2, val: 0, test: 1 } });
    const cfg = tinyConfig(['train.steps=40']);
    const samples = await loadTrainingSamples(await LabeledImages.open(ds.splits.train), cfg.patches.size, 0.5);
    const fresh = Segmenter.create(
      resnetEncoder({ depth: 18, seed: 1 }),
      { mean: [0.5], std: [0.2] },
      { encoderSource: 'random', encoderRunId: null },
      { decoderChannels: cfg.model.decoderChannels, seed: 2 },
    );
    let modelDir: string;
    try {
      modelDir = (await finetune({ cfg, task: taskFor(cfg), segmenter: fresh, train: samples, validation: null, outDir: join(tmp.dir, 'run') })).modelDir;
    } finally {
      fresh.dispose();
    }
    segmenter = Segmenter.load(modelDir);
    const image = await readImage(join(ds.splits.test.images, `${ds.splits.test.names[0]}.png`), { region: { x: 16, y: 16, width: size, height: size } });
    window = toFloatImage(image).data;
    // the most confident membrane pixel of the window: a large F(x) - F(x') (briefly trained models
    // are rough along the path, and a small difference makes the relative error meaningless)
    const logits = tf.tidy(() => segmenter.forward(tf.tensor4d(window, [1, size, size, 1]), false));
    const values = logits.dataSync();
    logits.dispose();
    let best = 0;
    for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
    confident = { x: best % size, y: Math.floor(best / size) };
  }, 300_000);

  afterAll(() => {
    segmenter?.dispose();
    tmp.cleanup();
  });

  it("is complete: the attributions sum to F(x) - F(x') within 1% at >= 50 steps (logit and probability, three baselines)", async () => {
    // the paper's baseline (zero in normalised space) meets 1% at 50 steps; from black the path crosses
    // more ReLU kinks and needs more steps
    for (const [kind, baseline, steps] of [
      ['logit', 'mean', 50],
      ['logit', 'black', 400],
      ['probability', 'blur', 300],
    ] as const) {
      const base = makeBaseline(window, size, size, baseline, { mean: 0.5 });
      const ig = await integratedGradients(pixelTarget(segmenter, confident.x, confident.y, kind), window, base, size, size, { steps, batch: 8 });
      const difference = ig.target - ig.baselineTarget;
      console.log(
        `completeness, ${kind} from ${baseline}, ${steps} steps: sum ${ig.sum.toFixed(5)}, F(x) - F(x') ${difference.toFixed(5)}, error ${((Math.abs(ig.sum - difference) / Math.abs(difference)) * 100).toFixed(3)}%`,
      );
      expect(Math.abs(difference)).toBeGreaterThan(0.05);
      expect(Math.abs(ig.sum - difference) / Math.abs(difference), `${kind} from ${baseline}: sum ${ig.sum}, F(x) - F(x') ${difference}`).toBeLessThan(0.01);
    }
  }, 300_000);

  it('batches give the same attribution as one image at a time', async () => {
    const base = makeBaseline(window, size, size, 'black');
    const a = await integratedGradients(pixelTarget(segmenter, 10, 50), window, base, size, size, { steps: 6, batch: 7 });
    const b = await integratedGradients(pixelTarget(segmenter, 10, 50), window, base, size, size, { steps: 6, batch: 1 });
    let worst = 0;
    let scale = 0;
    for (let i = 0; i < a.attribution.length; i++) {
      worst = Math.max(worst, Math.abs(a.attribution[i] - b.attribution[i]));
      scale = Math.max(scale, Math.abs(b.attribution[i]));
    }
    expect(worst).toBeLessThan(1e-4 * scale + 1e-7);
  }, 120_000);

  it('leaks no tensors over a loop of attributions', async () => {
    const base = makeBaseline(window, size, size, 'mean', { mean: 0.5 });
    await integratedGradients(pixelTarget(segmenter, 5, 5), window, base, size, size, { steps: 2, batch: 2 }); // warm-up
    const guard = tensorCountGuard();
    for (let i = 0; i < 4; i++)
      await integratedGradients(pixelTarget(segmenter, 8 * i, 60 - 8 * i, i % 2 ? 'probability' : 'logit'), window, base, size, size, { steps: 4, batch: 3 });
    expect(guard.leaked()).toBe(0);
    // a failing target (pixel outside the output) leaks nothing either
    await expect(integratedGradients(pixelTarget(segmenter, size, 0), window, base, size, size, { steps: 2, batch: 2 })).rejects.toThrow(/outside/);
    expect(guard.leaked()).toBe(0);
  }, 120_000);
});
