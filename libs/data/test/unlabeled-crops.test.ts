import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { DataError, UnlabeledCrops, generateSyntheticCrops, writeImage, type ViewBatch } from '@emseg/data';
import { pattern8, tempDir } from './helpers.js';

const dir = tempDir('crops');
const root = join(dir, 'crops');

beforeAll(async () => {
  await generateSyntheticCrops({ dir: root, seed: 3, count: 40, size: 32, sources: 3 });
});

async function collect(crops: UnlabeledCrops, options: Parameters<UnlabeledCrops['stream']>[0]): Promise<ViewBatch[]> {
  const out: ViewBatch[] = [];
  for await (const batch of crops.stream(options)) out.push(batch);
  return out;
}

describe('UnlabeledCrops listing', () => {
  it('lists every crop of the tree once, sorted, with relative paths', async () => {
    const crops = await UnlabeledCrops.open(root);
    expect(crops.size).toBe(40);
    expect(crops.files).toEqual([...crops.files].sort());
    expect(new Set(crops.files.map((f) => f.split('/')[0]))).toEqual(new Set(['source-00', 'source-01', 'source-02']));
    expect((await crops.read(0)).width).toBe(32);
  });

  it('writes a manifest once and reads it instead of walking the tree', async () => {
    const manifest = join(dir, 'crops.manifest');
    const first = await UnlabeledCrops.open(root, { manifest });
    expect(readFileSync(manifest, 'utf8').split('\n')[0]).toBe('# emseg crop manifest v1');
    // A new file is not seen while the manifest is used, and is seen after a refresh.
    await writeImage(join(root, 'source-00', 'zz-extra.png'), { width: 32, height: 32, bitDepth: 8, data: pattern8(32, 32) });
    try {
      expect((await UnlabeledCrops.open(root, { manifest })).files).toEqual(first.files);
      expect((await UnlabeledCrops.open(root, { manifest, refresh: true })).size).toBe(41);
    } finally {
      rmSync(join(root, 'source-00', 'zz-extra.png'));
      await UnlabeledCrops.open(root, { manifest, refresh: true });
    }
  });

  it('rejects a manifest that is not one', async () => {
    const bad = join(dir, 'bad.manifest');
    writeFileSync(bad, 'a.png\n');
    await expect(UnlabeledCrops.open(root, { manifest: bad })).rejects.toThrow(/bad\.manifest: first line is "a\.png"; expected a crop manifest/);
  });
});

describe('epochs and streaming', () => {
  it('shuffles each epoch differently, reproducibly by seed', async () => {
    const crops = await UnlabeledCrops.open(root);
    const e0 = Array.from(crops.epochOrder(7, 0));
    expect([...e0].sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(Array.from(crops.epochOrder(7, 0))).toEqual(e0);
    expect(Array.from(crops.epochOrder(7, 1))).not.toEqual(e0);
    expect(Array.from(crops.epochOrder(8, 0))).not.toEqual(e0);
  });

  it('yields batches of two augmented views in epoch order, dropping the incomplete last batch', async () => {
    const crops = await UnlabeledCrops.open(root);
    const batches = await collect(crops, { seed: 1, epoch: 0, batchSize: 16, size: 24 });
    expect(batches).toHaveLength(2);
    const order = crops.epochOrder(1, 0);
    batches.forEach((b, k) => {
      expect(b.index).toBe(k);
      expect(Array.from(b.crops)).toEqual(Array.from(order.subarray(16 * k, 16 * k + 16)));
      expect(b.views).toHaveLength(2);
      for (const v of b.views) {
        expect([v.size, v.height, v.width, v.data.length]).toEqual([16, 24, 24, 16 * 24 * 24]);
        expect(Math.min(...v.data)).toBeGreaterThanOrEqual(0);
        expect(Math.max(...v.data)).toBeLessThanOrEqual(1);
      }
      // The two views of a crop differ (independent augmentations).
      expect(b.views[0].data).not.toEqual(b.views[1].data);
    });
    expect((await collect(crops, { seed: 1, epoch: 0, batchSize: 16, size: 24, dropLast: false })).map((b) => b.crops.length)).toEqual([16, 16, 8]);
  });

  it('gives the same batches whatever the prefetch depth (contents never depend on timing)', async () => {
    const crops = await UnlabeledCrops.open(root);
    const a = await collect(crops, { seed: 5, epoch: 2, batchSize: 8, size: 20, prefetch: 1 });
    const b = await collect(crops, { seed: 5, epoch: 2, batchSize: 8, size: 20, prefetch: 4 });
    expect(b).toEqual(a);
    const c = await collect(crops, { seed: 5, epoch: 3, batchSize: 8, size: 20 });
    expect(c[0].views[0].data).not.toEqual(a[0].views[0].data);
  });

  it('gives the same batches when worker threads decode and augment', async () => {
    const crops = await UnlabeledCrops.open(root);
    const inProcess = await collect(crops, { seed: 4, epoch: 1, batchSize: 8, size: 20 });
    const threaded = await collect(crops, { seed: 4, epoch: 1, batchSize: 8, size: 20, workers: 2 });
    expect(threaded).toEqual(inProcess);
  });

  it('reports a bad crop from a worker thread as a DataError with its path', async () => {
    const copy = join(dir, 'bad-in-worker');
    await generateSyntheticCrops({ dir: copy, seed: 4, count: 4, size: 16, sources: 1 });
    const crops = await UnlabeledCrops.open(copy);
    writeFileSync(join(copy, crops.files[1]), 'not a png');
    const err = await collect(crops, { seed: 1, epoch: 0, batchSize: 4, size: 16, workers: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DataError);
    expect((err as DataError).path).toBe(join(copy, crops.files[1]));
    expect((err as DataError).message).toMatch(/0000001\.png: is not a readable image/);
  });

  it('counts the time the consumer waited', async () => {
    const crops = await UnlabeledCrops.open(root);
    const stream = crops.stream({ seed: 1, epoch: 0, batchSize: 10, size: 16 });
    for await (const batch of stream) expect(batch.views).toHaveLength(2);
    expect(stream.stats.batches).toBe(4);
    expect(stream.stats.crops).toBe(40);
    expect(stream.stats.waitMs).toBeGreaterThan(0);
  });

  it('surfaces a crop that vanished after listing, naming it', async () => {
    const copy = join(dir, 'vanishing');
    await generateSyntheticCrops({ dir: copy, seed: 4, count: 4, size: 16, sources: 1 });
    const crops = await UnlabeledCrops.open(copy);
    rmSync(join(copy, crops.files[2]));
    await expect(collect(crops, { seed: 1, epoch: 0, batchSize: 4, size: 16 })).rejects.toThrow(/0000002\.png: does not exist/);
  });

  it('refuses a batch larger than the dataset', async () => {
    const crops = await UnlabeledCrops.open(root);
    expect(() => crops.stream({ seed: 1, epoch: 0, batchSize: 64, size: 16 })).toThrow(/has 40 crops, fewer than one batch of 64/);
  });
});

describe('digest', () => {
  it('is stable, and changes when a file changes, appears or disappears', async () => {
    const copy = join(dir, 'digest');
    await generateSyntheticCrops({ dir: copy, seed: 9, count: 6, size: 16, sources: 2 });
    const crops = await UnlabeledCrops.open(copy);
    const d1 = await crops.digest();
    expect(d1.digest).toMatch(/^[0-9a-f]{16}$/);
    expect(d1.files).toBe(6);
    expect(await crops.digest()).toEqual(d1);
    await writeImage(join(copy, crops.files[0]), { width: 16, height: 16, bitDepth: 8, data: pattern8(16, 16) });
    const d2 = await crops.digest();
    expect(d2.digest).not.toBe(d1.digest);
    mkdirSync(join(copy, 'more'));
    await writeImage(join(copy, 'more', 'x.png'), { width: 16, height: 16, bitDepth: 8, data: pattern8(16, 16) });
    expect((await (await UnlabeledCrops.open(copy)).digest()).digest).not.toBe(d2.digest);
  });
});
