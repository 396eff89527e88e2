/**
 * The linear probe refuses a label with no membrane (all white) instead of fitting and scoring a
 * meaningless probe, naming the label file; its few patches are spread over every image.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generateSyntheticUrisc, greyImage, readImage, writeImage } from '@emseg/data';
import { disposeProbeData, loadProbeData } from '../src/probe.js';

const WORK = mkdtempSync(join(tmpdir(), 'emseg-probe-labels-'));
afterAll(() => rmSync(WORK, { recursive: true, force: true }));

describe('probe labels', () => {
  it('loads plausible labels and refuses an empty one, naming it', async () => {
    const dir = join(WORK, 'urisc');
    await generateSyntheticUrisc({ dir, seed: 3, count: { train: 1, val: 1, test: 0 }, size: 128, cellSize: 40 });
    disposeProbeData(await loadProbeData(dir, { patchSize: 64, mean: 0.573, std: 0.127 }));
    const labels = join(dir, 'label', 'Track1', 'val');
    const name = readdirSync(labels)[0]!;
    await writeImage(join(labels, name), greyImage(128, 128, new Uint8Array(128 * 128).fill(255)));
    await expect(loadProbeData(dir, { patchSize: 64, mean: 0.573, std: 0.127 })).rejects.toThrow(
      new RegExp(`${join(labels, name)}: no pixel is membrane when read as black-foreground`),
    );
  });

  it('spreads its patches over every training image and every part of it, not one strip of the first', async () => {
    const dir = join(WORK, 'spread');
    await generateSyntheticUrisc({ dir, seed: 4, count: { train: 4, val: 1, test: 0 }, size: 256, cellSize: 40 });
    // every training image gets its own constant grey, so each patch tells which image it came from
    const images = join(dir, 'imgs', 'Track1', 'train');
    const names = readdirSync(images).sort();
    for (const [k, name] of names.entries()) {
      const { width, height } = await readImage(join(images, name));
      await writeImage(join(images, name), greyImage(width, height, new Uint8Array(width * height).fill(40 + 50 * k)));
    }
    // 4 images x 16 grid positions of 64 px; 8 patches: 2 from each image, from its upper and lower half
    const data = await loadProbeData(dir, { patchSize: 64, mean: 0, std: 1, maxPatches: 8 });
    const values = data.train.images.dataSync();
    const firsts = Array.from({ length: 8 }, (_, i) => Math.round(values[i * 64 * 64] * 255));
    disposeProbeData(data);
    expect(firsts).toEqual([40, 40, 90, 90, 140, 140, 190, 190]);
  });
});
