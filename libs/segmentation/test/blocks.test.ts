/**
 * Issue 15 part 2, library side: the block plan (chunk-aligned blocks covering every voxel once,
 * round-robin shards), the halo'd input region, block prediction (a block equals `predictImage` of
 * its whole slice when the halo reaches the volume's edges; every block written exactly where it
 * belongs; no tensors kept) and the done markers.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as zarr from 'zarrita';
import FileSystemStore from '@zarrita/storage/fs';
import { createZarrVolume, openZarrVolume, type GreyImage, type ZarrVolume } from '@emseg/data';
import { resnetEncoder } from '@emseg/models';
import { tensorCountGuard } from '@emseg/tf';
import {
  blockAt,
  inputRegion,
  isBlockDone,
  planBlocks,
  predictBlock,
  predictImage,
  Segmenter,
  shardIndices,
  writeDoneMarker,
  type InferenceOptions,
} from '@emseg/segmentation';

const tmp = mkdtempSync(join(tmpdir(), 'emseg-blocks-'));
const [D, H, W] = [3, 80, 100];
const inference: InferenceOptions = { tileSize: 64, overlap: 16, window: 'gaussian', batchSize: 2, flipTta: false };
let segmenter: Segmenter;
let input: ZarrVolume;
let volume: Uint8Array;

beforeAll(async () => {
  segmenter = Segmenter.create(
    resnetEncoder({ depth: 18, seed: 3 }),
    { mean: [0.5], std: [0.2] },
    { encoderSource: 'random', encoderRunId: null },
    { decoderChannels: [32, 16, 16, 8, 8], seed: 4 },
  );
  volume = Uint8Array.from({ length: D * H * W }, (_, i) => {
    const [z, y, x] = [Math.floor(i / (H * W)), Math.floor(i / W) % H, i % W];
    return Math.round(128 + 100 * Math.sin((x + 5 * z) / 7) * Math.cos(y / 9)) & 255;
  });
  input = await createZarrVolume(join(tmp, 'in.zarr'), { shape: [D, H, W], chunks: [2, 40, 50], dtype: 'uint8' });
  await input.write([0, 0, 0], [D, H, W], volume);
});

afterAll(() => {
  segmenter?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

describe('planBlocks, blockAt, shardIndices', () => {
  it('blocks of whole chunks cover every voxel exactly once, the last ones cut by the edges', () => {
    const plan = planBlocks([5, 100, 70], [2, 32, 32], [1, 2, 2]);
    expect([plan.blockShape, plan.grid, plan.count]).toEqual([[2, 64, 64], [3, 2, 2], 12]);
    const covered = new Uint8Array(5 * 100 * 70);
    for (let i = 0; i < plan.count; i++) {
      const b = blockAt(plan, i);
      b.start.forEach((s, a) => expect(s % plan.chunks[a]).toBe(0));
      for (let z = b.start[0]; z < b.start[0] + b.shape[0]; z++)
        for (let y = b.start[1]; y < b.start[1] + b.shape[1]; y++) for (let x = b.start[2]; x < b.start[2] + b.shape[2]; x++) covered[(z * 100 + y) * 70 + x]++;
    }
    expect(covered.every((c) => c === 1)).toBe(true);
    expect(blockAt(plan, 11)).toEqual({ index: 11, id: '2-1-1', start: [4, 64, 64], shape: [1, 36, 6] });
    expect(() => blockAt(plan, 12)).toThrow(/block index 12 is outside the plan's 12 blocks/);
  });

  it('a 2D volume is one block deep; blocks never exceed the volume', () => {
    const plan = planBlocks([50, 40], [16, 16], [4, 8, 8]);
    expect([plan.shape, plan.blockShape, plan.count]).toEqual([[1, 50, 40], [1, 50, 40], 1]);
  });

  it('shards split the blocks round robin, together exactly once', () => {
    expect(shardIndices(7, { index: 0, count: 2 })).toEqual([0, 2, 4, 6]);
    expect(shardIndices(7, { index: 1, count: 2 })).toEqual([1, 3, 5]);
    expect(() => shardIndices(7, { index: 2, count: 2 })).toThrow(/shard 2\/2: the index must be a whole number in \[0, 2\)/);
  });

  it('the input region: the block plus the halo, widened to a tile, inside the volume', () => {
    const block = { index: 0, id: '0-0-1', start: [0, 0, 64], shape: [2, 64, 6] };
    expect(inputRegion(block, [2, 100, 70], 8, 64)).toEqual({ start: [0, 0, 6], shape: [2, 72, 64] });
    expect(inputRegion({ ...block, start: [0, 16, 16], shape: [2, 16, 16] }, [2, 100, 70], 4, 64)).toEqual({ start: [0, 0, 0], shape: [2, 64, 64] });
    expect(inputRegion({ ...block, start: [0, 40, 30], shape: [2, 16, 16] }, [2, 200, 200], 4, 64)).toEqual({ start: [0, 16, 6], shape: [2, 64, 64] });
    expect(inputRegion({ ...block, start: [0, 0, 0], shape: [2, 30, 30] }, [2, 30, 30], 16, 64)).toEqual({ start: [0, 0, 0], shape: [2, 30, 30] });
  });
});

describe('predictBlock', () => {
  const slice = (z: number): GreyImage => ({ width: W, height: H, bitDepth: 8, data: volume.slice(z * H * W, (z + 1) * H * W) });

  it('with a halo reaching the edges, every block is predictImage of its whole slice, cropped and quantised; no tensors kept', async () => {
    const output = await createZarrVolume(join(tmp, 'out-full.zarr'), { shape: [D, H, W], chunks: [1, 16, 25], dtype: 'uint16' });
    const plan = planBlocks(output.shape, output.chunks, [2, 2, 2]);
    expect(plan.count).toBe(2 * 3 * 2);
    const guard = tensorCountGuard();
    for (let i = 0; i < plan.count; i++) await predictBlock(segmenter, input, output, blockAt(plan, i), { inference, halo: W });
    expect(guard.leaked()).toBe(0);
    for (let z = 0; z < D; z++) {
      const p = await predictImage(segmenter, slice(z), inference);
      const want = Array.from(p, (v) => Math.round(Math.min(1, Math.max(0, v)) * 65535));
      expect(Array.from(await output.read([z, 0, 0], [1, H, W]))).toEqual(want);
    }
  });

  it('a small halo gives a block the context of its region only, and uint8 output', async () => {
    const output = await createZarrVolume(join(tmp, 'out-halo.zarr'), { shape: [D, H, W], chunks: [1, 40, 50], dtype: 'uint8' });
    const block = blockAt(planBlocks(output.shape, output.chunks, [1, 1, 1]), 3);
    expect(block).toMatchObject({ id: '0-1-1', start: [0, 40, 50], shape: [1, 40, 50] });
    const r = await predictBlock(segmenter, input, output, block, { inference, halo: 8 });
    // its region: y 32..80 and x 42..100 (halo 8, cut by the edges), each widened to a tile inside the volume
    const region = { x: 36, y: 16, width: 64, height: 64 };
    const cut = new Uint8Array(region.width * region.height);
    for (let y = 0; y < region.height; y++)
      cut.set(volume.subarray((region.y + y) * W + region.x, (region.y + y) * W + region.x + region.width), y * region.width);
    const p = await predictImage(segmenter, { width: region.width, height: region.height, bitDepth: 8, data: cut }, inference);
    const want: number[] = [];
    for (let y = 24; y < 64; y++) for (let x = 14; x < 64; x++) want.push(Math.round(Math.min(1, Math.max(0, p[y * region.width + x])) * 255));
    expect(Array.from(await output.read([0, 40, 50], [1, 40, 50]))).toEqual(want);
    expect(r.meanProbability).toBeGreaterThan(0);
    expect(Array.from(await output.read([0, 0, 0], [1, 40, 50])).every((v) => v === 0)).toBe(true);
  });

  it('a 2D volume of float32 grey values in [0, 1] predicts as its 8-bit twin (v / 255 is 16-bit exact)', async () => {
    const plane = volume.subarray(0, H * W);
    const grey = await createZarrVolume(join(tmp, 'in-2d.zarr'), { shape: [H, W], chunks: [40, 50], dtype: 'uint8' });
    await grey.write([0, 0], [H, W], plane);
    // float32 input (createZarrVolume makes only outputs: uint8 / uint16), written by plain zarrita
    const floatPath = join(tmp, 'in-2d-float.zarr');
    const arr = await zarr.create(new FileSystemStore(floatPath), { shape: [H, W], chunkShape: [40, 50], dtype: 'float32' });
    await zarr.set(arr, null, { data: Float32Array.from(plane, (v) => v / 255), shape: [H, W], stride: [W, 1] });
    const float = await openZarrVolume(floatPath);
    expect(float.dtype).toBe('float32');
    const outs = [];
    for (const [name, source] of [
      ['grey', grey],
      ['float', float],
    ] as const) {
      const out = await createZarrVolume(join(tmp, `out-2d-${name}.zarr`), { shape: [H, W], chunks: [40, 50], dtype: 'uint16' });
      const plan = planBlocks(out.shape, out.chunks, [1, 1, 1]);
      expect(plan.count).toBe(4);
      for (let i = 0; i < plan.count; i++) await predictBlock(segmenter, source, out, blockAt(plan, i), { inference, halo: 16 });
      outs.push(Array.from(await out.read([0, 0], [H, W])));
    }
    expect(outs[1]).toEqual(outs[0]);
    expect(new Set(outs[0]).size).toBeGreaterThan(100);
  });

  it('done markers: absent until written, after the data', async () => {
    const root = join(tmp, 'out-markers.zarr');
    const block = { index: 5, id: '1-0-1', start: [2, 0, 50], shape: [1, 40, 50] };
    expect(await isBlockDone(root, block.id)).toBe(false);
    await writeDoneMarker(root, { block, meanProbability: 0.25, seconds: 1.5 }, 'test');
    expect(await isBlockDone(root, block.id)).toBe(true);
    expect(await isBlockDone(root, '1-0-0')).toBe(false);
  });
});
