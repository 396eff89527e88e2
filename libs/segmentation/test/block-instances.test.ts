/**
 * Block-wise instance labels (issue 15, "optionally instance labels as Zarr, chunk-aligned"): the
 * three passes give labels IDENTICAL (same ids) to `connectedInstances` of the whole thresholded
 * volume, for blocks that cut blobs, snakes winding through many blocks and objects that touch only
 * diagonally across a block face, edge or corner; connectivity 6, 18, 26 (4, 8 in 2D), with and
 * without minSize; in any block order; reruns skip done work; wrong use is refused.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as zarr from 'zarrita';
import FileSystemStore from '@zarrita/storage/fs';
import { createZarrVolume, openZarrVolume, type ZarrVolume } from '@emseg/data';
import { connectedInstances, type Connectivity } from '@emseg/evaluation';
import {
  blockAt,
  blockwiseInstances,
  doneMarkerPath,
  jobFolder,
  labelBlockPass1,
  mergeBlockLabels,
  openInstanceLabels,
  prepareInstanceJob,
  probabilityLevel,
  readMerge,
  relabelBlock,
} from '@emseg/segmentation';

const tmp = mkdtempSync(join(tmpdir(), 'emseg-block-instances-'));
const [D, H, W] = [20, 70, 90];
const CHUNKS = [8, 32, 32];
let outputs = 0;
const nextOutput = () => join(tmp, `labels-${outputs++}.zarr`);

/** mulberry32: a small seeded generator. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * uint8 probabilities (foreground where q >= 128, threshold 0.5): ellipsoid blobs (some exactly at
 * 128), sparse single voxels, a 6-connected snake, an 18-connected and a 26-connected diagonal snake
 * winding through many blocks, on background noise below 128.
 */
function blobVolume(seed: number): Uint8Array {
  const rnd = random(seed);
  const q = Uint8Array.from({ length: D * H * W }, () => Math.floor(rnd() * 128));
  const set = (z: number, y: number, x: number, v: number) => {
    if (z >= 0 && z < D && y >= 0 && y < H && x >= 0 && x < W) q[(z * H + y) * W + x] = v;
  };
  for (let k = 0; k < 45; k++) {
    const [cz, cy, cx] = [rnd() * D, rnd() * H, rnd() * W];
    const [rz, ry, rx] = [1 + rnd() * 4, 1 + rnd() * 8, 1 + rnd() * 8];
    const v = k % 3 === 0 ? 128 : 200;
    for (let z = Math.floor(cz - rz); z <= cz + rz; z++)
      for (let y = Math.floor(cy - ry); y <= cy + ry; y++)
        for (let x = Math.floor(cx - rx); x <= cx + rx; x++) if (((z - cz) / rz) ** 2 + ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1) set(z, y, x, v);
  }
  for (let i = 0; i < q.length; i++) if (rnd() < 0.005) q[i] = 150;
  // snakes: `axes` coordinates change per step (1: face steps, 2: 18-diagonal, 3: 26-diagonal)
  for (const axes of [1, 2, 3]) {
    let [z, y, x] = [Math.floor(rnd() * D), Math.floor(rnd() * H), Math.floor(rnd() * W)];
    let dir = [1, 1, 1];
    for (let step = 0; step < 400; step++) {
      set(z, y, x, 255);
      if (rnd() < 0.1) dir = dir.map(() => (rnd() < 0.5 ? -1 : 1));
      const pick = [0, 1, 2].sort(() => rnd() - 0.5).slice(0, axes);
      const p = [z, y, x];
      for (const a of pick) {
        const lim = [D, H, W][a];
        if (p[a] + dir[a] < 0 || p[a] + dir[a] >= lim) dir[a] = -dir[a];
        p[a] += dir[a];
      }
      [z, y, x] = p;
    }
  }
  return q;
}

/** Independent voxels at density 0.08 (below percolation for 6, 18 and 26): thousands of face, edge and corner contacts across block faces. */
const noiseVolume = (seed: number) => {
  const rnd = random(seed);
  return Uint8Array.from({ length: D * H * W }, () => (rnd() < 0.08 ? 255 : 0));
};

async function writeProbabilities(name: string, q: Uint8Array | Uint16Array, shape: number[], chunks: number[]): Promise<ZarrVolume> {
  const vol = await createZarrVolume(join(tmp, name), { shape, chunks, dtype: q instanceof Uint8Array ? 'uint8' : 'uint16' });
  await vol.write(
    shape.map(() => 0),
    shape,
    q,
  );
  return vol;
}

/** The first difference of two label arrays, or null. */
function firstDifference(got: ArrayLike<number>, want: ArrayLike<number>): string | null {
  if (got.length !== want.length) return `length ${got.length} vs ${want.length}`;
  for (let i = 0; i < got.length; i++) if (got[i] !== want[i]) return `voxel ${i}: ${got[i]} vs ${want[i]}`;
  return null;
}

/** Instances (final id > 0) whose voxels lie in more than one block, and the most blocks one spans. */
function spanning(labels: ArrayLike<number>, shape: number[], blockShape: number[]): { crossing: number; most: number } {
  const blocks = new Map<number, Set<string>>();
  const [, h, w] = shape;
  for (let i = 0; i < labels.length; i++) {
    const l = labels[i];
    if (l === 0) continue;
    const key = [Math.floor(i / (h * w)), Math.floor(i / w) % h, i % w].map((c, a) => Math.floor(c / blockShape[a])).join('-');
    let set = blocks.get(l);
    if (!set) blocks.set(l, (set = new Set()));
    set.add(key);
  }
  const sizes = [...blocks.values()].map((s) => s.size);
  return { crossing: sizes.filter((n) => n > 1).length, most: Math.max(0, ...sizes) };
}

let blobs: ZarrVolume;
let blobs16: ZarrVolume;
let noise: ZarrVolume;
let blobMask: Uint8Array;
let noiseMask: Uint8Array;

beforeAll(async () => {
  const q = blobVolume(7);
  blobs = await writeProbabilities('blobs.zarr', q, [D, H, W], CHUNKS);
  // the same probabilities in 16 bits: q * 257 >= 32768 exactly where q >= 128
  blobs16 = await writeProbabilities(
    'blobs16.zarr',
    Uint16Array.from(q, (v) => v * 257),
    [D, H, W],
    CHUNKS,
  );
  blobMask = Uint8Array.from(q, (v) => (v >= 128 ? 1 : 0));
  const n = noiseVolume(11);
  noise = await writeProbabilities('noise.zarr', n, [D, H, W], CHUNKS);
  noiseMask = Uint8Array.from(n, (v) => (v >= 128 ? 1 : 0));
});

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('probabilityLevel', () => {
  it('is the block predictor mask level: every probability that rounds to the level or above is >= the threshold', () => {
    expect([probabilityLevel(0.5, 255), probabilityLevel(0.5, 65535), probabilityLevel(0, 255), probabilityLevel(1, 255)]).toEqual([128, 32768, 0, 255]);
  });
});

describe('blockwiseInstances equals connectedInstances of the whole volume, id for id', () => {
  // `blocks`: the most blocks one instance must span (the snakes wind through many)
  const cases: { name: string; volume: () => ZarrVolume; mask: () => Uint8Array; connectivity: Connectivity; minSize: number; blocks: number }[] = [];
  for (const connectivity of [6, 18, 26] as const)
    for (const minSize of [1, 25]) cases.push({ name: 'blobs and snakes', volume: () => blobs, mask: () => blobMask, connectivity, minSize, blocks: 8 });
  for (const connectivity of [6, 18, 26] as const)
    for (const minSize of [1, 4]) cases.push({ name: 'sparse noise', volume: () => noise, mask: () => noiseMask, connectivity, minSize, blocks: 2 });
  cases.push({ name: 'blobs and snakes, uint16 probabilities', volume: () => blobs16, mask: () => blobMask, connectivity: 26, minSize: 10, blocks: 8 });

  it.each(cases)('$name, connectivity $connectivity, minSize $minSize', async ({ volume, mask, connectivity, minSize, blocks }) => {
    const want = connectedInstances({ width: W, height: H, depth: D, data: mask() }, { connectivity, minSize });
    const { labels, merge, labelled, relabelled } = await blockwiseInstances(volume(), nextOutput(), { threshold: 0.5, connectivity, minSize });
    expect([labelled, relabelled, merge.count, merge.dtype, labels.dtype, labels.chunks]).toEqual([27, 27, want.count, 'uint16', 'uint16', CHUNKS]);
    const got = await labels.read([0, 0, 0], [D, H, W]);
    expect(firstDifference(got, want.data)).toBeNull();
    // the blocks really cut the objects
    const { crossing, most } = spanning(want.data, [D, H, W], CHUNKS);
    expect(Math.min(want.count, crossing)).toBeGreaterThan(5);
    expect(most).toBeGreaterThanOrEqual(blocks);
    if (minSize > 1) expect(merge.provisional).toBeGreaterThan(want.count);
  });

  it('the connectivities really differ on these volumes (so each case tests its own merge)', () => {
    const counts = [6, 18, 26].map(
      (c) => connectedInstances({ width: W, height: H, depth: D, data: noiseMask }, { connectivity: c as Connectivity, ids: 'uint32' }).count,
    );
    expect(counts[0]).toBeGreaterThan(counts[1]);
    expect(counts[1]).toBeGreaterThan(counts[2]);
  });
});

describe('float32 probabilities', () => {
  it('are foreground where p >= threshold, exactly', async () => {
    const rnd = random(3);
    // values on both sides of the threshold 0.3, and exactly 0.3
    const p = Float32Array.from({ length: D * H * W }, () => [0.1, 0.2999, 0.3, 0.3001, 0.9][Math.floor(rnd() * 5)] * (rnd() < 0.25 ? 1 : 0));
    const path = join(tmp, 'float.zarr');
    const arr = await zarr.create(new FileSystemStore(path), { shape: [D, H, W], chunkShape: CHUNKS, dtype: 'float32' });
    await zarr.set(arr, null, { data: p, shape: [D, H, W], stride: [H * W, W, 1] });
    const want = connectedInstances({ width: W, height: H, depth: D, data: p }, { threshold: Math.fround(0.3), connectivity: 18, minSize: 2 });
    const { labels, merge } = await blockwiseInstances(await openZarrVolume(path), nextOutput(), { threshold: Math.fround(0.3), connectivity: 18, minSize: 2 });
    expect(merge.count).toBe(want.count);
    expect(firstDifference(await labels.read([0, 0, 0], [D, H, W]), want.data)).toBeNull();
  });
});

describe('contacts only across a block face, edge or corner', () => {
  it('joins them exactly under the connectivities that make them neighbours', async () => {
    const [d, h, w] = [16, 64, 64];
    const q = new Uint8Array(d * h * w);
    const pairs: [number[], number[], Connectivity][] = [
      [[7, 10, 10], [8, 11, 11], 26], // across the z face, diagonal in y and x
      [[7, 10, 20], [8, 11, 20], 18], // across the z face, diagonal in y
      [[7, 31, 45], [8, 32, 45], 18], // across the z-y block edge
      [[7, 31, 31], [8, 32, 32], 26], // across the block corner
      [[3, 31, 31], [3, 32, 32], 18], // across the y-x block edge inside one slice
      [[12, 20, 31], [12, 20, 32], 6], // across the x face
    ];
    for (const [a, b] of pairs) for (const [z, y, x] of [a, b]) q[(z * h + y) * w + x] = 255;
    const vol = await writeProbabilities('contacts.zarr', q, [d, h, w], [8, 32, 32]);
    const mask = Uint8Array.from(q, (v) => (v ? 1 : 0));
    for (const connectivity of [6, 18, 26] as const) {
      const joined = pairs.filter(([, , c]) => c <= connectivity).length;
      const want = connectedInstances({ width: w, height: h, depth: d, data: mask }, { connectivity });
      expect(want.count).toBe(2 * pairs.length - joined);
      const { labels, merge } = await blockwiseInstances(vol, nextOutput(), { threshold: 0.5, connectivity });
      expect(merge.count).toBe(want.count);
      expect(firstDifference(await labels.read([0, 0, 0], [d, h, w]), want.data)).toBeNull();
    }
  });
});

describe('the passes one by one, as distributed engines run them', () => {
  it('in any block order (reversed, and pass 3 interleaved across workers) the labels are the same', async () => {
    const output = nextOutput();
    const job = await prepareInstanceJob(noise, output, { threshold: 0.5, connectivity: 26, minSize: 3 });
    const order = Array.from({ length: job.plan.count }, (_, i) => job.plan.count - 1 - i);
    for (const i of order) expect((await labelBlockPass1(job, i)).skipped).toBe(false);
    const { merge } = await mergeBlockLabels(job);
    const labels = await openInstanceLabels(job);
    for (const i of [...order.filter((i) => i % 2 === 0), ...order.filter((i) => i % 2 === 1)]) await relabelBlock(job, i);
    const want = connectedInstances({ width: W, height: H, depth: D, data: noiseMask }, { connectivity: 26, minSize: 3 });
    expect(merge.count).toBe(want.count);
    expect(firstDifference(await labels.read([0, 0, 0], [D, H, W]), want.data)).toBeNull();
  });

  it('a rerun skips done blocks and the done merge; a block interrupted before its marker is redone', async () => {
    const output = nextOutput();
    const options = { threshold: 0.5, connectivity: 6 as const, minSize: 2 };
    const first = await blockwiseInstances(blobs, output, options);
    const again = await blockwiseInstances(blobs, output, options);
    expect([again.labelled, again.relabelled, again.mergeSkipped, again.merge.count]).toEqual([0, 0, true, first.merge.count]);
    // block 13 lost its pass-1 record and block 5 its pass-3 marker (killed before writing them)
    rmSync(join(jobFolder(output), 'provisional', `${blockAt(first.job.plan, 13).id}.json`));
    rmSync(doneMarkerPath(output, blockAt(first.job.plan, 5).id));
    const resumed = await blockwiseInstances(blobs, output, options);
    expect([resumed.labelled, resumed.relabelled, resumed.mergeSkipped]).toEqual([1, 1, true]);
    const want = connectedInstances({ width: W, height: H, depth: D, data: blobMask }, { connectivity: 6, minSize: 2 });
    expect(firstDifference(await resumed.labels.read([0, 0, 0], [D, H, W]), want.data)).toBeNull();
    expect(existsSync(join(jobFolder(output), 'provisional.zarr', 'zarr.json'))).toBe(true);
  });

  it('refuses other parameters on a started job, a merge before pass 1, pass 3 before the merge and bad options', async () => {
    const output = nextOutput();
    const job = await prepareInstanceJob(blobs, output, { threshold: 0.5, connectivity: 26 });
    await expect(prepareInstanceJob(blobs, output, { threshold: 0.5, connectivity: 26, minSize: 5 })).rejects.toThrow(
      /holds a labelling job with other parameters .*: choose another output or remove it/,
    );
    await labelBlockPass1(job, 0);
    await expect(mergeBlockLabels(job)).rejects.toThrow(/26 of 27 blocks have no pass-1 record yet \(0-0-1, 0-0-2, .*\); run pass 1 on every block/);
    await expect(relabelBlock(job, 0)).rejects.toThrow(/has no merge yet; run mergeBlockLabels before relabelling block 0-0-0/);
    expect(await readMerge(job)).toBeNull();
    await expect(prepareInstanceJob(blobs, nextOutput(), { threshold: 0.5, connectivity: 4 })).rejects.toThrow(
      /connectivity must be 6, 18 or 26 for a 3D volume, got 4/,
    );
    await expect(prepareInstanceJob(blobs, nextOutput(), { threshold: 1.5 })).rejects.toThrow(/threshold must be a probability in \[0, 1\], got 1.5/);
    await expect(prepareInstanceJob(blobs, nextOutput(), { threshold: 0.5, minSize: -1 })).rejects.toThrow(/minSize must be an integer >= 0, got -1/);
  });
});

describe('2D volumes ([y, x])', () => {
  it('connectivity 4 and 8, minSize 1 and 3: the same ids as connectedInstances of the whole image', async () => {
    const rnd = random(5);
    const q = Uint8Array.from({ length: H * W }, () => (rnd() < 0.4 ? 255 : 0));
    const vol = await writeProbabilities('image.zarr', q, [H, W], [16, 16]);
    const mask = Uint8Array.from(q, (v) => (v ? 1 : 0));
    for (const connectivity of [4, 8] as const)
      for (const minSize of [1, 3]) {
        const want = connectedInstances({ width: W, height: H, data: mask }, { connectivity, minSize });
        const { labels, merge, job } = await blockwiseInstances(vol, nextOutput(), { threshold: 0.5, connectivity, minSize, blockChunks: [1, 2, 2] });
        expect([job.plan.grid, labels.shape, merge.count]).toEqual([[1, 3, 3], [H, W], want.count]);
        expect(firstDifference(await labels.read([0, 0], [H, W]), want.data)).toBeNull();
      }
  });

  it('more than 65535 instances give uint32 labels', async () => {
    const [h, w] = [540, 540];
    const q = Uint8Array.from({ length: h * w }, (_, i) => (Math.floor(i / w) % 2 === 0 && (i % w) % 2 === 0 ? 255 : 0));
    const vol = await writeProbabilities('dots.zarr', q, [h, w], [128, 128]);
    const want = connectedInstances({ width: w, height: h, data: Uint8Array.from(q, (v) => (v ? 1 : 0)) }, { connectivity: 8, ids: 'uint32' });
    const { labels, merge } = await blockwiseInstances(vol, nextOutput(), { threshold: 0.5, connectivity: 8 });
    expect([merge.count, merge.dtype, labels.dtype]).toEqual([270 * 270, 'uint32', 'uint32']);
    expect(firstDifference(await labels.read([0, 0], [h, w]), want.data)).toBeNull();
  });
});
