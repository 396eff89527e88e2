import { describe, expect, it } from 'vitest';
import { assd, definitionCriteria, edt, surfaceMask } from '@emseg/evaluation';
import { type JsonImage, loadFixture, maskFromRows, u8 } from './helpers.js';

interface Fixture {
  edt: { features: JsonImage; distance: JsonImage };
  assd: {
    pred: JsonImage;
    gt: JsonImage;
    assd: number;
    predictionToTruth: number;
    truthToPrediction: number;
    predictedSurfacePixels: number;
    trueSurfacePixels: number;
  };
  definition: {
    image: JsonImage;
    brenner: number;
    smd2: number;
    variance: number;
    vollath: number;
    brennerMean: number;
    smd2Mean: number;
    varianceMean: number;
    vollathMean: number;
  };
}

const fx = loadFixture<Fixture>('metrics.json');

describe('exact Euclidean distance transform', () => {
  it('equals scipy.ndimage.distance_transform_edt bit for bit', () => {
    const d = edt(u8(fx.edt.features));
    expect(Array.from(d.data)).toEqual(fx.edt.distance.data);
  });

  it('hand-computed: distances along a row and a knight move', () => {
    expect(Array.from(edt(maskFromRows(['#...'])).data)).toEqual([0, 1, 2, 3]);
    const d = edt(maskFromRows(['#..', '...']));
    expect(d.data[1 * 3 + 2]).toBe(Math.sqrt(5));
  });

  it('no feature at all: Infinity everywhere; every pixel a feature: 0', () => {
    expect(Array.from(edt(maskFromRows(['...', '...'])).data).every((v) => v === Infinity)).toBe(true);
    expect(Array.from(edt(maskFromRows(['##', '##'])).data)).toEqual([0, 0, 0, 0]);
  });

  it('a tall image (features far away vertically) and a single pixel', () => {
    const rows = Array.from({ length: 300 }, (_, y) => (y === 0 ? '#' : '.'));
    const d = edt(maskFromRows(rows));
    expect(d.data[299]).toBe(299);
    expect(Array.from(edt(maskFromRows(['#'])).data)).toEqual([0]);
  });
});

describe('ASSD', () => {
  it('matches the scipy reference (erosion surfaces, exact EDT)', () => {
    const r = assd(u8(fx.assd.pred), u8(fx.assd.gt), { pixelSizeNm: 2.18 });
    expect(r.predictedSurfacePixels).toBe(fx.assd.predictedSurfacePixels);
    expect(r.trueSurfacePixels).toBe(fx.assd.trueSurfacePixels);
    expect(r.assd).toBeCloseTo(fx.assd.assd, 12);
    expect(r.predictionToTruth).toBeCloseTo(fx.assd.predictionToTruth, 12);
    expect(r.truthToPrediction).toBeCloseTo(fx.assd.truthToPrediction, 12);
    expect(r.assdNm).toBeCloseTo(fx.assd.assd * 2.18, 10);
  });

  it('hand-computed: two vertical lines two pixels apart', () => {
    const a = maskFromRows(['#....', '#....', '#....']);
    const b = maskFromRows(['..#..', '..#..', '..#..']);
    const r = assd(a, b, { pixelSizeNm: 2 });
    expect([r.assd, r.predictionToTruth, r.truthToPrediction, r.assdNm]).toEqual([2, 2, 2, 4]);
  });

  it('asymmetric case: a single predicted pixel on a true line', () => {
    const line = maskFromRows(['###']);
    const dot = maskFromRows(['#..']);
    const r = assd(dot, line);
    // dot -> line: 0; line -> dot: 0 + 1 + 2; ASSD = 3 / 4
    expect([r.predictionToTruth, r.truthToPrediction, r.assd]).toEqual([0, 1, 0.75]);
  });

  it('surfaces are the boundary: the inside of a blob does not count', () => {
    const blob = maskFromRows(['.....', '.###.', '.###.', '.###.', '.....']);
    expect(Array.from(surfaceMask(blob).data).reduce((s, v) => s + v, 0)).toBe(8);
    expect(assd(blob, blob).assd).toBe(0);
  });

  it('all membrane against a single true pixel: the surface of a full image is its border', () => {
    const all = maskFromRows(['###', '###', '###']);
    const centre = maskFromRows(['...', '.#.', '...']);
    const r = assd(all, centre);
    expect(r.predictedSurfacePixels).toBe(8);
    expect(r.predictionToTruth).toBeCloseTo((4 + 4 * Math.SQRT2) / 8, 14);
    expect(r.truthToPrediction).toBe(1);
    expect(r.assd).toBeCloseTo((4 + 4 * Math.SQRT2 + 1) / 9, 14);
  });

  it('far-apart surfaces (the envelope fallback) agree with the full transform', () => {
    // one true pixel in a corner of a 120 x 90 image; predicted membrane spread everywhere
    const w = 120;
    const h = 90;
    const gt = new Uint8Array(w * h);
    gt[0] = 1;
    const pred = new Uint8Array(w * h).map((_, i) => (i % 7 === 0 || i % 11 === 0 ? 1 : 0));
    const r = assd({ width: w, height: h, data: pred }, { width: w, height: h, data: gt });
    const surface = surfaceMask({ width: w, height: h, data: pred });
    const dist = edt({ width: w, height: h, data: gt }).data;
    let sum = 0;
    let n = 0;
    surface.data.forEach((v, i) => {
      if (v) {
        sum += dist[i];
        n++;
      }
    });
    expect(r.predictedSurfacePixels).toBe(n);
    expect(r.predictionToTruth).toBeCloseTo(sum / n, 12);
  });

  it('empty masks: both empty 0, one empty Infinity', () => {
    const empty = maskFromRows(['...']);
    expect(assd(empty, empty).assd).toBe(0);
    expect(assd(empty, maskFromRows(['#..'])).assd).toBe(Infinity);
    expect(assd(maskFromRows(['###']), empty).assd).toBe(Infinity);
  });
});

describe('image definition criteria', () => {
  it('match the NumPy statement of the four sums and their means', () => {
    const c = definitionCriteria(u8(fx.definition.image));
    for (const k of ['brenner', 'smd2', 'variance', 'vollath', 'brennerMean', 'smd2Mean', 'varianceMean', 'vollathMean'] as const) {
      expect(c[k], k).toBeCloseTo(fx.definition[k], k.startsWith('vollath') ? 6 : 9);
    }
  });

  it('hand-computed on a 3 x 2 image', () => {
    // f = [[0, 1, 4], [2, 2, 2]]: mu = 11/6
    const c = definitionCriteria({ width: 3, height: 2, data: Uint8Array.of(0, 1, 4, 2, 2, 2) });
    expect(c.brenner).toBe(16); // (4-0)^2 + (2-2)^2
    expect(c.smd2).toBe(2 + 3); // |0-1|*|0-2| + |1-4|*|1-2|
    expect(c.variance).toBeCloseTo(0 + 1 + 16 + 4 * 3 - 6 * (11 / 6) ** 2, 12);
    expect(c.vollath).toBeCloseTo(0 * 1 + 1 * 4 + 2 * 2 + 2 * 2 - 6 * (11 / 6) ** 2, 12);
    expect(c.brennerMean).toBe(8);
    expect(c.smd2Mean).toBe(2.5);
  });

  it('a flat image is perfectly undefined: every criterion 0', () => {
    const c = definitionCriteria({ width: 4, height: 3, data: new Uint8Array(12).fill(7) });
    expect([c.brenner, c.smd2, c.variance]).toEqual([0, 0, 0]);
    expect(c.vollath).toBeCloseTo(7 * 7 * 9 - 12 * 49, 9);
  });

  it('rejects images too small to have the differences', () => {
    expect(() => definitionCriteria({ width: 2, height: 2, data: new Uint8Array(4) })).toThrow(/at least 3 x 2/);
  });
});
