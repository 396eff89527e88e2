/**
 * Issue 12 part 4, prediction side: 3D stacks with a 2D U-Net. Stack mode is `predictImage` of
 * every slice; orthoplane is the mean of the xy, xz and yz predictions, here computed naively from
 * the whole volume in memory and compared with the streaming, scratch-file implementation; planes
 * shallower than a tile are predicted in reflect-padded strips; outputs are multi-page TIFFs of the
 * right depth and bit depth; no tensors leak and no scratch file is left behind, also when stopped.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cutRegion, readStack, readStackInfo, writeStack, type GreyImage } from '@emseg/data';
import { resnetEncoder } from '@emseg/models';
import { tensorCountGuard, tf } from '@emseg/tf';
import {
  predictImage,
  predictPlane,
  predictStack,
  PredictionStopped,
  Segmenter,
  stripHeight,
  toProbability16,
  type InferenceOptions,
} from '@emseg/segmentation';
import { orthoplaneDiskBytes, SCRATCH_MARGIN_BYTES } from '../src/stack-inference.js';

const tmp = mkdtempSync(join(tmpdir(), 'emseg-stack-inference-'));
const [D, H, W] = [6, 64, 96];
let segmenter: Segmenter;
let stackPath: string;
let volume: Uint8Array;

/** EM-like test volume: blobs that drift with z, plus a little texture. */
function testVolume(): Uint8Array {
  const v = new Uint8Array(D * H * W);
  for (let z = 0; z < D; z++)
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        const blob = Math.sin((x + 3 * z) / 9) * Math.cos((y - 2 * z) / 7);
        v[(z * H + y) * W + x] = Math.max(0, Math.min(255, Math.round(128 + 90 * blob + ((x * 31 + y * 17 + z * 13) % 23) - 11)));
      }
  return v;
}

const inference: InferenceOptions = { tileSize: 64, overlap: 16, window: 'gaussian', batchSize: 2, flipTta: false };

beforeAll(async () => {
  segmenter = Segmenter.create(
    resnetEncoder({ depth: 18, seed: 5 }),
    { mean: [0.5], std: [0.2] },
    { encoderSource: 'random', encoderRunId: null },
    { decoderChannels: [32, 16, 16, 8, 8], seed: 6 },
  );
  volume = testVolume();
  stackPath = join(tmp, 'in', 'stack.tif');
  const slices = Array.from({ length: D }, (_, z): GreyImage => ({ width: W, height: H, bitDepth: 8, data: volume.slice(z * H * W, (z + 1) * H * W) }));
  await writeStack(stackPath, slices);
});

afterAll(() => {
  segmenter?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

const at = (z: number, y: number, x: number) => volume[(z * H + y) * W + x];

/** The xy plane at z, the xz plane at y (rows z, columns x), the yz plane at x (rows z, columns y). */
function planeOf(axis: 'xy' | 'xz' | 'yz', i: number): GreyImage {
  if (axis === 'xy') return { width: W, height: H, bitDepth: 8, data: volume.slice(i * H * W, (i + 1) * H * W) };
  const width = axis === 'xz' ? W : H;
  const data = new Uint8Array(D * width);
  for (let z = 0; z < D; z++) for (let c = 0; c < width; c++) data[z * width + c] = axis === 'xz' ? at(z, i, c) : at(z, c, i);
  return { width, height: D, bitDepth: 8, data };
}

/** The orthoplane mean, naively: every plane of every axis from the in-memory volume. */
async function naiveOrthoplane(): Promise<Float32Array> {
  const sum = new Float64Array(D * H * W);
  for (let z = 0; z < D; z++) (await predictPlane(segmenter, planeOf('xy', z), inference)).forEach((p, i) => (sum[z * H * W + i] += p));
  for (let y = 0; y < H; y++) {
    const p = await predictPlane(segmenter, planeOf('xz', y), inference);
    for (let z = 0; z < D; z++) for (let x = 0; x < W; x++) sum[(z * H + y) * W + x] += p[z * W + x];
  }
  for (let x = 0; x < W; x++) {
    const p = await predictPlane(segmenter, planeOf('yz', x), inference);
    for (let z = 0; z < D; z++) for (let y = 0; y < H; y++) sum[(z * H + y) * W + x] += p[z * H + y];
  }
  return Float32Array.from(sum, (s) => s / 3);
}

const leftovers = (dir: string) => readdirSync(dir).filter((f) => f.startsWith('.'));

/** Bytes of every file under `dir` (hidden scratch and spool folders included). */
function bytesUnder(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true }))
    if (entry.isFile()) total += statSync(join(entry.parentPath, entry.name)).size;
  return total;
}

describe('predictPlane', () => {
  it('is predictImage for a plane that holds a tile', async () => {
    const plane = planeOf('xy', 2);
    expect(Array.from(await predictPlane(segmenter, plane, inference))).toEqual(Array.from(await predictImage(segmenter, plane, inference)));
  });

  it('predicts a plane shallower than the tile as the centre rows of one reflect-padded strip', async () => {
    // a 6-row plane as wide as the tile: one strip of 32 x 64, the plane's rows 13..18 of it
    const plane: GreyImage = { ...planeOf('yz', 10), width: 64 };
    expect(stripHeight(6, 64)).toBe(32);
    const strip = cutRegion(plane.data as Uint8Array, 64, 6, { x: 0, y: -13, width: 64, height: 32 });
    const direct = tf.tidy(() =>
      tf
        .sigmoid(
          segmenter.forward(
            tf.tensor4d(
              Float32Array.from(strip, (v) => v * (1 / 255)),
              [1, 32, 64, 1],
            ),
            false,
          ),
        )
        .dataSync(),
    );
    const p = await predictPlane(segmenter, plane, { ...inference, overlap: 0 });
    expect(p.length).toBe(6 * 64);
    let max = 0;
    for (let i = 0; i < p.length; i++) max = Math.max(max, Math.abs(p[i] - direct[13 * 64 + i]));
    expect(max).toBeLessThan(1e-6);
    expect(Math.max(...p) - Math.min(...p)).toBeGreaterThan(1e-3);
  });

  it('blends overlapping strips along a wide plane with flip TTA, inside [0, 1]', async () => {
    const plane = planeOf('xz', 7);
    const p = await predictPlane(segmenter, plane, { ...inference, flipTta: true });
    expect(p.length).toBe(D * W);
    expect(p.every((v) => v >= 0 && v <= 1)).toBe(true);
  });
});

describe('predictStack', () => {
  it("stack mode writes predictImage's probability and mask of every slice, as multi-page TIFFs", async () => {
    const out = join(tmp, 'stack-mode');
    const guard = tensorCountGuard();
    const seen: string[] = [];
    const threshold = 0.5;
    const r = await predictStack(segmenter, stackPath, {
      mode: 'stack',
      inference,
      threshold,
      maskOut: join(out, 'stack.tif'),
      probabilityOut: join(out, 'probability', 'stack.tif'),
      onSlice: (axis, done, total) => seen.push(`${axis} ${done}/${total}`),
    });
    expect(guard.leaked()).toBe(0);
    expect(seen).toEqual(Array.from({ length: D }, (_, z) => `xy ${z + 1}/${D}`));
    expect([r.depth, r.width, r.height, r.planes]).toEqual([D, W, H, { xy: D, xz: 0, yz: 0 }]);
    const mask = await readStack(r.mask);
    const probability = await readStack(r.probability!);
    expect([mask.depth, mask.bitDepth, probability.depth, probability.bitDepth]).toEqual([D, 8, D, 16]);
    let foreground = 0;
    for (let z = 0; z < D; z++) {
      const p = await predictImage(segmenter, planeOf('xy', z), inference);
      expect(Array.from(probability.slices[z].data)).toEqual(Array.from(toProbability16(p, W, H).data));
      expect(Array.from(mask.slices[z].data)).toEqual(Array.from(p, (v) => (v >= threshold ? 255 : 0)));
      foreground += p.filter((v) => v >= threshold).length;
    }
    expect(r.foregroundFraction).toBeCloseTo(foreground / (D * H * W), 12);
    expect(r.slicesPerSecond).toBeCloseTo(D / r.seconds, 6);
    expect(leftovers(out)).toEqual([]);
  });

  it('orthoplane mode writes the mean of the xy, xz and yz predictions, and leaves no scratch behind', async () => {
    const expected = await naiveOrthoplane();
    const sorted = Float32Array.from(expected).sort();
    const threshold = sorted[Math.floor(sorted.length / 2)];
    const out = join(tmp, 'orthoplane');
    const counts: Record<string, number> = {};
    const peak: Record<string, number> = { xz: 0, yz: 0, xy: 0 };
    const guard = tensorCountGuard();
    const r = await predictStack(segmenter, stackPath, {
      mode: 'orthoplane',
      inference,
      threshold,
      maskOut: join(out, 'stack.tif'),
      probabilityOut: join(out, 'probability', 'stack.tif'),
      onSlice: (axis, done, total) => {
        counts[axis] = done;
        peak[axis] = Math.max(peak[axis], bytesUnder(out));
        expect(total).toBe({ xy: D, xz: H, yz: W }[axis]);
        // the scratch directory exists while predicting, beside the mask
        if (axis === 'yz' && done === 1) expect(leftovers(out).length).toBeGreaterThan(0);
      },
    });
    expect(guard.leaked()).toBe(0);
    expect(counts).toEqual({ xz: H, yz: W, xy: D });
    expect(r.planes).toEqual({ xy: D, xz: H, yz: W });
    expect(leftovers(out)).toEqual([]);
    expect(readdirSync(out).sort()).toEqual(['probability', 'stack.tif']);
    // the disk check's estimate is the measured peak: 2 input copies + xz probabilities, then one
    // copy + both probabilities, then both probabilities + the mask and probability spools
    const V = D * H * W;
    const disk = orthoplaneDiskBytes({ width: W, height: H, depth: D, bitDepth: 8 }, true);
    expect(peak.xz).toBe(4 * V);
    expect(peak.yz).toBe(5 * V);
    expect(disk.scratch).toBe(5 * V);
    expect(peak.xy).toBeGreaterThan(7 * V);
    expect(peak.xy).toBeLessThanOrEqual(disk.peak);
    expect(disk.peak - peak.xy).toBeLessThan(2 * D * 8192);
    const info = await readStackInfo(r.mask);
    expect([info.depth, info.width, info.height, info.bitDepth]).toEqual([D, W, H, 8]);
    const probability = await readStack(r.probability!);
    const mask = await readStack(r.mask);
    expect(probability.bitDepth).toBe(16);
    // xz and yz are kept on disk at the output's 16-bit precision: within one output level
    let maxLevels = 0;
    let foreground = 0;
    for (let z = 0; z < D; z++) {
      for (let i = 0; i < H * W; i++) {
        const p = expected[z * H * W + i];
        maxLevels = Math.max(maxLevels, Math.abs(probability.slices[z].data[i] - p * 65535));
        const m = mask.slices[z].data[i];
        expect(m === 0 || m === 255).toBe(true);
        if (m === 255) foreground++;
        if (Math.abs(p - threshold) > 2e-5) expect(m, `voxel z=${z} i=${i}`).toBe(p >= threshold ? 255 : 0);
      }
    }
    expect(maxLevels).toBeLessThanOrEqual(1);
    expect(r.foregroundFraction).toBeCloseTo(foreground / (D * H * W), 12);
    expect(r.foregroundFraction).toBeGreaterThan(0.3);
    expect(r.foregroundFraction).toBeLessThan(0.7);
    // and it differs from stack mode (the other two axes count)
    const xyOnly = await predictImage(segmenter, planeOf('xy', 3), inference);
    expect(Math.max(...xyOnly.map((v, i) => Math.abs(v - expected[3 * H * W + i])))).toBeGreaterThan(1e-3);
  });

  it('a stop mid-way ends with PredictionStopped and removes the scratch and the unfinished outputs', async () => {
    const out = join(tmp, 'stopped');
    const stop = { requested: false };
    const guard = tensorCountGuard();
    await expect(
      predictStack(segmenter, stackPath, {
        mode: 'orthoplane',
        inference,
        threshold: 0.5,
        maskOut: join(out, 'stack.tif'),
        probabilityOut: join(out, 'probability', 'stack.tif'),
        stop,
        onSlice: (axis, done) => {
          if (axis === 'yz' && done === 3) stop.requested = true;
        },
      }),
    ).rejects.toBeInstanceOf(PredictionStopped);
    expect(guard.leaked()).toBe(0);
    expect(readdirSync(out)).toEqual(['probability']);
    expect(readdirSync(join(out, 'probability'))).toEqual([]);
  });

  it('an error mid-way (here from a callback) also removes the scratch', async () => {
    const out = join(tmp, 'failed');
    await expect(
      predictStack(segmenter, stackPath, {
        mode: 'orthoplane',
        inference,
        threshold: 0.5,
        maskOut: join(out, 'stack.tif'),
        onSlice: (axis) => {
          if (axis === 'yz') throw new Error('disk on fire');
        },
      }),
    ).rejects.toThrow('disk on fire');
    expect(readdirSync(out)).toEqual([]);
  });

  it('orthoplane refuses a disk without room for its scratch before any work, naming the folder, the bytes and the fix', async () => {
    const out = join(tmp, 'full-disk');
    const asked: string[] = [];
    const disk = orthoplaneDiskBytes({ width: W, height: H, depth: D, bitDepth: 8 }, true);
    // one block short of the estimate plus the margin
    const bavail = Math.floor((disk.peak + SCRATCH_MARGIN_BYTES) / 4096) - 1;
    let planes = 0;
    const error = await predictStack(segmenter, stackPath, {
      mode: 'orthoplane',
      inference,
      threshold: 0.5,
      maskOut: join(out, 'stack.tif'),
      probabilityOut: join(out, 'probability', 'stack.tif'),
      statfs: async (path) => {
        asked.push(path);
        return { bavail, bsize: 4096 };
      },
      onSlice: () => planes++,
    }).catch((err: Error) => err);
    expect(error).toBeInstanceOf(Error);
    const message = (error as Error).message;
    // the out folder does not exist yet: its nearest existing ancestor's disk is asked
    expect(asked).toEqual([tmp]);
    expect(message).toContain(`${stackPath}: not enough disk space for orthoplane prediction of this ${W} x ${H} x ${D} 8-bit stack`);
    expect(message).toMatch(new RegExp(`scratch folder ${join(out, '.stack.tif.tmp-').replace(/[.\\/]/g, '\\$&')}\\d+-[0-9a-f]{8} `));
    expect(message).toContain(`needs ${disk.peak} bytes`);
    expect(message).toContain(`plus ${SCRATCH_MARGIN_BYTES} bytes (64.0 MiB) to spare`);
    expect(message).toContain(`but ${tmp} has ${bavail * 4096} bytes`);
    expect(message).toContain('`finetune predict --out DIR`');
    expect(message).toContain("mode 'stack', `--stack stack`");
    // before any work: nothing predicted, nothing created
    expect(planes).toBe(0);
    expect(existsSync(out)).toBe(false);

    // a probability stack elsewhere is not counted on this disk; 16-bit input needs two more bytes per voxel of scratch
    expect(orthoplaneDiskBytes({ width: W, height: H, depth: D, bitDepth: 8 }, false).peak).toBe(5 * D * H * W + D * 8192);
    expect(orthoplaneDiskBytes({ width: W, height: H, depth: D, bitDepth: 16 }, true).scratch).toBe(6 * D * H * W);
  });

  it('orthoplane starts when the disk has just the estimate plus the margin', async () => {
    const out = join(tmp, 'roomy-disk');
    const disk = orthoplaneDiskBytes({ width: W, height: H, depth: D, bitDepth: 8 }, false);
    const stop = { requested: false };
    await expect(
      predictStack(segmenter, stackPath, {
        mode: 'orthoplane',
        inference,
        threshold: 0.5,
        maskOut: join(out, 'stack.tif'),
        statfs: async () => ({ bavail: BigInt(disk.peak + SCRATCH_MARGIN_BYTES), bsize: 1n }),
        stop,
        onSlice: () => (stop.requested = true),
      }),
    ).rejects.toBeInstanceOf(PredictionStopped);
  });

  it('refuses slices smaller than the tile, naming the stack', async () => {
    await expect(
      predictStack(segmenter, stackPath, { mode: 'stack', inference: { ...inference, tileSize: 128 }, threshold: 0.5, maskOut: join(tmp, 'small', 's.tif') }),
    ).rejects.toThrow(`${stackPath}: is 96 x 64 pixels, smaller than the inference tile (128 x 128)`);
  });
});
