import { describe, expect, it } from 'vitest';
import { bestThresholdF1, pixelScores, thresholdScores } from '@emseg/evaluation';
import { f32, type JsonImage, loadFixture, maskFromRows, u8 } from './helpers.js';

interface PixelCase {
  pred: JsonImage;
  gt: JsonImage;
  tp: number;
  fp: number;
  fn: number;
  tn: number;
  precision: number;
  recall: number;
  f1: number;
  iou: number;
  pixelError: number;
}

interface Fixture {
  pixel: PixelCase[];
  sweep: { prob: JsonImage; gt: JsonImage; thresholds: number[]; f1: number[] };
}

const fx = loadFixture<Fixture>('metrics.json');

describe('pixelScores against scikit-learn', () => {
  fx.pixel.forEach((c, k) => {
    it(`case ${k}`, () => {
      const s = pixelScores(u8(c.pred), u8(c.gt));
      expect([s.truePositives, s.falsePositives, s.falseNegatives, s.trueNegatives]).toEqual([c.tp, c.fp, c.fn, c.tn]);
      expect(s.precision).toBeCloseTo(c.precision, 14);
      expect(s.recall).toBeCloseTo(c.recall, 14);
      expect(s.f1).toBeCloseTo(c.f1, 14);
      expect(s.iou).toBeCloseTo(c.iou, 14);
      expect(s.pixelError).toBeCloseTo(c.pixelError, 14);
    });
  });
});

describe('pixelScores on hand-computed cases', () => {
  const truth = maskFromRows(['##..', '....']);

  it('counts a partial overlap', () => {
    const s = pixelScores(maskFromRows(['.##.', '....']), truth);
    expect(s).toMatchObject({ truePositives: 1, falsePositives: 1, falseNegatives: 1, trueNegatives: 5 });
    expect([s.precision, s.recall, s.f1, s.iou, s.pixelError]).toEqual([0.5, 0.5, 0.5, 1 / 3, 0.25]);
  });

  it('empty prediction: precision 1, recall 0, F1 0', () => {
    expect(pixelScores(maskFromRows(['....', '....']), truth)).toMatchObject({ precision: 1, recall: 0, f1: 0, iou: 0 });
  });

  it('empty truth: precision 0, recall 1, F1 0', () => {
    expect(pixelScores(truth, maskFromRows(['....', '....']))).toMatchObject({ precision: 0, recall: 1, f1: 0, iou: 0 });
  });

  it('both empty: everything 1, no error', () => {
    const empty = maskFromRows(['....', '....']);
    expect(pixelScores(empty, empty)).toMatchObject({ precision: 1, recall: 1, f1: 1, iou: 1, pixelError: 0 });
  });

  it('all membrane against partial truth', () => {
    const s = pixelScores(maskFromRows(['####', '####']), truth);
    expect([s.precision, s.recall, s.iou, s.pixelError]).toEqual([0.25, 1, 0.25, 0.75]);
  });

  it('a single pixel', () => {
    const one = maskFromRows(['#']);
    expect(pixelScores(one, one).f1).toBe(1);
    expect(pixelScores(one, maskFromRows(['.'])).f1).toBe(0);
  });

  it('rejects masks of different sizes or malformed data', () => {
    expect(() => pixelScores(maskFromRows(['##']), truth)).toThrow(/size mismatch: predicted membrane mask is 2 x 1/);
    expect(() => pixelScores({ width: 3, height: 3, data: new Uint8Array(8) }, truth)).toThrow(/data has 8 values, expected width \* height = 3 \* 3 = 9/);
  });
});

describe('threshold sweep', () => {
  it('matches scikit-learn f1_score of p >= t at every threshold', () => {
    const prob = f32(fx.sweep.prob);
    const gt = u8(fx.sweep.gt);
    const sweep = bestThresholdF1(prob, gt, fx.sweep.thresholds);
    expect(sweep.curve.map((p) => p.threshold)).toEqual(fx.sweep.thresholds);
    sweep.curve.forEach((p, k) => expect(p.f1).toBeCloseTo(fx.sweep.f1[k], 12));
    const bestF1 = Math.max(...fx.sweep.f1);
    expect(sweep.best.f1).toBeCloseTo(bestF1, 12);
    expect(sweep.best.threshold).toBe(fx.sweep.thresholds[fx.sweep.f1.indexOf(bestF1)]);
    // the one-pass sweep agrees with thresholding each time
    const t = sweep.best.threshold;
    const { threshold: _t, ...fromSweep } = sweep.best;
    expect(thresholdScores(prob, gt, t)).toEqual(fromSweep);
  });

  it('counts values equal to a threshold as membrane and handles unsorted thresholds', () => {
    // values exactly representable in float32, so p >= t is decided on the stated numbers
    const prob = { width: 4, height: 1, data: Float32Array.of(0.25, 0.5, 0.5, 0.75) };
    const gt = maskFromRows(['.##.']);
    const sweep = bestThresholdF1(prob, gt, [0.75, 0.5, 0.125]);
    expect(sweep.curve.map((p) => p.threshold)).toEqual([0.125, 0.5, 0.75]);
    expect(sweep.curve.map((p) => p.truePositives + p.falsePositives)).toEqual([4, 3, 1]);
    expect(sweep.best.threshold).toBe(0.5);
    expect(sweep.best.f1).toBeCloseTo(0.8, 15);
  });

  it('rejects an empty threshold list', () => {
    expect(() => bestThresholdF1({ width: 1, height: 1, data: Float32Array.of(0) }, maskFromRows(['#']), [])).toThrow(/thresholds must not be empty/);
  });
});
