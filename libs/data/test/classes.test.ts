/** Multi-class masks: class maps read from label values, one-hot targets, multi-channel tile blending. */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tensorCountGuard } from '@emseg/tf';
import { DataError, LabeledImages, labelToClasses, maskBatchToTensor, predictTiled, writeImage, type GreyImage } from '@emseg/data';
import { pattern8, tempDir } from './helpers.js';

const label = (data: number[], width: number): GreyImage => ({ width, height: data.length / width, bitDepth: 8, data: Uint8Array.from(data) });

describe('class maps', () => {
  it('maps label values to class indices in the order given', () => {
    const mask = labelToClasses(label([0, 128, 255, 255, 0, 128], 3), [0, 128, 255], 'm.png');
    expect(Array.from(mask.data)).toEqual([0, 1, 2, 2, 0, 1]);
    // the order decides the index, not the value
    expect(Array.from(labelToClasses(label([0, 128, 255], 3), [255, 0, 128], 'm.png').data)).toEqual([1, 2, 0]);
  });

  it('refuses a value outside the class map, naming the file, the value, where it is and how often', () => {
    const bad = label([0, 128, 77, 0, 77, 77], 3);
    let error: unknown;
    try {
      labelToClasses(bad, [0, 128, 255], '/data/masks/a.png');
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(DataError);
    expect(String(error)).toMatch(/\/data\/masks\/a\.png/);
    expect(String(error)).toMatch(/label value 77 at x 2, y 0 \(3 pixel\(s\)\)/);
    expect(String(error)).toMatch(/0, 128, 255/);
  });

  it('refuses class lists that cannot be a class map', () => {
    const l = label([0, 1], 2);
    expect(() => labelToClasses(l, [0], 'm.png')).toThrow(/2 to 255 label values/);
    expect(() => labelToClasses(l, [0, 0], 'm.png')).toThrow(/distinct/);
    expect(() => labelToClasses(l, [0, 300], 'm.png')).toThrow(/0\.\.255/);
  });

  it('LabeledImages with classes loads class indices, keeps them through split, and names the mask with a stray value', async () => {
    const dir = tempDir('classes');
    const w = 8;
    const h = 4;
    for (let k = 0; k < 3; k++) {
      await writeImage(join(dir, 'images', `i${k}.png`), { width: w, height: h, bitDepth: 8, data: pattern8(w, h) });
      const values = Uint8Array.from({ length: w * h }, (_, i) => [0, 128, 255][(i + k) % 3]);
      await writeImage(join(dir, 'masks', `i${k}.png`), { width: w, height: h, bitDepth: 8, data: values });
    }
    const ds = await LabeledImages.open({ images: join(dir, 'images'), labels: join(dir, 'masks'), classes: [0, 128, 255] });
    const sample = await ds.load('i1');
    expect(Array.from(sample.mask.data.slice(0, 4))).toEqual([1, 2, 0, 1]);
    const { validation } = ds.split(1, 0);
    expect(validation.classes).toEqual([0, 128, 255]);
    const two = await LabeledImages.open({ images: join(dir, 'images'), labels: join(dir, 'masks'), classes: [0, 255] });
    await expect(two.load('i0')).rejects.toThrow(/masks\/i0\.png.*label value 128/);
  });
});

describe('multi-class tensors and tiling', () => {
  it('one-hot encodes class masks as [batch, height, width, classes] targets', () => {
    const guard = tensorCountGuard();
    const t = maskBatchToTensor({ size: 1, width: 2, height: 2, data: Uint8Array.of(0, 2, 1, 0) }, 3);
    expect(t.shape).toEqual([1, 2, 2, 3]);
    expect(Array.from(t.dataSync())).toEqual([1, 0, 0, 0, 0, 1, 0, 1, 0, 1, 0, 0]);
    t.dispose();
    const binary = maskBatchToTensor({ size: 1, width: 2, height: 1, data: Uint8Array.of(1, 0) });
    expect(binary.shape).toEqual([1, 1, 2, 1]);
    binary.dispose();
    expect(guard.leaked()).toBe(0);
  });

  it('blends a multi-channel prediction exactly as each channel blended alone', async () => {
    const image: GreyImage = { width: 150, height: 97, bitDepth: 8, data: pattern8(150, 97) };
    const options = { tileSize: 64, overlap: 24, batchSize: 2 };
    // channel j of pixel p is a different function of the input per channel, so tiles disagree at seams
    const fns = [(v: number) => v, (v: number) => 1 - v * v, (v: number) => 0.5 * v + 0.1];
    const joint = await predictTiled(image, { ...options, channels: 3 }, (batch) => {
      const out = new Float32Array(batch.length * 3);
      batch.forEach((v, i) => fns.forEach((f, j) => (out[i * 3 + j] = f(v))));
      return out;
    });
    expect(joint.length).toBe(150 * 97 * 3);
    for (const [j, f] of fns.entries()) {
      const alone = await predictTiled(image, options, (batch) => batch.map(f));
      let diff = 0;
      for (let i = 0; i < alone.length; i++) diff = Math.max(diff, Math.abs(alone[i] - joint[i * 3 + j]));
      expect(diff).toBeLessThan(1e-6);
    }
    await expect(predictTiled(image, { ...options, channels: 2 }, (batch) => batch.slice())).rejects.toThrow(/expected/);
  });
});
