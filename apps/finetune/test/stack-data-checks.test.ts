/**
 * Issue 10, item 4, in `predict`: a multi-page TIFF stack is refused naming the file and its page
 * count, instead of segmenting its first page only.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { resnetEncoder } from '@emseg/models';
import { predictFiles } from '../src/predict.js';
import { Segmenter } from '@emseg/segmentation';
import { tempDir } from './helpers.js';

const tmp = tempDir('stack');
afterAll(() => tmp.cleanup());

describe('predict and stacks', () => {
  it('refuses a 3-page TIFF, naming it and its pages, and writes nothing', async () => {
    const page = (v: number) =>
      sharp(Buffer.alloc(128 * 128, v), { raw: { width: 128, height: 128, channels: 1 } })
        .png()
        .toBuffer();
    const stack = join(tmp.dir, 'stack.tif');
    await sharp(await Promise.all([60, 120, 180].map(page)), { join: { animated: true } })
      .toColourspace('b-w')
      .tiff()
      .toFile(stack);
    const segmenter = Segmenter.create(
      resnetEncoder({ depth: 18, seed: 5 }),
      { mean: [0.5], std: [0.2] },
      { encoderSource: 'random', encoderRunId: null },
      { decoderChannels: [16, 8, 8, 8, 8], seed: 6 },
    );
    try {
      const out = join(tmp.dir, 'out');
      await expect(
        predictFiles(segmenter, {
          inputs: [stack],
          outDir: out,
          inference: { tileSize: 128, overlap: 0, window: 'gaussian', batchSize: 1, flipTta: false },
          threshold: 0.5,
          probability: 'png',
        }),
      ).rejects.toThrow(
        `${stack}: is a multi-page TIFF stack (3 pages); stacks are not supported yet; expected one image per file: split the stack into one file per slice`,
      );
      expect(existsSync(out)).toBe(false);
    } finally {
      segmenter.dispose();
    }
  });
});
