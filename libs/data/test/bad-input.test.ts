import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { DataError, LabeledImages, UnlabeledCrops, generateSyntheticUrisc, publishDirectory, readImage, writeImage } from '@emseg/data';
import { pattern16, pattern8, tempDir, treeOf } from './helpers.js';

const base = tempDir('bad');
let caseDir = '';
let n = 0;

/** A fresh images/ + labels/ pair of directories with two good pairs. */
beforeEach(async () => {
  caseDir = join(base, `case${n++}`);
  for (const name of ['a', 'b']) {
    await writeImage(join(caseDir, 'images', `${name}.png`), { width: 20, height: 10, bitDepth: 8, data: pattern8(20, 10) });
    await writeImage(join(caseDir, 'labels', `${name}.tiff`), { width: 20, height: 10, bitDepth: 8, data: pattern8(20, 10) });
  }
});

const images = () => join(caseDir, 'images');
const labels = () => join(caseDir, 'labels');
const open = () => LabeledImages.open({ images: images(), labels: labels() });

async function expectDataError(promise: Promise<unknown>, path: string, message: RegExp): Promise<void> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DataError);
  expect((err as DataError).path).toBe(path);
  expect((err as DataError).message).toMatch(message);
  expect((err as DataError).message.startsWith(path)).toBe(true);
}

describe('bad input: every case names the file and what was expected', () => {
  it('a corrupt image (not image bytes at all)', async () => {
    writeFileSync(join(images(), 'a.png'), 'this is not a PNG');
    await expectDataError(open(), join(images(), 'a.png'), /is not a readable image .*expected a complete, uncorrupted PNG, TIFF or JPEG/);
  });

  it('a truncated image: found when it is decoded', async () => {
    const file = join(images(), 'b.png');
    await writeImage(file, { width: 20, height: 10, bitDepth: 8, data: pattern8(20, 10) });
    const bytes = readFileSync(file);
    writeFileSync(file, bytes.subarray(0, bytes.length - 30));
    const ds = await open(); // the header is intact
    await expectDataError(ds.load('b'), file, /is not a readable image/);
  });

  it('a crop truncated after the listing, while streaming', async () => {
    const crops = join(caseDir, 'crops');
    await writeImage(join(crops, 'x', 'one.png'), { width: 16, height: 16, bitDepth: 8, data: pattern8(16, 16) });
    await writeImage(join(crops, 'x', 'two.png'), { width: 16, height: 16, bitDepth: 8, data: pattern8(16, 16) });
    const ds = await UnlabeledCrops.open(crops); // the header check at listing passes both
    const bytes = readFileSync(join(crops, 'x', 'two.png'));
    writeFileSync(join(crops, 'x', 'two.png'), bytes.subarray(0, 40));
    const drain = async () => {
      for await (const batch of ds.stream({ seed: 0, epoch: 0, batchSize: 2, size: 8 })) expect(batch).toBeDefined();
    };
    await expectDataError(drain(), join(crops, 'x', 'two.png'), /is not a readable image/);
  });

  it('a non-image file in the folder', async () => {
    writeFileSync(join(images(), 'notes.txt'), 'hello');
    await expectDataError(
      open(),
      join(images(), 'notes.txt'),
      /is not an image file \(extension "\.txt"\); expected only image files \(\.png, \.tif, \.tiff, \.jpg, \.jpeg\)/,
    );
    writeFileSync(join(caseDir, 'README'), 'x');
    mkdirSync(join(caseDir, 'crops'));
    writeFileSync(join(caseDir, 'crops', 'README'), 'x');
    await expectDataError(UnlabeledCrops.open(join(caseDir, 'crops')), join(caseDir, 'crops', 'README'), /is not an image file \(extension "none"\)/);
  });

  it('an image and its label of different sizes', async () => {
    await writeImage(join(labels(), 'b.tiff'), { width: 20, height: 11, bitDepth: 8, data: pattern8(20, 11) });
    await expectDataError(open(), join(labels(), 'b.tiff'), /label is 20x11 but its image .*b\.png is 20x10; expected a label of the same size as its image/);
  });

  it('a label with no partner image', async () => {
    await writeImage(join(labels(), 'c.tiff'), { width: 20, height: 10, bitDepth: 8, data: pattern8(20, 10) });
    await expectDataError(
      open(),
      join(labels(), 'c.tiff'),
      /label has no image named "c\.\*" in .*images; expected every label to have an image with the same stem/,
    );
  });

  it('an image with no label', async () => {
    await writeImage(join(images(), 'd.png'), { width: 20, height: 10, bitDepth: 8, data: pattern8(20, 10) });
    await expectDataError(open(), join(images(), 'd.png'), /image has no label named "d\.\*"/);
  });

  it('two files with one stem', async () => {
    await writeImage(join(images(), 'a.tif'), { width: 20, height: 10, bitDepth: 8, data: pattern8(20, 10) });
    await expectDataError(open(), join(images(), 'a.tif'), /has the same name stem "a" as a\.png/);
  });

  it('an empty directory', async () => {
    mkdirSync(join(caseDir, 'empty'));
    await expectDataError(
      LabeledImages.open({ images: join(caseDir, 'empty'), labels: labels() }),
      join(caseDir, 'empty'),
      /contains no image files; expected at least one image/,
    );
    mkdirSync(join(caseDir, 'empty', 'sub', 'deeper'), { recursive: true });
    await expectDataError(UnlabeledCrops.open(join(caseDir, 'empty')), join(caseDir, 'empty'), /contains no image files/);
  });

  it('a 16-bit label', async () => {
    await writeImage(join(labels(), 'a.tiff'), { width: 20, height: 10, bitDepth: 16, data: pattern16(20, 10) });
    await expectDataError(open(), join(labels(), 'a.tiff'), /label is 16-bit; expected an 8-bit label image \(U-RISC: 0 = membrane, 255 = background\)/);
  });

  it('an unreadable path: missing, a file where a directory belongs, a directory where a file belongs', async () => {
    await expectDataError(
      LabeledImages.open({ images: join(caseDir, 'nope'), labels: labels() }),
      join(caseDir, 'nope'),
      /does not exist; expected a directory of images/,
    );
    await expectDataError(UnlabeledCrops.open(join(images(), 'a.png')), join(images(), 'a.png'), /is a file, not a directory/);
    await expectDataError(readImage(join(images(), 'a.png', 'x.png')), join(images(), 'a.png', 'x.png'), /is not reachable \(a parent of it is a file/);
    await expectDataError(readImage(images()), images(), /is a directory, not a file; expected a PNG, TIFF or JPEG image/);
  });

  it.skipIf(process.getuid?.() === 0)('an unreadable path: no permission (skipped as root, who may read anything)', async () => {
    chmodSync(images(), 0o000);
    try {
      await expectDataError(open(), images(), /permission denied/);
    } finally {
      chmodSync(images(), 0o755);
    }
  });
});

describe('nothing half-written', () => {
  it('a directory build that fails leaves neither the directory nor its temporary copy', async () => {
    const target = join(caseDir, 'out', 'dataset');
    await expect(
      publishDirectory(target, async (tmp) => {
        await writeImage(join(tmp, 'imgs', 'x.png'), { width: 4, height: 4, bitDepth: 8, data: pattern8(4, 4) });
        throw new Error('crash in the middle');
      }),
    ).rejects.toThrow('crash in the middle');
    expect(existsSync(target)).toBe(false);
    expect(treeOf(join(caseDir, 'out'))).toEqual([]);
  });

  it('synthetic generation refuses a non-empty directory and leaves it untouched', async () => {
    const before = treeOf(caseDir);
    await expect(generateSyntheticUrisc({ dir: caseDir, seed: 1, count: { train: 1, val: 0, test: 0 }, size: 32 })).rejects.toThrow(
      /already exists and is not empty; expected a new \(or empty\) directory/,
    );
    expect(treeOf(caseDir)).toEqual(before);
  });

  it('synthetic generation with bad options writes nothing', async () => {
    const target = join(caseDir, 'synthetic');
    await expect(generateSyntheticUrisc({ dir: target, seed: 1, count: { train: -1, val: 0, test: 0 }, size: 32 })).rejects.toThrow(
      /count\.train must be a non-negative integer, got -1/,
    );
    expect(existsSync(target)).toBe(false);
  });
});
