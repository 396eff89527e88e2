import { describe, expect, it } from 'vitest';
import {
  adaptedRandError,
  isbiBinaryScores,
  isbiRandError,
  isbiScores,
  isbiThresholds,
  labelComponents4,
  type Mask,
  skeletonize,
  variationOfInformation,
} from '@emseg/evaluation';
import { f32, i32, type JsonImage, loadFixture, maskFromRows, u8 } from './helpers.js';

interface Fixture {
  components: { mask: JsonImage; labels: JsonImage };
  labels: {
    true: JsonImage;
    test: JsonImage;
    adaptedRand: { error: number; precision: number; recall: number };
    vi: { splits: number; merges: number };
    viIgnore0: { splits: number; merges: number };
  };
  thinning: { mask: JsonImage; skeleton: JsonImage }[];
  isbi: {
    cellProbability: JsonImage;
    trueCells: JsonImage;
    curve: { threshold: number; vRand: number; vInfo: number; vRandNoThinning: number }[];
  }[];
}

const fx = loadFixture<Fixture>('metrics.json');

function invert(m: Mask): Mask {
  return { width: m.width, height: m.height, data: m.data.map((v) => (v ? 0 : 1)) };
}

describe('4-connected components', () => {
  it('match skimage.measure.label(connectivity=1), numbering included', () => {
    const { labels, count } = labelComponents4(u8(fx.components.mask));
    expect(Array.from(labels)).toEqual(fx.components.labels.data);
    expect(count).toBe(Math.max(...fx.components.labels.data));
  });

  it('do not join diagonal neighbours', () => {
    expect(labelComponents4(maskFromRows(['#.', '.#'])).count).toBe(2);
    expect(labelComponents4(maskFromRows(['##', '.#'])).count).toBe(1);
    expect(labelComponents4(maskFromRows(['#.#', '###'])).count).toBe(1); // U shape joined below
  });
});

describe('ImageJ skeletonize', () => {
  fx.thinning.forEach((c, k) => {
    it(`matches the restatement of ImageJ's BinaryProcessor (case ${k})`, () => {
      expect(Array.from(skeletonize(u8(c.mask)).data)).toEqual(c.skeleton.data);
    });
  });

  it('thins a 3-pixel-wide bar to a 1-pixel-wide line and keeps a 1-pixel line', () => {
    const bar = maskFromRows(['.........', '.#######.', '.#######.', '.#######.', '.........']);
    const s = skeletonize(bar);
    const at = (x: number, y: number) => s.data[y * 9 + x] !== 0;
    let set = 0;
    for (let y = 0; y < 5; y++) for (let x = 0; x < 9; x++) if (at(x, y)) set++;
    expect(set).toBeGreaterThanOrEqual(5);
    expect(set).toBeLessThanOrEqual(7);
    // one pixel wide: no 2 x 2 block of skeleton pixels, and still one 8-connected piece
    for (let y = 0; y < 4; y++) for (let x = 0; x < 8; x++) expect(at(x, y) && at(x + 1, y) && at(x, y + 1) && at(x + 1, y + 1)).toBe(false);
    expect(labelComponents4(s).count).toBeLessThanOrEqual(2);
    const line = maskFromRows(['.....', '#####', '.....']);
    expect(Array.from(skeletonize(line).data)).toEqual(Array.from(line.data));
  });
});

describe('label-image metrics against scikit-image', () => {
  const t = i32(fx.labels.true);
  const s = i32(fx.labels.test);

  it('adapted_rand_error', () => {
    const r = adaptedRandError(t, s);
    expect(r.error).toBeCloseTo(fx.labels.adaptedRand.error, 12);
    // scikit-image 0.26 returns (error, C / sum a^2, C / sum b^2) with a the *true* segment sizes,
    // the reverse of its docstring; ours follow the docstring (precision against the test image)
    expect(r.precision).toBeCloseTo(fx.labels.adaptedRand.recall, 12);
    expect(r.recall).toBeCloseTo(fx.labels.adaptedRand.precision, 12);
  });

  it('adapted Rand precision is about the test image: a pure split keeps precision 1', () => {
    const truth = { width: 4, height: 1, data: Int32Array.of(1, 1, 1, 1) };
    const split = { width: 4, height: 1, data: Int32Array.of(1, 1, 2, 2) };
    const r = adaptedRandError(truth, split);
    expect(r.precision).toBe(1);
    expect(r.recall).toBeCloseTo(1 / 3, 15);
  });

  it('variation_of_information, with and without ignoring label 0', () => {
    const vi = variationOfInformation(t, s);
    expect(vi.splits).toBeCloseTo(fx.labels.vi.splits, 12);
    expect(vi.merges).toBeCloseTo(fx.labels.vi.merges, 12);
    const vi0 = variationOfInformation(t, s, [0]);
    expect(vi0.splits).toBeCloseTo(fx.labels.viIgnore0.splits, 12);
    expect(vi0.merges).toBeCloseTo(fx.labels.viIgnore0.merges, 12);
  });

  it('identical segmentations score perfectly', () => {
    expect(adaptedRandError(t, t).error).toBeCloseTo(0, 15);
    expect(variationOfInformation(t, t).total).toBeCloseTo(0, 15);
  });
});

describe('ISBI 2012 V_Rand / V_Info', () => {
  fx.isbi.forEach((c, k) => {
    it(`match Fiji's definitions (scikit-image contingency, singletons) at every threshold (case ${k})`, () => {
      const slice = { cellProbability: f32(c.cellProbability), trueCells: u8(c.trueCells) };
      const thinned = isbiScores(slice);
      const plain = isbiScores(slice, { thinning: false });
      expect(thinned.curve.map((p) => p.threshold)).toEqual(c.curve.map((p) => p.threshold));
      c.curve.forEach((want, j) => {
        expect(thinned.curve[j].vRand).toBeCloseTo(want.vRand, 12);
        expect(thinned.curve[j].vInfo).toBeCloseTo(want.vInfo, 12);
        expect(plain.curve[j].vRand).toBeCloseTo(want.vRandNoThinning, 12);
      });
      expect(thinned.vRand).toBeCloseTo(Math.max(...c.curve.map((p) => p.vRand)), 12);
      expect(thinned.vInfo).toBeCloseTo(Math.max(...c.curve.map((p) => p.vInfo)), 12);
      expect(isbiRandError(slice)).toBeCloseTo(1 - Math.max(...c.curve.map((p) => p.vRandNoThinning)), 12);
    });
  });

  it('averages per-slice scores over slices at each threshold', () => {
    const slices = fx.isbi
      .slice(0, 1)
      .concat(fx.isbi.slice(0, 1))
      .map((c) => ({
        cellProbability: f32(c.cellProbability),
        trueCells: u8(c.trueCells),
      }));
    const two = isbiScores(slices);
    const one = isbiScores(slices[0]);
    two.curve.forEach((p, j) => expect(p.vRand).toBeCloseTo(one.curve[j].vRand, 14));
  });

  it('known levels only skip thresholds that binarize identically', () => {
    // a 3-level map: thresholds in [0, 0.25) and [0.25, 0.75) and [0.75, 1) each binarize alike
    const c = fx.isbi[0];
    const p = f32(c.cellProbability);
    const data = p.data.map((v) => (v < 0.3 ? 0 : v < 0.7 ? 0.5 : 1));
    const slice = { cellProbability: { ...p, data }, trueCells: u8(c.trueCells) };
    const plain = isbiScores(slice);
    const fast = isbiScores(slice, { levels: [0, 0.5, 1] });
    expect(fast.curve).toEqual(plain.curve);
  });

  it("uses Java's accumulated thresholds: 11 values, the last just below 1", () => {
    const ts = isbiThresholds();
    expect(ts).toHaveLength(11);
    expect(ts[3]).toBe(0.30000000000000004);
    expect(ts[10]).toBe(0.9999999999999999);
  });

  // Hand-computed: two true cells of 4 pixels each, separated by a one-pixel membrane column.
  const trueCells = maskFromRows(['##.##', '##.##']);
  const trueBoundary = invert(trueCells);

  it('a perfect proposal scores 1', () => {
    const s = isbiBinaryScores(trueBoundary, trueCells);
    expect(s.rand.vRand).toBe(1);
    expect(s.info.vInfo).toBeCloseTo(1, 15);
  });

  it('a proposal merging both cells: merge score sum c^2 / sum b^2 = 32 / 64', () => {
    const s = isbiBinaryScores(maskFromRows(['.....', '.....']), trueCells);
    expect(s.rand.merge).toBe(0.5);
    expect(s.rand.split).toBe(1);
    expect(s.rand.vRand).toBeCloseTo(2 / 3, 15);
    // H(S) = 0: Fiji scores merge 1, split 0 -> V_Info 0
    expect(s.info.vInfo).toBe(0);
  });

  it('boundary pixels inside true cells are singletons', () => {
    // proposal boundary at column 1 (inside the left cell) and column 2; no thinning
    const boundary = maskFromRows(['.##..', '.##..']);
    const s = isbiBinaryScores(boundary, trueCells, false);
    // left cell: 2 px in proposal segment A, 2 singletons; right cell: 4 px in segment B
    // sum c^2 + S = 4 + 16 + 2 = 22; sum b^2 + S = 4 + 16 + 2 = 22; sum a^2 = 32
    expect(s.rand.merge).toBe(1);
    expect(s.rand.split).toBe(22 / 32);
  });

  it('an all-boundary proposal makes every pixel a singleton', () => {
    const s = isbiBinaryScores(maskFromRows(['#####', '#####']), trueCells, false);
    // no pair is joined: merge 1, split = n / sum a^2 = 8 / 32
    expect([s.rand.merge, s.rand.split]).toEqual([1, 0.25]);
    // I = H(T) = log 2, H(S) = log 8: merge 1, split 1/3, V_Info 1/2
    expect(s.info.merge).toBeCloseTo(1, 14);
    expect(s.info.split).toBeCloseTo(1 / 3, 14);
    expect(s.info.vInfo).toBeCloseTo(0.5, 14);
  });

  it('an empty ground-truth foreground scores 0, a single true cell has V_Info 0', () => {
    const none = maskFromRows(['.....', '.....']);
    expect(isbiBinaryScores(maskFromRows(['#####', '#####']), none).rand.vRand).toBe(0);
    const one = maskFromRows(['#####', '#####']);
    const s = isbiBinaryScores(maskFromRows(['.....', '.....']), one);
    expect(s.rand.vRand).toBe(1);
    expect(s.info.vInfo).toBe(0);
  });

  it('a single-pixel image', () => {
    const cell = maskFromRows(['#']);
    expect(isbiBinaryScores(maskFromRows(['.']), cell).rand.vRand).toBe(1);
    // the only pixel is proposal boundary: one singleton, which is the whole truth
    expect(isbiBinaryScores(maskFromRows(['#']), cell).rand.vRand).toBe(1);
  });

  it('rejects mismatched slices', () => {
    expect(() => isbiScores({ cellProbability: { width: 2, height: 1, data: Float32Array.of(1, 1) }, trueCells })).toThrow(
      /size mismatch: slice 0 cell probability map is 2 x 1 but slice 0 true cell mask is 5 x 2/,
    );
  });
});
