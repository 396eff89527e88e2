import { describe, expect, it } from 'vitest';
import { detectionScores, instanceOverlaps, instanceScores, type InstanceLabels, type LabelImage } from '@emseg/evaluation';
import { decodeRuns, loadFixture } from './helpers.js';

/** Expected values of one case, from make_instance_fixtures.py (Kirillov matching, IoU > t). */
interface InstanceCase {
  name: string;
  width: number;
  height: number;
  depth?: number;
  /** Run-length encoded ids, [value, count, ...], row-major. */
  true: number[];
  pred: number[];
  expected: {
    trueInstances: number;
    predictedInstances: number;
    tp: number;
    fp: number;
    fn: number;
    pq: number;
    sq: number;
    rq: number;
    matches: [number, number][];
    detection: { threshold: number; tp: number; fp: number; fn: number; precision: number; recall: number; f1: number }[];
    /** TP of empanada's assignment with IoU >= 0.5, recorded for comparison. */
    hungarianTp50: number;
  };
}

const fx = loadFixture<{ instances: InstanceCase[] }>('instances.json');

function labels(c: InstanceCase, which: 'true' | 'pred'): InstanceLabels {
  const { width, height, depth } = c;
  // truths as unsigned storage (Uint32 for the volume), predictions (ids up to 2^31 - 1) as Int32
  const data =
    which === 'pred'
      ? decodeRuns(c.pred, (n) => new Int32Array(n))
      : depth
        ? decodeRuns(c.true, (n) => new Uint32Array(n))
        : decodeRuns(c.true, (n) => new Uint16Array(n));
  return depth === undefined ? { width, height, data } : { width, height, depth, data };
}

const byName = (name: string) => fx.instances.find((c) => c.name === name)!;

describe('instanceScores against the NumPy restatement of Kirillov et al. (panopticapi)', () => {
  for (const c of fx.instances) {
    it(c.name, () => {
      const s = instanceScores(labels(c, 'true'), labels(c, 'pred'));
      const e = c.expected;
      expect([s.trueInstances, s.predictedInstances]).toEqual([e.trueInstances, e.predictedInstances]);
      expect([s.truePositives, s.falsePositives, s.falseNegatives]).toEqual([e.tp, e.fp, e.fn]);
      expect(s.matches.map((m) => [m.trueId, m.predictedId])).toEqual(e.matches);
      expect(s.pq).toBeCloseTo(e.pq, 12);
      expect(s.sq).toBeCloseTo(e.sq, 12);
      expect(s.rq).toBeCloseTo(e.rq, 12);
      expect(Math.abs(s.pq - s.sq * s.rq)).toBeLessThan(1e-15);
      expect(s.detection.map((d) => d.threshold)).toEqual([0.5, 0.75]);
      s.detection.forEach((d, k) => {
        const ed = e.detection[k];
        expect(d.threshold).toBe(ed.threshold);
        expect([d.truePositives, d.falsePositives, d.falseNegatives]).toEqual([ed.tp, ed.fp, ed.fn]);
        expect(d.precision).toBeCloseTo(ed.precision, 12);
        expect(d.recall).toBeCloseTo(ed.recall, 12);
        expect(d.f1).toBeCloseTo(ed.f1, 12);
      });
      expect(s.f1At50).toBeCloseTo(e.detection[0].f1, 12);
      expect(s.f1At75).toBeCloseTo(e.detection[1].f1, 12);
      expect(s.f1At50).toBe(s.rq);
    });
  }

  it('covers 3D and non-trivial matches at both thresholds', () => {
    const v = byName('3d-perturbed');
    expect(v.depth).toBe(16);
    expect(v.expected.detection[0].tp).toBeGreaterThan(v.expected.detection[1].tp);
    expect(v.expected.detection[1].tp).toBeGreaterThan(0);
  });
});

describe('empty and degenerate cases (empanada conventions)', () => {
  it('empty truth: precision 0, recall 1, F1 = PQ = SQ = RQ = 0', () => {
    const s = instanceScores(labels(byName('empty-truth'), 'true'), labels(byName('empty-truth'), 'pred'));
    expect(s).toMatchObject({ truePositives: 0, falsePositives: 2, falseNegatives: 0, pq: 0, sq: 0, rq: 0, f1At50: 0, f1At75: 0 });
    expect(s.detection[0]).toMatchObject({ precision: 0, recall: 1, f1: 0 });
  });

  it('empty prediction: precision 1, recall 0, F1 = PQ = 0', () => {
    const s = instanceScores(labels(byName('empty-prediction'), 'true'), labels(byName('empty-prediction'), 'pred'));
    expect(s).toMatchObject({ truePositives: 0, falsePositives: 0, falseNegatives: 2, pq: 0, sq: 0, rq: 0 });
    expect(s.detection[0]).toMatchObject({ precision: 1, recall: 0, f1: 0 });
  });

  it('both empty: everything 1', () => {
    const s = instanceScores(labels(byName('both-empty'), 'true'), labels(byName('both-empty'), 'pred'));
    expect(s).toMatchObject({ truePositives: 0, falsePositives: 0, falseNegatives: 0, pq: 1, sq: 1, rq: 1, f1At50: 1, f1At75: 1 });
    expect(s.detection[1]).toMatchObject({ precision: 1, recall: 1, f1: 1 });
  });

  it('one instance split in two: the 60% part matches at 0.5, nothing at 0.75', () => {
    const s = instanceScores(labels(byName('big-instance-split-in-two'), 'true'), labels(byName('big-instance-split-in-two'), 'pred'));
    expect(s.matches).toEqual([{ trueId: 1, predictedId: 4, intersection: 48, iou: 0.6 }]);
    expect([s.truePositives, s.falsePositives, s.falseNegatives, s.sq, s.rq]).toEqual([1, 1, 0, 0.6, 1 / 1.5]);
    expect(s.pq).toBeCloseTo(0.4, 15);
    expect(s.f1At75).toBe(0);
  });

  it('IoU exactly at the threshold is not a match (IoU > t), unlike empanada`s IoU >= t', () => {
    const c = byName('iou-exactly-half');
    const s = instanceScores(labels(c, 'true'), labels(c, 'pred'));
    expect(s.matches.map((m) => m.iou)).toEqual([0.75]);
    expect(s.truePositives).toBe(1);
    expect(s.detection[1].truePositives).toBe(0);
    expect(c.expected.hungarianTp50).toBe(2);
  });

  it('keeps an IoU > 0.5 pair that a maximum-IoU assignment gives up', () => {
    const c = byName('assignment-drops-a-match');
    const s = instanceScores(labels(c, 'true'), labels(c, 'pred'));
    expect(s.matches).toEqual([{ trueId: 1, predictedId: 2, intersection: 70, iou: 70 / 137 }]);
    expect(c.expected.hungarianTp50).toBe(0);
  });
});

describe('instanceScores on hand-made images', () => {
  const truth: LabelImage = { width: 4, height: 2, data: Uint8Array.of(1, 1, 0, 2, 1, 1, 0, 2) };

  it('accepts a LabelImage, any id values, and is symmetric in FP / FN', () => {
    const pred = { width: 4, height: 2, data: Uint32Array.of(4000000000, 4000000000, 0, 0, 4000000000, 0, 0, 0) };
    const s = instanceScores(truth, pred);
    expect(s.matches).toEqual([{ trueId: 1, predictedId: 4000000000, intersection: 3, iou: 0.75 }]);
    expect([s.truePositives, s.falsePositives, s.falseNegatives]).toEqual([1, 0, 1]);
    const r = instanceScores(pred, truth);
    expect([r.truePositives, r.falsePositives, r.falseNegatives]).toEqual([1, 1, 0]);
    expect(r.pq).toBe(s.pq);
  });

  it('is unchanged by relabelling the prediction', () => {
    const c = byName('2d-merge-split');
    const pred = labels(c, 'pred');
    const ids = [...new Set(pred.data)].filter((v) => v !== 0);
    const renamed = new Map(ids.map((v, k) => [v, ids.length - k]));
    const data = Int32Array.from(pred.data, (v) => (v === 0 ? 0 : renamed.get(v)!));
    const a = instanceScores(labels(c, 'true'), pred);
    const b = instanceScores(labels(c, 'true'), { ...pred, data });
    expect([b.pq, b.sq, b.rq, b.f1At75]).toEqual([a.pq, a.sq, a.rq, a.f1At75]);
  });

  it('counts the intersection table and sizes in voxels of a volume', () => {
    const t = { width: 2, height: 1, depth: 3, data: Uint16Array.of(1, 1, 1, 0, 2, 2) };
    const p = { width: 2, height: 1, depth: 3, data: Int32Array.of(5, 5, 6, 6, 6, 0) };
    const table = instanceOverlaps(t, p);
    expect([...table.trueSizes]).toEqual([
      [1, 3],
      [2, 2],
    ]);
    expect([...table.predictedSizes]).toEqual([
      [5, 2],
      [6, 3],
    ]);
    expect(table.overlaps.map((o) => [o.trueId, o.predictedId, o.intersection])).toEqual([
      [1, 5, 2],
      [1, 6, 1],
      [2, 6, 1],
    ]);
    expect(detectionScores(table, 0.6)).toMatchObject({ truePositives: 1, falsePositives: 1, falseNegatives: 1 });
  });

  it('reports the requested thresholds in order', () => {
    const c = byName('2d-perturbed');
    const s = instanceScores(labels(c, 'true'), labels(c, 'pred'), { thresholds: [0.9, 0.5, 1] });
    expect(s.detection.map((d) => d.threshold)).toEqual([0.9, 0.5, 1]);
    expect(s.detection[1].f1).toBe(s.f1At50);
    expect(s.detection[2].truePositives).toBe(0);
  });
});

describe('instanceScores rejects bad input', () => {
  const t = { width: 3, height: 2, data: Uint16Array.of(0, 1, 1, 0, 2, 2) };

  it('size mismatch, naming both shapes', () => {
    expect(() => instanceScores(t, { width: 2, height: 3, data: new Int32Array(6) })).toThrow(
      /size mismatch: true instance labels \(3 x 2 x 1\) and predicted instance labels \(2 x 3 x 1\) differ \(width x height x depth\)/,
    );
    expect(() => instanceScores({ ...t, depth: 1 }, { width: 3, height: 2, depth: 2, data: new Int32Array(12) })).toThrow(
      /size mismatch: .*\(3 x 2 x 1\) .*\(3 x 2 x 2\)/,
    );
  });

  it('data length not width * height * depth', () => {
    expect(() => instanceScores({ width: 3, height: 2, depth: 2, data: new Uint16Array(6) }, t)).toThrow(
      /true instance labels: data has 6 values, expected width \* height \* depth = 3 \* 2 \* 2 = 12/,
    );
    expect(() => instanceScores(t, { width: 0, height: 2, data: new Int32Array(0) })).toThrow(
      /predicted instance labels: width, height and depth must be positive integers/,
    );
  });

  it('non-integer and negative ids, naming the image and the position', () => {
    const floats = { width: 3, height: 2, data: Float32Array.of(0, 1, 1, 0, 2.5, 2) as unknown as Uint16Array };
    expect(() => instanceScores(floats, t)).toThrow(/true instance labels must hold non-negative integer ids \(0 = background\); value 4 \(x 1, y 1\) is 2.5/);
    const nan = { width: 3, height: 2, data: Float64Array.of(0, 1, 1, 0, 2, NaN) as unknown as Int32Array };
    expect(() => instanceScores(t, nan)).toThrow(/predicted instance labels must hold non-negative integer ids .* value 5 \(x 2, y 1\) is NaN/);
    const negative = { width: 1, height: 1, depth: 2, data: Int32Array.of(3, -1) };
    expect(() => instanceScores({ width: 1, height: 1, depth: 2, data: Int32Array.of(1, 1) }, negative)).toThrow(
      /predicted instance labels .* value 1 \(x 0, y 0, z 1\) is -1/,
    );
  });

  it('thresholds outside [0.5, 1]', () => {
    expect(() => instanceScores(t, t, { thresholds: [0.3] })).toThrow(/IoU threshold must be in \[0.5, 1\] .* got 0.3/);
    expect(() => detectionScores(instanceOverlaps(t, t), NaN)).toThrow(/got NaN/);
  });
});
