import { describe, expect, it } from 'vitest';
import { classScores, image, pooledClassScores, type ClassMap } from '@emseg/evaluation';
import { loadFixture } from './helpers.js';

/** Expected values of one case, from make_instance_fixtures.py (scikit-learn, null = NaN). */
interface ClassCase {
  name: string;
  width: number;
  height: number;
  /** Run-length encoded class ids, [value, count, ...], row-major. */
  true: number[];
  pred: number[];
  classes: number[] | null;
  ignore: number | null;
  zeroDivision: number | null;
  expected: {
    classes: number[];
    iou: (number | null)[];
    dice: (number | null)[];
    precision: (number | null)[];
    recall: (number | null)[];
    support: number[];
    predicted: number[];
    present: boolean[];
    meanIoU: number;
    meanDice: number;
    meanPrecision: number;
    meanRecall: number;
    accuracy: number;
    pixels: number;
  };
}

const fx = loadFixture<{ classes: ClassCase[] }>('instances.json');

function decodeRuns(runs: number[]): number[] {
  const out: number[] = [];
  for (let k = 0; k < runs.length; k += 2) for (let n = 0; n < runs[k + 1]; n++) out.push(runs[k]);
  return out;
}

function classMap(c: ClassCase, runs: number[]): ClassMap {
  const values = decodeRuns(runs);
  const wide = values.some((v) => v > 255);
  return image(c.width, c.height, wide ? Uint16Array.from(values) : Uint8Array.from(values));
}

/** `actual` within 1e-12 of `expected`, or NaN where the fixture has null. */
function expectClose(actual: number, expected: number | null): void {
  if (expected === null) expect(actual).toBeNaN();
  else expect(actual).toBeCloseTo(expected, 12);
}

describe('classScores against scikit-learn', () => {
  for (const c of fx.classes) {
    it(c.name, () => {
      const s = classScores(classMap(c, c.true), classMap(c, c.pred), {
        ...(c.classes !== null && { classes: c.classes }),
        ...(c.ignore !== null && { ignoreValue: c.ignore }),
        zeroDivision: c.zeroDivision ?? NaN,
      });
      const e = c.expected;
      expect(s.perClass.map((k) => k.classId)).toEqual(e.classes);
      expect(s.perClass.map((k) => k.truePixels)).toEqual(e.support);
      expect(s.perClass.map((k) => k.predictedPixels)).toEqual(e.predicted);
      expect(s.perClass.map((k) => k.present)).toEqual(e.present);
      s.perClass.forEach((k, i) => {
        expect(k.truePositives + k.falseNegatives).toBe(k.truePixels);
        expect(k.truePositives + k.falsePositives).toBe(k.predictedPixels);
        expectClose(k.iou, e.iou[i]);
        expectClose(k.dice, e.dice[i]);
        expectClose(k.precision, e.precision[i]);
        expectClose(k.recall, e.recall[i]);
      });
      expect(s.presentClasses).toBe(e.present.filter(Boolean).length);
      expectClose(s.meanIoU, e.meanIoU);
      expectClose(s.meanDice, e.meanDice);
      expectClose(s.meanPrecision, e.meanPrecision);
      expectClose(s.meanRecall, e.meanRecall);
      expectClose(s.pixelAccuracy, e.accuracy);
      expect(s.pixels).toBe(e.pixels);
    });
  }

  it('pooledClassScores of a map cut into row bands equals scikit-learn on the whole map, for every case', () => {
    for (const c of fx.classes) {
      const t = classMap(c, c.true);
      const p = classMap(c, c.pred);
      const options = {
        classes: c.expected.classes,
        ...(c.ignore !== null && { ignoreValue: c.ignore }),
        zeroDivision: c.zeroDivision ?? NaN,
      };
      // three bands of unequal height, so a class can be absent from one band and present in another
      const cuts = [0, Math.floor(c.height / 5), Math.floor((c.height * 3) / 5), c.height];
      const band = (m: ClassMap, k: number) => image(c.width, cuts[k + 1] - cuts[k], m.data.slice(cuts[k] * c.width, cuts[k + 1] * c.width));
      const pooled = pooledClassScores(
        [0, 1, 2].map((k) => classScores(band(t, k), band(p, k), options)),
        options.zeroDivision,
      );
      const e = c.expected;
      pooled.perClass.forEach((k, i) => {
        expectClose(k.iou, e.iou[i]);
        expectClose(k.dice, e.dice[i]);
        expectClose(k.precision, e.precision[i]);
        expectClose(k.recall, e.recall[i]);
      });
      expectClose(pooled.meanIoU, e.meanIoU);
      expectClose(pooled.meanDice, e.meanDice);
      expectClose(pooled.pixelAccuracy, e.accuracy);
      expect(pooled.pixels).toBe(e.pixels);
    }
    expect(() => pooledClassScores([])).toThrow(/no scores/);
  });

  it('the fixture exercises every 0 / 0 rule', () => {
    const cases = fx.classes.map((c) => c.expected);
    expect(cases.some((e) => e.present.includes(false))).toBe(true); // absent from both maps
    expect(cases.some((e) => e.support.some((n, i) => n > 0 && e.predicted[i] === 0))).toBe(true); // precision 0 / 0
    expect(cases.some((e) => e.support.some((n, i) => n === 0 && e.predicted[i] > 0))).toBe(true); // recall 0 / 0
  });
});

describe('classScores conventions on hand-made maps', () => {
  const t = image(4, 2, Uint8Array.of(0, 0, 1, 1, 2, 2, 2, 9));
  const p = image(4, 2, Uint8Array.of(0, 1, 1, 1, 2, 2, 0, 9));

  it('per-class counts and scores', () => {
    const s = classScores(t, p);
    expect(s.perClass.map((c) => [c.classId, c.truePositives, c.falsePositives, c.falseNegatives])).toEqual([
      [0, 1, 1, 1],
      [1, 2, 1, 0],
      [2, 2, 0, 1],
      [9, 1, 0, 0],
    ]);
    expect(s.perClass[1]).toMatchObject({ iou: 2 / 3, dice: 0.8, precision: 2 / 3, recall: 1 });
    expect(s.meanIoU).toBeCloseTo((1 / 3 + 2 / 3 + 2 / 3 + 1) / 4, 15);
    expect(s.pixelAccuracy).toBe(6 / 8);
  });

  it('a class absent from both maps gets zeroDivision and stays out of the means', () => {
    const base = classScores(t, p);
    for (const zeroDivision of [0, 1, NaN]) {
      const s = classScores(t, p, { classes: [0, 1, 2, 9, 5], zeroDivision });
      const absent = s.perClass[4];
      expect(absent).toMatchObject({ classId: 5, present: false, truePixels: 0, predictedPixels: 0 });
      for (const v of [absent.iou, absent.dice, absent.precision, absent.recall]) expect(v).toBe(zeroDivision);
      expect(s.presentClasses).toBe(4);
      expect([s.meanIoU, s.meanDice, s.meanPrecision, s.meanRecall]).toEqual([base.meanIoU, base.meanDice, base.meanPrecision, base.meanRecall]);
    }
  });

  it('ignoreValue drops pixels by their true class; predicted there, it is a miss of the true class', () => {
    const s = classScores(t, p, { ignoreValue: 9 });
    expect(s.pixels).toBe(7);
    expect(s.perClass.map((c) => c.classId)).toEqual([0, 1, 2]);
    const q = classScores(image(2, 1, Uint8Array.of(1, 1)), image(2, 1, Uint8Array.of(1, 255)), { ignoreValue: 255 });
    expect(q.perClass).toEqual([
      {
        classId: 1,
        truePixels: 2,
        predictedPixels: 1,
        truePositives: 1,
        falsePositives: 0,
        falseNegatives: 1,
        present: true,
        iou: 0.5,
        dice: 2 / 3,
        precision: 1,
        recall: 0.5,
      },
    ]);
  });

  it('nothing left to score: NaN means and accuracy', () => {
    const s = classScores(image(2, 1, Uint8Array.of(255, 255)), image(2, 1, Uint8Array.of(0, 1)), { ignoreValue: 255 });
    expect(s.perClass).toEqual([]);
    expect(s.pixels).toBe(0);
    expect(s.meanIoU).toBeNaN();
    expect(s.pixelAccuracy).toBeNaN();
  });

  it('handles Int32 class ids, negative ones included', () => {
    const s = classScores(image(3, 1, Int32Array.of(-1, 70000, 70000)), image(3, 1, Int32Array.of(-1, 70000, -1)));
    expect(s.perClass.map((c) => [c.classId, c.iou])).toEqual([
      [-1, 0.5],
      [70000, 0.5],
    ]);
  });
});

describe('classScores rejects bad input', () => {
  const t = image(3, 2, Uint8Array.of(0, 1, 1, 0, 2, 2));

  it('size mismatch, naming both maps', () => {
    expect(() => classScores(t, image(2, 3, new Uint8Array(6)))).toThrow(/size mismatch: true class map is 3 x 2 but predicted class map is 2 x 3/);
    expect(() => classScores(t, { width: 3, height: 2, data: new Uint8Array(5) })).toThrow(
      /predicted class map: data has 5 values, expected width \* height = 3 \* 2 = 6/,
    );
  });

  it('non-integer class values, naming the map and the pixel', () => {
    const floats: ClassMap = { width: 3, height: 2, data: Float32Array.of(0, 1, 1, 0, 0.5, 2) as unknown as Uint8Array };
    expect(() => classScores(t, floats)).toThrow(/predicted class map must hold integer class ids; pixel 4 \(x 1, y 1\) has 2 \(true\) and 0.5 \(predicted\)/);
    expect(() => classScores(floats, t)).toThrow(/true class map must hold integer class ids/);
  });

  it('bad options', () => {
    expect(() => classScores(t, t, { zeroDivision: 0.5 })).toThrow(/zeroDivision must be 0, 1 or NaN, got 0.5/);
    expect(() => classScores(t, t, { classes: [0, 1, 1] })).toThrow(/classes lists 1 twice/);
    expect(() => classScores(t, t, { classes: [0, 255], ignoreValue: 255 })).toThrow(/classes must not contain the ignore value 255/);
    expect(() => classScores(t, t, { classes: [0.5] })).toThrow(/classes must be integers, got 0.5/);
    expect(() => classScores(t, t, { ignoreValue: 1.5 })).toThrow(/ignoreValue must be an integer, got 1.5/);
  });
});
