/**
 * Issue 10, item 4: a multi-page TIFF stack is refused, naming the file and its page count, at every
 * entry point that decodes or inspects images (libvips alone would silently use the first page).
 */
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { BadCropsError, LabeledImages, UnlabeledCrops, readImage, readImageInfo, writeImage } from '@emseg/data';
import { pattern8, tempDir } from './helpers.js';

const dir = tempDir('stack');
const W = 32;

/** A real 3-page 8-bit TIFF, pages joined by sharp (libvips writes one IFD per page). */
async function writeStack(path: string, pages = 3): Promise<void> {
  const page = (k: number) =>
    sharp(Buffer.from(pattern8(W, W).map((v) => (v + 50 * k) % 256)), { raw: { width: W, height: W, channels: 1 } })
      .png()
      .toBuffer();
  const buffers = await Promise.all(Array.from({ length: pages }, (_, k) => page(k)));
  await sharp(buffers, { join: { animated: true } })
    .toColourspace('b-w')
    .tiff({ compression: 'lzw' })
    .toFile(path);
}

const refusal = (path: string) =>
  `${path}: is a multi-page TIFF stack (3 pages); stacks are not supported yet; expected one image per file: split the stack into one file per slice`;

const stack = join(dir, 'stack.tif');
beforeAll(async () => {
  await writeStack(stack);
  expect((await sharp(stack).metadata()).pages).toBe(3); // the fixture really is a stack
});

describe('multi-page TIFF stacks', () => {
  it('readImageInfo, readImage and a region read refuse a stack, naming the file and its pages', async () => {
    await expect(readImageInfo(stack)).rejects.toThrow(refusal(stack));
    await expect(readImage(stack)).rejects.toThrow(refusal(stack));
    await expect(readImage(stack, { region: { x: 0, y: 0, width: 8, height: 8 } })).rejects.toThrow(refusal(stack));
  });

  it('a single-page TIFF still reads', async () => {
    const single = join(dir, 'single.tif');
    await writeImage(single, { width: W, height: W, bitDepth: 8, data: pattern8(W, W) });
    expect((await readImage(single)).width).toBe(W);
  });

  it('LabeledImages refuses a stack as an image or as a label when the dataset is opened', async () => {
    for (const which of ['imgs', 'label'] as const) {
      const images = join(dir, which, 'imgs');
      const labels = join(dir, which, 'label');
      await writeImage(join(images, 'a.png'), { width: W, height: W, bitDepth: 8, data: pattern8(W, W) });
      await writeImage(join(labels, 'a.tiff'), { width: W, height: W, bitDepth: 8, data: new Uint8Array(W * W).fill(255) });
      const bad = which === 'imgs' ? join(images, 'b.tif') : join(labels, 'b.tiff');
      await writeStack(bad);
      await writeImage(which === 'imgs' ? join(labels, 'b.tiff') : join(images, 'b.png'), { width: W, height: W, bitDepth: 8, data: pattern8(W, W) });
      await expect(LabeledImages.open({ images, labels })).rejects.toThrow(refusal(bad));
    }
  });

  it('UnlabeledCrops refuses a stack among the crops when listing (or leaves it out with badCrops skip)', async () => {
    const root = join(dir, 'crops');
    for (let i = 0; i < 3; i++) await writeImage(join(root, `c${i}.png`), { width: W, height: W, bitDepth: 8, data: pattern8(W, W) });
    await writeStack(join(root, 'z-stack.tif'));
    const err = await UnlabeledCrops.open(root).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BadCropsError);
    expect((err as Error).message).toContain(refusal(join(root, 'z-stack.tif')));
    const crops = await UnlabeledCrops.open(root, { badCrops: 'skip' });
    expect(crops.files).toEqual(['c0.png', 'c1.png', 'c2.png']);
  });
});
