/**
 * Issue 12 part 1 (binary masks, 2D): the generic labelled layout of `segment`. The three layouts
 * open with the right splits, a folder in none of them, unpaired files, size mismatches and masks
 * read with the wrong polarity are refused naming the file, masks without foreground are allowed
 * one by one but not for a whole training set, and written masks score by IoU against the labels.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeImage, writeStack, type GreyImage } from '@emseg/data';
import { loadSegmentTraining, openSegmentData, scoreMasks, type SegmentDataOptions } from '../src/tasks/segment.js';
import { tempDir } from './helpers.js';

const tmp = tempDir('segment-data');
afterAll(() => tmp.cleanup());

const OPTIONS: SegmentDataOptions = { polarity: 'white-foreground', labelThreshold: 128, holdout: 1, seed: 0 };
const SIZE = 64;

/** A grey image with a bright square at (x0, y0) and its mask (255 inside). */
function pair(x0: number, y0: number, side = 16): { image: GreyImage; mask: GreyImage } {
  const image = new Uint8Array(SIZE * SIZE).fill(60);
  const mask = new Uint8Array(SIZE * SIZE);
  for (let y = y0; y < y0 + side; y++) {
    for (let x = x0; x < x0 + side; x++) {
      image[y * SIZE + x] = 200;
      mask[y * SIZE + x] = 255;
    }
  }
  return { image: { width: SIZE, height: SIZE, bitDepth: 8, data: image }, mask: { width: SIZE, height: SIZE, bitDepth: 8, data: mask } };
}

async function writePairs(imagesDir: string, masksDir: string, names: string[]): Promise<void> {
  mkdirSync(imagesDir, { recursive: true });
  mkdirSync(masksDir, { recursive: true });
  for (const [k, name] of names.entries()) {
    const p = pair(4 + 8 * k, 10);
    await writeImage(join(imagesDir, `${name}.png`), p.image);
    await writeImage(join(masksDir, `${name}.png`), p.mask);
  }
}

describe('openSegmentData', () => {
  it('opens images/ + masks/ as one set and holds data.holdout images out for validation', async () => {
    const root = join(tmp.dir, 'flat');
    await writePairs(join(root, 'images'), join(root, 'masks'), ['a', 'b', 'c']);
    const data = await openSegmentData(root, OPTIONS);
    expect(data.layout).toBe('flat');
    expect(data.validationSource).toBe('holdout');
    expect(data.train.size + data.validation.size).toBe(3);
    expect(data.validation.size).toBe(1);
    expect(data.test).toBeNull();
    // the same seed holds out the same image
    expect((await openSegmentData(root, OPTIONS)).validation.names).toEqual(data.validation.names);
  });

  it('reads images/{train,val,test} and {train,val,test}/images splits', async () => {
    const a = join(tmp.dir, 'images-splits');
    const b = join(tmp.dir, 'split-folders');
    for (const [split, names] of [
      ['train', ['t0', 't1']],
      ['val', ['v0']],
      ['test', ['s0', 's1']],
    ] as const) {
      await writePairs(join(a, 'images', split), join(a, 'masks', split), [...names]);
      await writePairs(join(b, split, 'images'), join(b, split, 'masks'), [...names]);
    }
    for (const [root, layout] of [
      [a, 'images-masks-splits'],
      [b, 'split-folders'],
    ] as const) {
      const data = await openSegmentData(root, OPTIONS);
      expect(data.layout).toBe(layout);
      expect([data.train.names, data.validation.names, data.test?.names]).toEqual([['t0', 't1'], ['v0'], ['s0', 's1']]);
      expect(data.validationSource).toBe('val');
    }
  });

  it('names the folder and the layouts it expects when there is neither', async () => {
    const root = join(tmp.dir, 'empty');
    mkdirSync(join(root, 'pictures'), { recursive: true });
    await expect(openSegmentData(root, OPTIONS)).rejects.toThrow(`${root}: has neither images/ + masks/ nor train/images/`);
    await expect(openSegmentData(join(tmp.dir, 'missing'), OPTIONS)).rejects.toThrow(`${join(tmp.dir, 'missing')}: does not exist`);
  });

  it('names an image without a mask, and a mask of another size', async () => {
    const root = join(tmp.dir, 'unpaired');
    await writePairs(join(root, 'images'), join(root, 'masks'), ['a', 'b']);
    await writeImage(join(root, 'images', 'c.png'), pair(0, 0).image);
    await expect(openSegmentData(root, OPTIONS)).rejects.toThrow(`${join(root, 'images', 'c.png')}: image has no label named "c.*" in ${join(root, 'masks')}`);
    await writeImage(join(root, 'masks', 'c.png'), { width: 32, height: 32, bitDepth: 8, data: new Uint8Array(32 * 32) });
    await expect(openSegmentData(root, OPTIONS)).rejects.toThrow(`${join(root, 'masks', 'c.png')}: label is 32x32 but its image`);
  });

  it('needs two training images when it must hold one out', async () => {
    const root = join(tmp.dir, 'single');
    await writePairs(join(root, 'images'), join(root, 'masks'), ['a']);
    await expect(openSegmentData(root, OPTIONS)).rejects.toThrow('holds 1 image and there is no val split');
  });
});

describe('loadSegmentTraining', () => {
  it('refuses a mask read with the wrong polarity, naming it and the --set that fixes it', async () => {
    const root = join(tmp.dir, 'polarity');
    await writePairs(join(root, 'images'), join(root, 'masks'), ['a', 'b', 'c']);
    const data = await openSegmentData(root, { ...OPTIONS, polarity: 'black-foreground' });
    const err = await loadSegmentTraining(data.train, 32, 0.6).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(
      /masks\/[abc]\.png: \d+\.\d% of the pixels are foreground when read as black-foreground .*more than 60% \(data\.maxForegroundFraction\)/,
    );
    expect((err as Error).message).toContain('--set data.polarity=white-foreground');
  });

  it('allows a mask without foreground, but not a training set without any', async () => {
    const root = join(tmp.dir, 'empty-masks');
    await writePairs(join(root, 'images'), join(root, 'masks'), ['a', 'b', 'c']);
    const blank: GreyImage = { width: SIZE, height: SIZE, bitDepth: 8, data: new Uint8Array(SIZE * SIZE) };
    await writeImage(join(root, 'masks', 'a.png'), blank);
    const data = await openSegmentData(root, { ...OPTIONS, holdout: 1 });
    const samples = await loadSegmentTraining(data.train, 32, 0.6);
    expect(samples.length).toBe(2);
    for (const name of ['b', 'c']) await writeImage(join(root, 'masks', `${name}.png`), blank);
    const again = await openSegmentData(root, OPTIONS);
    await expect(loadSegmentTraining(again.train, 32, 0.6)).rejects.toThrow(/no pixel is foreground \(0% foreground\)/);
  });

  it('names an image smaller than a patch and the patch size that fits', async () => {
    const root = join(tmp.dir, 'small');
    await writePairs(join(root, 'images'), join(root, 'masks'), ['a', 'b']);
    const data = await openSegmentData(root, OPTIONS);
    await expect(loadSegmentTraining(data.train, 128, 0.6)).rejects.toThrow('--set patches.size=64');
  });
});

describe('3D stacks', () => {
  it('opens multi-page TIFF stacks as slices, holds a stack out whole, and loads each slice', async () => {
    const root = join(tmp.dir, 'stacks');
    mkdirSync(join(root, 'images'), { recursive: true });
    mkdirSync(join(root, 'masks'), { recursive: true });
    for (const [k, name] of ['s0', 's1', 's2'].entries()) {
      const slices = [0, 1, 2, 3].map((z) => pair(4 + 4 * z, 8 + 8 * k));
      await writeStack(
        join(root, 'images', `${name}.tif`),
        slices.map((p) => p.image),
      );
      await writeStack(
        join(root, 'masks', `${name}.tif`),
        slices.map((p) => p.mask),
      );
    }
    const data = await openSegmentData(root, OPTIONS);
    expect(data.train.size + data.validation.size).toBe(12);
    // the held-out stack is whole, and no training slice comes from it
    const stacksOf = (names: readonly string[]) => new Set(names.map((n) => n.replace(/-z\d+$/, '')));
    expect(data.validation.names.length).toBe(4);
    expect(stacksOf(data.validation.names).size).toBe(1);
    expect([...stacksOf(data.train.names)].some((s) => stacksOf(data.validation.names).has(s))).toBe(false);
    const samples = await loadSegmentTraining(data.train, 32, 0.6);
    expect(samples.length).toBe(8);
    for (const sample of samples) expect(sample.name).toMatch(/^s\d-z00[0-3]$/);
    // slice z of a stack is page z: its square sits 4 px further right per slice
    const first = data.train.pairs.findIndex((p) => p.slice?.z === 2);
    const sample = await data.train.load(first);
    const row = 8 + 8 * Number(data.train.pairs[first].slice!.stack.slice(1)) + 1;
    expect(sample.mask.data[row * SIZE + 4 + 4 * 2]).toBe(1);
    expect(sample.mask.data[row * SIZE + 4 + 4 * 2 - 1]).toBe(0);
  });

  it('names a mask stack whose depth differs from its image stack', async () => {
    const root = join(tmp.dir, 'stack-depth');
    mkdirSync(join(root, 'images'), { recursive: true });
    mkdirSync(join(root, 'masks'), { recursive: true });
    for (const name of ['a', 'b']) {
      await writeStack(join(root, 'images', `${name}.tif`), [pair(0, 0).image, pair(1, 1).image, pair(2, 2).image]);
      const masks = [pair(0, 0).mask, pair(1, 1).mask, pair(2, 2).mask];
      await writeStack(join(root, 'masks', `${name}.tif`), name === 'b' ? masks.slice(0, 2) : masks);
    }
    await expect(openSegmentData(root, OPTIONS)).rejects.toThrow(
      `${join(root, 'masks', 'b.tif')}: has 2 page(s) but its image ${join(root, 'images', 'b.tif')} has 3`,
    );
  });
});

describe('scoreMasks', () => {
  it('scores written masks (foreground 255) per image and pooled', async () => {
    const root = join(tmp.dir, 'score');
    await writePairs(join(root, 'test', 'images'), join(root, 'test', 'masks'), ['x', 'y']);
    await writePairs(join(root, 'train', 'images'), join(root, 'train', 'masks'), ['t0', 't1']);
    const data = await openSegmentData(root, OPTIONS);
    const predDir = join(tmp.dir, 'score-pred');
    mkdirSync(predDir, { recursive: true });
    // x: exact; y: the square shifted by 8 px (16 x 8 overlap of 256 + 256 - 128)
    await writeImage(join(predDir, 'x.png'), pair(4, 10).mask);
    await writeImage(join(predDir, 'y.png'), pair(12 + 8, 10).mask);
    const score = await scoreMasks(
      new Map([
        ['x', join(predDir, 'x.png')],
        ['y', join(predDir, 'y.png')],
      ]),
      data.test!,
    );
    expect(score.images.map((r) => r.iou)).toEqual([1, 128 / 384]);
    expect(score.mean.iou).toBeCloseTo((1 + 128 / 384) / 2, 12);
    expect(score.pooled.iou).toBeCloseTo((256 + 128) / (256 + 384), 12);
  });
});
