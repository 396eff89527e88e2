/**
 * Issue 12: the synthetic mitochondria task, 2D (PNG images, binary masks, 16-bit instance ids in
 * the generic layout) and 3D (multi-page TIFF stacks whose instances continue across z).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  LabeledImages,
  Rng,
  generateSyntheticMito,
  generateSyntheticMitoStack,
  readImage,
  readImageInfo,
  readStack,
  readStackInfo,
  renderMitoScene,
  type SyntheticMitoDataset,
  type SyntheticMitoStackDataset,
} from '@emseg/data';
import { tempDir, treeOf } from './helpers.js';

const dir = tempDir('mito');
const SIZE = 192;

/** Sizes of the connected parts (4-connected in a slice, 6 across slices) of each instance id. */
function partsPerInstance(ids: Uint16Array, w: number, h: number, d: number): Map<number, number[]> {
  const plane = w * h;
  const seen = new Uint8Array(ids.length);
  const parts = new Map<number, number[]>();
  for (let start = 0; start < ids.length; start++) {
    const id = ids[start];
    if (id === 0 || seen[start]) continue;
    const queue = [start];
    seen[start] = 1;
    for (let k = 0; k < queue.length; k++) {
      const i = queue[k];
      const x = i % w;
      const y = Math.floor(i / w) % h;
      const z = Math.floor(i / plane);
      for (const j of [
        x > 0 ? i - 1 : -1,
        x < w - 1 ? i + 1 : -1,
        y > 0 ? i - w : -1,
        y < h - 1 ? i + w : -1,
        z > 0 ? i - plane : -1,
        z < d - 1 ? i + plane : -1,
      ]) {
        if (j >= 0 && !seen[j] && ids[j] === id) {
          seen[j] = 1;
          queue.push(j);
        }
      }
    }
    parts.set(id, [...(parts.get(id) ?? []), queue.length]);
  }
  return parts;
}

/** Whether two different instances are 4-neighbours in a slice (or 6-neighbours across slices). */
function instancesTouch(ids: Uint16Array, w: number, h: number, d: number): boolean {
  const plane = w * h;
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] === 0) continue;
    const x = i % w;
    const y = Math.floor(i / w) % h;
    const z = Math.floor(i / plane);
    for (const j of [x < w - 1 ? i + 1 : -1, y < h - 1 ? i + w : -1, z < d - 1 ? i + plane : -1]) {
      if (j >= 0 && ids[j] !== 0 && ids[j] !== ids[i]) return true;
    }
  }
  return false;
}

let dataset: SyntheticMitoDataset;
beforeAll(async () => {
  dataset = await generateSyntheticMito({ dir: join(dir, 'a'), seed: 5, size: SIZE, count: { train: 3, val: 1, test: 1 } });
});

describe('generateSyntheticMito (2D)', () => {
  it('writes the generic layout: {train,val,test}/{images,masks,instances}/NAME.png', () => {
    const files = treeOf(dataset.root).filter((p) => p.endsWith('.png'));
    const expected = ['train-000', 'train-001', 'train-002', 'val-000', 'test-000'].flatMap((name) =>
      ['images', 'masks', 'instances'].map((kind) => `${name.split('-')[0]}/${kind}/${name}.png`),
    );
    expect(files).toEqual(expected.sort());
    expect(treeOf(dataset.root)).toContain('synthetic.json');
    expect(dataset.splits.train).toMatchObject({
      dir: join(dataset.root, 'train'),
      images: join(dataset.root, 'train', 'images'),
      names: ['train-000', 'train-001', 'train-002'],
    });
    expect(dataset.splits.test.masks).toBe(join(dataset.root, 'test', 'masks'));
  });

  it('8-bit grey images, binary 8-bit masks (255 / 0) and 16-bit instance ids agreeing with them', async () => {
    for (const split of ['train', 'val', 'test'] as const) {
      const s = dataset.splits[split];
      for (const name of s.names) {
        const image = await readImageInfo(join(s.images, `${name}.png`));
        expect([image.bitDepth, image.width, image.height, image.channels]).toEqual([8, SIZE, SIZE, 1]);
        const mask = await readImage(join(s.masks, `${name}.png`));
        const ids = await readImage(join(s.instances, `${name}.png`));
        expect([mask.bitDepth, ids.bitDepth]).toEqual([8, 16]);
        expect(new Set(mask.data)).toEqual(new Set([0, 255]));
        let foreground = 0;
        let agree = true;
        for (let i = 0; i < mask.data.length; i++) {
          if (mask.data[i] === 255) foreground++;
          if ((mask.data[i] === 255) !== ids.data[i] > 0) agree = false;
        }
        expect(agree).toBe(true);
        const fraction = foreground / mask.data.length;
        expect(fraction).toBeCloseTo(dataset.foregroundFraction[name], 10);
        expect(fraction).toBeGreaterThan(0.04);
        expect(fraction).toBeLessThan(0.15);
        // ids are exactly 1..instanceCount
        const present = new Set(ids.data);
        present.delete(0);
        expect(present.size).toBe(dataset.instanceCount[name]);
        expect(Math.max(...present)).toBe(dataset.instanceCount[name]);
      }
    }
  });

  it('each instance is one 4-connected region, and no two instances touch', async () => {
    for (const name of dataset.splits.train.names) {
      const ids = (await readImage(join(dataset.splits.train.instances, `${name}.png`))).data as Uint16Array;
      const parts = partsPerInstance(ids, SIZE, SIZE, 1);
      expect(parts.size).toBe(dataset.instanceCount[name]);
      for (const sizes of parts.values()) expect(sizes).toHaveLength(1);
      expect(instancesTouch(ids, SIZE, SIZE, 1)).toBe(false);
    }
  });

  it('opens as a LabeledImages dataset with white-foreground masks', async () => {
    const train = await LabeledImages.open({ images: dataset.splits.train.images, labels: dataset.splits.train.masks, polarity: 'white-foreground' });
    expect(train.size).toBe(3);
    const sample = await train.load(0);
    const share = sample.mask.data.reduce((s, v) => s + v, 0) / sample.mask.data.length;
    expect(share).toBeCloseTo(dataset.foregroundFraction['train-000'], 10);
  });

  it('is deterministic: the same seed gives identical bytes, another seed other pixels', async () => {
    const again = await generateSyntheticMito({ dir: join(dir, 'b'), seed: 5, size: SIZE, count: { train: 3, val: 1, test: 1 } });
    const files = treeOf(dataset.root).filter((p) => p.endsWith('.png') || p.endsWith('.json'));
    for (const file of files) expect(readFileSync(join(again.root, file)).equals(readFileSync(join(dataset.root, file)))).toBe(true);
    expect(again.foregroundFraction).toEqual(dataset.foregroundFraction);
    const other = await generateSyntheticMito({ dir: join(dir, 'c'), seed: 6, size: SIZE, count: { train: 1, val: 0, test: 0 } });
    const [x, y] = await Promise.all([
      readImage(join(other.splits.train.images, 'train-000.png')),
      readImage(join(dataset.splits.train.images, 'train-000.png')),
    ]);
    expect(Buffer.from(x.data).equals(Buffer.from(y.data))).toBe(false);
  });

  it('refuses a directory that is not empty', async () => {
    const used = join(dir, 'used');
    mkdirSync(used);
    writeFileSync(join(used, 'keep.txt'), 'x');
    await expect(generateSyntheticMito({ dir: used, seed: 1, size: 64, count: { train: 1, val: 0, test: 0 } })).rejects.toThrow(
      /used: already exists and is not empty/,
    );
  });

  it('renders a 512 x 512 scene in well under a second', () => {
    renderMitoScene(new Rng(0), { width: 512, height: 512 }); // warm-up (JIT)
    const start = performance.now();
    const scene = renderMitoScene(new Rng(1), { width: 512, height: 512 });
    const ms = performance.now() - start;
    expect(ms).toBeLessThan(1000);
    expect(scene.instanceCount).toBeGreaterThan(10);
    const fraction = scene.instances.reduce((s, v) => s + (v > 0 ? 1 : 0), 0) / scene.instances.length;
    expect(fraction).toBeGreaterThan(0.06);
    expect(fraction).toBeLessThan(0.11);
  });
});

describe('generateSyntheticMitoStack (3D)', () => {
  const W = 128;
  const D = 12;
  let stacks: SyntheticMitoStackDataset;
  beforeAll(async () => {
    stacks = await generateSyntheticMitoStack({ dir: join(dir, 'stack-a'), seed: 3, size: W, depth: D });
  });

  it('writes one image, mask and instance stack (multi-page TIFF, one slice per page)', async () => {
    expect(treeOf(stacks.root).filter((p) => p.endsWith('.tif'))).toEqual(['images/stack.tif', 'instances/stack.tif', 'masks/stack.tif']);
    expect(stacks.layout).toBe('flat');
    const [s] = stacks.stacks;
    expect(s).toMatchObject({ split: null, name: 'stack', image: join(stacks.root, 'images', 'stack.tif'), width: W, height: W, depth: D });
    expect(await readStackInfo(s.image)).toMatchObject({ depth: D, width: W, height: W, bitDepth: 8 });
    expect(await readStackInfo(s.mask)).toMatchObject({ depth: D, bitDepth: 8 });
    expect(await readStackInfo(s.instances)).toMatchObject({ depth: D, bitDepth: 16 });
  });

  it('masks are binary and agree with the instances on every slice; foreground is about 8%', async () => {
    const [s] = stacks.stacks;
    const [mask, ids] = await Promise.all([readStack(s.mask), readStack(s.instances)]);
    let foreground = 0;
    for (let z = 0; z < D; z++) {
      const m = mask.slices[z].data;
      const id = ids.slices[z].data;
      let n = 0;
      let binary = true;
      let agree = true;
      for (let i = 0; i < m.length; i++) {
        if (m[i] !== 0 && m[i] !== 255) binary = false;
        if ((m[i] === 255) !== id[i] > 0) agree = false;
        if (m[i] === 255) n++;
      }
      expect([z, binary, agree]).toEqual([z, true, true]);
      expect(n / m.length).toBeCloseTo(s.sliceForegroundFraction[z], 10);
      foreground += n;
    }
    expect(foreground / (W * W * D)).toBeCloseTo(s.foregroundFraction, 10);
    expect(s.foregroundFraction).toBeGreaterThan(0.04);
    expect(s.foregroundFraction).toBeLessThan(0.15);
  });

  it('an instance continues across slices with the same id: contiguous in z, overlapping, one 6-connected region', async () => {
    const [s] = stacks.stacks;
    const ids = await readStack(s.instances);
    const volume = new Uint16Array(W * W * D);
    ids.slices.forEach((slice, z) => volume.set(slice.data, z * W * W));
    const parts = partsPerInstance(volume, W, W, D);
    expect(parts.size).toBe(s.instanceCount);
    for (const sizes of parts.values()) expect(sizes).toHaveLength(1);
    expect(instancesTouch(volume, W, W, D)).toBe(false);
    // Per instance: the slices it is on, and whether consecutive sections share a pixel.
    const plane = W * W;
    const spans: number[] = [];
    for (const id of parts.keys()) {
      const on: number[] = [];
      for (let z = 0; z < D; z++) if (volume.subarray(z * plane, (z + 1) * plane).includes(id)) on.push(z);
      expect(on[on.length - 1] - on[0] + 1).toBe(on.length); // no gap in z
      for (let k = 1; k < on.length; k++) {
        let shared = false;
        for (let i = 0; i < plane && !shared; i++) shared = volume[on[k - 1] * plane + i] === id && volume[on[k] * plane + i] === id;
        expect(shared).toBe(true);
      }
      spans.push(on.length);
    }
    expect(spans.filter((n) => n >= 2).length).toBeGreaterThan(0.8 * spans.length);
    expect(spans.reduce((a, b) => a + b, 0) / spans.length).toBeGreaterThan(3);
  });

  it('is deterministic; with count, stacks go into the split folders', async () => {
    const again = await generateSyntheticMitoStack({ dir: join(dir, 'stack-b'), seed: 3, size: W, depth: D });
    for (const file of ['images/stack.tif', 'masks/stack.tif', 'instances/stack.tif']) {
      expect(readFileSync(join(again.root, file)).equals(readFileSync(join(stacks.root, file)))).toBe(true);
    }
    const other = await generateSyntheticMitoStack({ dir: join(dir, 'stack-c'), seed: 4, size: W, depth: D });
    expect(readFileSync(other.stacks[0].image).equals(readFileSync(stacks.stacks[0].image))).toBe(false);

    const split = await generateSyntheticMitoStack({ dir: join(dir, 'stack-d'), seed: 3, size: [96, 80], depth: 6, count: { train: 2, val: 1, test: 0 } });
    expect(split.layout).toBe('split-folders');
    expect(treeOf(split.root).filter((p) => p.endsWith('.tif'))).toEqual(
      [
        'train/images/train-000',
        'train/images/train-001',
        'train/instances/train-000',
        'train/instances/train-001',
        'train/masks/train-000',
        'train/masks/train-001',
      ]
        .concat(['val/images/val-000', 'val/instances/val-000', 'val/masks/val-000'])
        .map((p) => `${p}.tif`),
    );
    expect(await readStackInfo(split.stacks[2].instances)).toMatchObject({ width: 96, height: 80, depth: 6, bitDepth: 16 });
    expect(split.stacks.map((s) => [s.split, s.name])).toEqual([
      ['train', 'train-000'],
      ['train', 'train-001'],
      ['val', 'val-000'],
    ]);
  });
});
