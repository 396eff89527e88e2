import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  LabeledImages,
  URISC_AUGMENTATION,
  labelHistogram,
  labelToMask,
  patchBatches,
  patchGrid,
  uriscDirectories,
  writeImage,
  type GreyImage,
  type LabeledSample,
} from '@emseg/data';
import { pattern16, tempDir } from './helpers.js';

const dir = tempDir('labeled');
const images = join(dir, 'imgs', 'Track1', 'train');
const labels = join(dir, 'label', 'Track1', 'train');

/** Label with stripes of membrane (0) plus the awkward grey values of a non-binary label. */
function stripedLabel(width: number, height: number, phase: number): Uint8Array {
  return Uint8Array.from({ length: width * height }, (_, i) => (((i % width) + phase) % 9 < 2 ? 0 : 255));
}

beforeAll(async () => {
  for (const [k, [w, h]] of [
    [60, 40],
    [50, 50],
    [70, 30],
  ].entries()) {
    // 16-bit EM images are fine; labels are 8-bit TIFF as in U-RISC.
    await writeImage(join(images, `img${k}.png`), { width: w, height: h, bitDepth: 16, data: pattern16(w, h) });
    await writeImage(join(labels, `img${k}.tiff`), { width: w, height: h, bitDepth: 8, data: stripedLabel(w, h, k) });
  }
});

describe('LabeledImages', () => {
  it('pairs images and labels by file stem across the U-RISC directories', async () => {
    const ds = await LabeledImages.open(uriscDirectories(dir, 'train'));
    expect(ds.names).toEqual(['img0', 'img1', 'img2']);
    expect(ds.pairs[0]).toMatchObject({ width: 60, height: 40, imageBitDepth: 16 });
    expect(ds.pairs[0].image.endsWith(join('imgs', 'Track1', 'train', 'img0.png'))).toBe(true);
    expect(ds.pairs[0].label.endsWith(join('label', 'Track1', 'train', 'img0.tiff'))).toBe(true);
    const sample = await ds.load('img1');
    expect(sample.image.bitDepth).toBe(16);
    expect(Array.from(sample.mask.data)).toEqual(Array.from(stripedLabel(50, 50, 1), (v) => (v === 0 ? 1 : 0)));
  });

  it('thresholds non-binary labels at mid-grey with either polarity', () => {
    const label: GreyImage = { width: 6, height: 1, bitDepth: 8, data: Uint8Array.from([0, 100, 127, 128, 200, 255]) };
    expect(Array.from(labelToMask(label, 'black-foreground').data)).toEqual([1, 1, 1, 0, 0, 0]);
    expect(Array.from(labelToMask(label, 'white-foreground').data)).toEqual([0, 0, 0, 1, 1, 1]);
    expect(Array.from(labelToMask(label, 'black-foreground', 64).data)).toEqual([1, 0, 0, 0, 0, 0]);
  });

  it('opens with white-foreground polarity', async () => {
    const ds = await LabeledImages.open({ images, labels, polarity: 'white-foreground' });
    const sample = await ds.load(0);
    expect(Array.from(sample.mask.data)).toEqual(Array.from(stripedLabel(60, 40, 0), (v) => (v === 255 ? 1 : 0)));
  });

  it('splits by image, reproducibly, never sharing an image', async () => {
    const ds = await LabeledImages.open({ images, labels });
    const a = ds.split(1, 42);
    expect(a.validation.size).toBe(1);
    expect(a.train.size).toBe(2);
    expect(a.train.names.filter((n) => a.validation.names.includes(n))).toEqual([]);
    expect(ds.split(1, 42).validation.names).toEqual(a.validation.names);
    const held = new Set(Array.from({ length: 20 }, (_, seed) => ds.split(0.34, seed).validation.names[0]));
    expect(held.size).toBeGreaterThan(1);
    expect(() => ds.split(3, 1)).toThrow(/cannot hold out 3 of 3 images/);
    expect(ds.subset(['img2', 'img0']).names).toEqual(['img0', 'img2']);
  });

  it('has a digest that covers images and labels', async () => {
    const ds = await LabeledImages.open({ images, labels });
    const d = await ds.digest();
    expect(d.files).toBe(6);
    expect(d.digest).toMatch(/^[0-9a-f]{16}$/);
    expect((await ds.subset(['img0']).digest()).digest).not.toBe(d.digest);
  });
});

describe('patchBatches', () => {
  let samples: LabeledSample[];
  beforeAll(async () => {
    samples = await (await LabeledImages.open({ images, labels })).loadAll();
  });

  it('grid mode yields every grid patch of every image once, cut exactly', () => {
    const batches = [...patchBatches(samples, { mode: 'grid', size: 32, stride: 16, batchSize: 4, seed: 1, epoch: 0, keepLast: true })];
    const expected = samples.reduce((n, s) => n + patchGrid(s.image.width, s.image.height, { size: 32, stride: 16 }).length, 0);
    const sources = batches.flatMap((b) => b.sources);
    expect(sources).toHaveLength(expected);
    expect(new Set(sources.map((s) => `${s.name}:${s.rect.x},${s.rect.y}`)).size).toBe(expected);
    const first = batches[0];
    const { name, rect } = first.sources[0];
    const sample = samples.find((s) => s.name === name) as LabeledSample;
    for (let y = 0; y < 32; y++) {
      for (let x = 0; x < 32; x++) {
        const src = (rect.y + y) * sample.image.width + rect.x + x;
        expect(first.images.data[y * 32 + x]).toBeCloseTo(sample.image.data[src] / 65535, 6);
        expect(first.masks.data[y * 32 + x]).toBe(sample.mask.data[src]);
      }
    }
  });

  it('random mode with oversampling puts foreground in every patch at probability 1', () => {
    const batches = [...patchBatches(samples, { mode: 'random', size: 16, batchSize: 8, seed: 3, epoch: 0, patchesPerEpoch: 64, foregroundProbability: 1 })];
    expect(batches).toHaveLength(8);
    for (const b of batches) {
      for (let k = 0; k < b.masks.size; k++) expect(b.masks.data.subarray(k * 256, (k + 1) * 256).some((v) => v === 1)).toBe(true);
    }
  });

  it('augments image and mask with the same geometry, reproducibly by (seed, epoch)', () => {
    // An image that equals its mask: after augmentation (geometry + mild photometric jitter) the
    // bright pixels must still be where the mask says membrane.
    const w = 64;
    const mask = Uint8Array.from({ length: w * w }, (_, i) => ((i % w) % 10 < 3 || Math.floor(i / w) % 13 < 2 ? 1 : 0));
    const image = { width: w, height: w, bitDepth: 8 as const, data: mask.map((v) => v * 255) };
    const twin: LabeledSample = {
      name: 'twin',
      image,
      mask: { width: w, height: w, data: mask },
      label: { polarity: 'white-foreground', threshold: 128, histogram: labelHistogram(image) },
    };
    const options = {
      mode: 'random' as const,
      size: 32,
      batchSize: 4,
      seed: 9,
      epoch: 1,
      patchesPerEpoch: 16,
      augmentation: { ...URISC_AUGMENTATION, brightness: 0, contrast: 0, gamma: undefined },
    };
    const batches = [...patchBatches([twin], options)];
    let agree = 0;
    let total = 0;
    for (const b of batches) {
      for (let i = 0; i < b.images.data.length; i++) {
        total++;
        if ((b.images.data[i] >= 0.5 ? 1 : 0) === b.masks.data[i]) agree++;
      }
    }
    expect(agree / total).toBeGreaterThan(0.97);
    expect([...patchBatches([twin], options)]).toEqual(batches);
    expect([...patchBatches([twin], { ...options, epoch: 2 })][0].images.data).not.toEqual(batches[0].images.data);
  });
});
