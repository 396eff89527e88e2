import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { EvaluationInputError, pairImageFolders, readGrey8, uriscF1, uriscFolderScore, UriscFormatError } from '@emseg/evaluation';
import { FIXTURES, greyFromRows, type JsonImage, loadFixture } from './helpers.js';

interface UriscFixture {
  images: Record<string, { groundTruth: string; f1: number; precision: number; recall: number }>;
  meanF1: number;
  bad: Record<string, { error?: string; f1?: number; precision?: number; recall?: number }>;
  badGroundTruth: string;
}

const urisc = loadFixture<UriscFixture>('urisc.json');
const tmp = mkdtempSync(join(tmpdir(), 'emseg-eval-urisc-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('readGrey8 decodes like cv2.imread(path, 0)', () => {
  const decoded = loadFixture<Record<string, JsonImage>>('decode.json');
  for (const [name, expected] of Object.entries(decoded)) {
    it(name, async () => {
      const img = await readGrey8(join(FIXTURES, 'decode', name));
      expect([img.width, img.height]).toEqual([expected.width, expected.height]);
      expect(Array.from(img.data)).toEqual(expected.data);
    });
  }

  it('names the file it cannot read or decode', async () => {
    await expect(readGrey8(join(tmp, 'nope.png'))).rejects.toThrow(/cannot read image .*nope\.png: file not found/);
    const junk = join(tmp, 'junk.png');
    writeFileSync(junk, 'this is not a PNG');
    await expect(readGrey8(junk)).rejects.toThrow(EvaluationInputError);
    await expect(readGrey8(junk)).rejects.toThrow(/cannot decode image .*junk\.png/);
  });

  it('refuses a multi-page TIFF stack instead of scoring its first page', async () => {
    const page = (v: number) =>
      sharp({ create: { width: 8, height: 8, channels: 3, background: { r: v, g: v, b: v } } })
        .png()
        .toBuffer();
    const stack = join(tmp, 'stack.tif');
    await sharp(await Promise.all([page(0), page(255), page(0)]), { join: { animated: true } })
      .tiff()
      .toFile(stack);
    await expect(readGrey8(stack)).rejects.toThrow(/stack\.tif: it is a multi-page TIFF stack \(3 pages\)/);
  });
});

describe('uriscF1 against a restatement of the competition script', () => {
  it('scores each fixture pair exactly and the folder as the mean of per-image F', async () => {
    const result = await uriscFolderScore(join(FIXTURES, 'urisc', 'pred'), join(FIXTURES, 'urisc', 'gt'));
    expect(result.images.map((r) => r.name)).toEqual(Object.keys(urisc.images).sort());
    for (const r of result.images) {
      const want = urisc.images[r.name];
      expect(r.groundTruth.endsWith(want.groundTruth)).toBe(true);
      // same integer sums and float64 divisions as numpy: bit-identical
      expect(r.f1).toBe(want.f1);
      expect(r.precision).toBe(want.precision);
      expect(r.recall).toBe(want.recall);
    }
    expect(result.meanF1).toBeCloseTo(urisc.meanF1, 15);
  });

  it('rejects what the script rejects, with its meaning, naming the file', async () => {
    const gt = await readGrey8(join(FIXTURES, 'urisc', 'gt', urisc.badGroundTruth));
    for (const [name, want] of Object.entries(urisc.bad)) {
      const path = join(FIXTURES, 'urisc', 'bad', name);
      const pred = await readGrey8(path);
      if (want.error === undefined) {
        const s = uriscF1(pred, gt, { prediction: path });
        expect([s.f1, s.precision, s.recall]).toEqual([want.f1, want.precision, want.recall]);
        continue;
      }
      let caught: unknown;
      try {
        uriscF1(pred, gt, { prediction: path });
      } catch (err) {
        caught = err;
      }
      expect(caught, name).toBeInstanceOf(UriscFormatError);
      const err = caught as UriscFormatError;
      expect(err.file).toBe(path);
      expect(err.message).toContain(path);
      expect(err.message).toMatch(want.error === 'not-binary' ? /not binarized: 5 distinct grey values/ : /ratio .* below 5/);
    }
  });
});

describe('uriscF1 on hand-computed cases', () => {
  // 1 x 12 strips: '#' membrane (0), '.' background (255), digits = grey 25*d
  const truth = greyFromRows(['##..........']);

  it('counts exact overlap', () => {
    const s = uriscF1(greyFromRows(['.#..........']), truth);
    expect(s.precision).toBe(1);
    expect(s.recall).toBe(0.5);
    expect(s.f1).toBeCloseTo(2 / 3, 15);
    expect(s.predictedMembranePixels).toBe(1);
    expect(s.predictedBackgroundPixels).toBe(11);
  });

  it('weights a non-binary ground truth by its inverted grey value', () => {
    // gt pixel 1 is grey 200 -> inverted 55: recall = (255 + 55 * [pred]) / (255 + 55)
    const gt = greyFromRows(['#8..........']);
    const s = uriscF1(greyFromRows(['#...........']), gt);
    expect(s.precision).toBe(1); // the predicted pixel lies on gt != 255
    expect(s.recall).toBe(255 / 310);
  });

  it('empty prediction, non-empty truth: P = 1, R = 0, F = 0', () => {
    expect(uriscF1(greyFromRows(['............']), truth)).toMatchObject({ precision: 1, recall: 0, f1: 0 });
  });

  it('non-empty prediction, empty truth: P = 0, R = 1, F = 0', () => {
    expect(uriscF1(greyFromRows(['#...........']), greyFromRows(['............']))).toMatchObject({
      precision: 0,
      recall: 1,
      f1: 0,
    });
  });

  it('both empty: P = R = F = 1', () => {
    const empty = greyFromRows(['............']);
    expect(uriscF1(empty, empty)).toMatchObject({ precision: 1, recall: 1, f1: 1 });
  });

  it('a single membrane pixel, hit and missed', () => {
    const one = greyFromRows(['.....#......']);
    expect(uriscF1(one, one).f1).toBe(1);
    expect(uriscF1(one, greyFromRows(['......#.....'])).f1).toBe(0);
  });

  it('all membrane is rejected: background must be at least 5x membrane', () => {
    expect(() => uriscF1(greyFromRows(['############']), truth)).toThrow(/ratio is 0\.000 .* below 5/);
    // exactly 5x passes (10 background, 2 membrane)
    expect(() => uriscF1(greyFromRows(['##..........']), truth)).not.toThrow();
    // 4.5x fails (9 background, 2 membrane)
    expect(() => uriscF1(greyFromRows(['##.........']), greyFromRows(['...........']))).toThrow(UriscFormatError);
  });

  it('a two-valued prediction other than 0/255 is checked like the script: no black pixel is rejected', () => {
    expect(() => uriscF1(greyFromRows(['4...........']), truth)).toThrow(/no membrane pixel/);
  });

  it('size mismatch names both images', () => {
    expect(() => uriscF1(greyFromRows(['#....']), truth, { prediction: 'p.png', groundTruth: 'g.png' })).toThrow(
      /size mismatch: p\.png is 5 x 1 but g\.png is 12 x 1/,
    );
  });
});

describe('folder pairing', () => {
  function folder(name: string, files: string[]): string {
    const dir = join(tmp, name);
    mkdirSync(dir, { recursive: true });
    for (const f of files) copyFileSync(join(FIXTURES, 'urisc', 'pred', 'img01.png'), join(dir, f));
    return dir;
  }

  it('pairs by name, allowing a different image extension', async () => {
    const pairs = await pairImageFolders(folder('p1', ['a.png', 'b.png']), folder('g1', ['a.png', 'b.tif']));
    expect(pairs.map((p) => [p.name, p.groundTruth.slice(-5)])).toEqual([
      ['a.png', 'a.png'],
      ['b.png', 'b.tif'],
    ]);
  });

  it('a prediction without ground truth is an error naming the file', async () => {
    await expect(pairImageFolders(folder('p2', ['a.png', 'c.png']), folder('g2', ['a.png']))).rejects.toThrow(
      /missing ground truth for prediction .*p2\/c\.png/,
    );
  });

  it('a ground truth without prediction is an error unless told to ignore it, as the script does', async () => {
    const p = folder('p3', ['a.png']);
    const g = folder('g3', ['a.png', 'z.png']);
    await expect(pairImageFolders(p, g)).rejects.toThrow(/missing prediction for ground truth .*g3\/z\.png/);
    expect(await pairImageFolders(p, g, { ignoreUnpairedGroundTruth: true })).toHaveLength(1);
  });

  it('ambiguous partners and missing folders are errors', async () => {
    await expect(pairImageFolders(folder('p4', ['a.png']), folder('g4', ['a.tif', 'a.tiff']))).rejects.toThrow(/ambiguous ground truth/);
    await expect(pairImageFolders(join(tmp, 'absent'), folder('g5', ['a.png']))).rejects.toThrow(/cannot list prediction folder .*absent: no such directory/);
    await expect(pairImageFolders(folder('p6', []), folder('g6', ['a.png']))).rejects.toThrow(/no prediction images/);
  });

  it('an unreadable partner fails the folder score naming that file', async () => {
    const p = folder('p7', ['a.png']);
    const g = join(tmp, 'g7');
    mkdirSync(g, { recursive: true });
    writeFileSync(join(g, 'a.png'), 'not an image');
    await expect(uriscFolderScore(p, g)).rejects.toThrow(/cannot decode image .*g7\/a\.png/);
  });
});
