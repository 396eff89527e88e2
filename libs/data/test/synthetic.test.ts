import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  LabeledImages,
  Rng,
  UnlabeledCrops,
  generateSyntheticCrops,
  generateSyntheticUrisc,
  readImage,
  readImageInfo,
  renderEmScene,
  type SyntheticUriscDataset,
} from '@emseg/data';
import { tempDir, treeOf } from './helpers.js';

const dir = tempDir('synthetic');
let dataset: SyntheticUriscDataset;

beforeAll(async () => {
  dataset = await generateSyntheticUrisc({ dir: join(dir, 'a'), seed: 7, count: { train: 3, val: 1, test: 1 }, size: [160, 128] });
});

describe('generateSyntheticUrisc', () => {
  it('writes the U-RISC layout: PNG images and 8-bit TIFF labels per split', () => {
    expect(treeOf(dataset.root).filter((p) => p.endsWith('.png') || p.endsWith('.tiff'))).toEqual([
      'imgs/Track1/test/test-000.png',
      'imgs/Track1/train/train-000.png',
      'imgs/Track1/train/train-001.png',
      'imgs/Track1/train/train-002.png',
      'imgs/Track1/val/val-000.png',
      'label/Track1/test/test-000.tiff',
      'label/Track1/train/train-000.tiff',
      'label/Track1/train/train-001.tiff',
      'label/Track1/train/train-002.tiff',
      'label/Track1/val/val-000.tiff',
    ]);
    expect(dataset.splits.train.names).toEqual(['train-000', 'train-001', 'train-002']);
  });

  it('opens as a LabeledImages dataset with binary labels, membrane black', async () => {
    const train = await LabeledImages.open(dataset.splits.train);
    expect(train.size).toBe(3);
    const info = await readImageInfo(train.pairs[0].label);
    expect([info.format, info.bitDepth, info.width, info.height]).toEqual(['tiff', 8, 160, 128]);
    const label = await readImage(train.pairs[0].label);
    expect(new Set(label.data)).toEqual(new Set([0, 255]));
    const sample = await train.load(0);
    const fraction = sample.mask.data.reduce((s, v) => s + v, 0) / sample.mask.data.length;
    expect(fraction).toBeCloseTo(dataset.membraneFraction['train-000'], 10);
  });

  it('is deterministic by seed: same seed, identical bytes; another seed, other images', async () => {
    const again = await generateSyntheticUrisc({ dir: join(dir, 'b'), seed: 7, count: { train: 3, val: 1, test: 1 }, size: [160, 128] });
    const other = await generateSyntheticUrisc({ dir: join(dir, 'c'), seed: 8, count: { train: 1, val: 0, test: 0 }, size: [160, 128] });
    for (const rel of ['imgs/Track1/train/train-001.png', 'label/Track1/val/val-000.tiff']) {
      expect(readFileSync(join(again.root, rel)).equals(readFileSync(join(dataset.root, rel)))).toBe(true);
    }
    const rel = 'imgs/Track1/train/train-000.png';
    expect(readFileSync(join(other.root, rel)).equals(readFileSync(join(dataset.root, rel)))).toBe(false);
  });
});

describe('renderEmScene', () => {
  const scenes = Array.from({ length: 4 }, (_, k) => renderEmScene(new Rng(100 + k), { width: 384, height: 384, lowContrast: k === 3 }));

  it('labels 5-10% of pixels as membrane, like U-RISC (~5%)', () => {
    for (const scene of scenes) {
      const fraction = scene.membrane.reduce((s, v) => s + v, 0) / scene.membrane.length;
      expect(fraction).toBeGreaterThan(0.05);
      expect(fraction).toBeLessThan(0.1);
    }
  });

  it('draws membranes dark, and unlabelled dark distractors (organelles, vesicles) too', () => {
    for (const scene of scenes.slice(0, 3)) {
      let membraneSum = 0;
      let membrane = 0;
      let otherSum = 0;
      let darkOther = 0;
      for (let i = 0; i < scene.image.length; i++) {
        if (scene.membrane[i]) {
          membraneSum += scene.image[i];
          membrane++;
        } else {
          otherSum += scene.image[i];
          if (scene.image[i] < 110) darkOther++;
        }
      }
      expect(membraneSum / membrane).toBeLessThan(otherSum / (scene.image.length - membrane) - 40);
      // Dark pixels that are NOT membrane: the distractors a model must learn to ignore.
      expect(darkOther / (scene.image.length - membrane)).toBeGreaterThan(0.005);
    }
  });

  it('has lower contrast in a low-contrast image', () => {
    const std = (img: Uint8Array) => {
      const mean = img.reduce((s, v) => s + v, 0) / img.length;
      return Math.sqrt(img.reduce((s, v) => s + (v - mean) ** 2, 0) / img.length);
    };
    expect(std(scenes[3].image)).toBeLessThan(0.7 * Math.min(std(scenes[0].image), std(scenes[1].image), std(scenes[2].image)));
  });
});

describe('generateSyntheticCrops', () => {
  it('writes a CEM500K-like tree of crops that UnlabeledCrops reads, deterministically', async () => {
    const a = await generateSyntheticCrops({ dir: join(dir, 'crops-a'), seed: 2, count: 30, size: 48, sources: 3 });
    const b = await generateSyntheticCrops({ dir: join(dir, 'crops-b'), seed: 2, count: 30, size: 48, sources: 3 });
    const crops = await UnlabeledCrops.open(a.root);
    expect(crops.size).toBe(30);
    expect(new Set(crops.files.map((f) => f.split('/')[0])).size).toBe(3);
    const first = await crops.read(0);
    expect([first.width, first.height, first.bitDepth]).toEqual([48, 48, 8]);
    for (const f of crops.files.slice(0, 5)) expect(readFileSync(join(a.root, f)).equals(readFileSync(join(b.root, f)))).toBe(true);
    // Crops differ from each other.
    expect(Array.from((await crops.read(1)).data)).not.toEqual(Array.from(first.data));
  });
});
