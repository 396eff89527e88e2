/**
 * Block-wise prediction of chunked volumes: the unit of work of every scale-out engine (a local
 * process pool, a Redis queue, Slurm / Kubernetes shards).
 *
 * - A block is an output region aligned to the output chunks: `blockShape` is a whole number of
 *   chunks per axis (the last block of an axis is cut by the volume's edge). Blocks never share a
 *   chunk, so concurrent writers need no locks.
 * - Its input is the block grown by a `halo` in y and x (the network's context), then widened to
 *   at least one tile, and cut by the volume's edges. Each z-slice of it is predicted by
 *   `predictImage` (tiled, blended, reflected at the volume's edges, as 2D images and stack mode
 *   are), cropped back to the block and quantised to the output's dtype.
 * - A done marker (`<output>/.emseg-job/done/<id>.json`, written atomically) is written after the
 *   block's data, so a rerun skips finished blocks and an interrupted block is redone.
 *
 * 2D volumes ([y, x]) are blocks of depth 1.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeJsonAtomic } from '@emseg/fs';
import type { GreyImage, ZarrData, ZarrVolume } from '@emseg/data';
import { predictImage, type InferenceOptions } from './inference.js';
import type { Segmenter } from './segmenter.js';

/** The blocks of a volume: its shape and chunks, the block shape and the grid of blocks (all [z, y, x]). */
export interface BlockPlan {
  readonly shape: readonly number[];
  readonly chunks: readonly number[];
  readonly blockShape: readonly number[];
  readonly grid: readonly number[];
  readonly count: number;
}

/** One block: its index in the plan (z-major), id (grid coordinates "z-y-x"), start and shape ([z, y, x]). */
export interface Block {
  readonly index: number;
  readonly id: string;
  readonly start: readonly number[];
  readonly shape: readonly number[];
}

/** A region [start, start + shape) of a volume, [z, y, x]. */
export interface Region {
  readonly start: readonly number[];
  readonly shape: readonly number[];
}

const as3d = (v: readonly number[], pad: number) => (v.length === 2 ? [pad, ...v] : [...v]);

/**
 * The block grid of a volume of `shape` in output `chunks` ([z, y, x] or [y, x]), each block
 * `blockChunks` chunks per axis ([z, y, x]; a 2D volume ignores z).
 *
 * @example planBlocks([64, 2048, 2048], [8, 256, 256], [1, 2, 2]).count // 8 * 4 * 4 = 128
 */
export function planBlocks(shape: readonly number[], chunks: readonly number[], blockChunks: readonly number[]): BlockPlan {
  if (!(shape.length === 2 || shape.length === 3) || chunks.length !== shape.length)
    throw new Error(`planBlocks: shape [${shape.join(', ')}] and chunks [${chunks.join(', ')}] must both be [z, y, x] or [y, x]`);
  if (blockChunks.length !== 3 || blockChunks.some((k) => !(Number.isInteger(k) && k >= 1)))
    throw new Error(`planBlocks: chunks per block must be three positive whole numbers [z, y, x], got [${blockChunks.join(', ')}]`);
  const s = as3d(shape, 1);
  const c = as3d(chunks, 1);
  const blockShape = c.map((n, i) => Math.min(s[i], n * (shape.length === 2 && i === 0 ? 1 : blockChunks[i])));
  const grid = s.map((n, i) => Math.ceil(n / blockShape[i]));
  return { shape: s, chunks: c, blockShape, grid, count: grid[0] * grid[1] * grid[2] };
}

/** Block `index` of `plan` (z-major order: x fastest). */
export function blockAt(plan: BlockPlan, index: number): Block {
  if (!(Number.isInteger(index) && index >= 0 && index < plan.count)) throw new Error(`block index ${index} is outside the plan's ${plan.count} blocks`);
  const [, gy, gx] = plan.grid;
  const g = [Math.floor(index / (gy * gx)), Math.floor(index / gx) % gy, index % gx];
  const start = g.map((k, i) => k * plan.blockShape[i]);
  const shape = start.map((s0, i) => Math.min(plan.blockShape[i], plan.shape[i] - s0));
  return { index, id: g.join('-'), start, shape };
}

/** The block indices shard `index` of `count` runs: every count-th block from `index` (round robin, so shards get similar work). */
export function shardIndices(total: number, shard: { index: number; count: number }): number[] {
  const { index, count } = shard;
  if (!(Number.isInteger(count) && count >= 1 && Number.isInteger(index) && index >= 0 && index < count))
    throw new Error(`shard ${index}/${count}: the index must be a whole number in [0, ${count})`);
  const out: number[] = [];
  for (let i = index; i < total; i += count) out.push(i);
  return out;
}

/**
 * The input region of `block`: grown by `halo` in y and x, widened (symmetrically, then inward at
 * an edge) to at least `minSize` pixels where the volume allows, and cut by the volume's edges.
 */
export function inputRegion(block: Block, shape3d: readonly number[], halo: number, minSize: number): Region {
  const start = [block.start[0]];
  const size = [block.shape[0]];
  for (const axis of [1, 2]) {
    const n = shape3d[axis];
    let lo = Math.max(0, block.start[axis] - halo);
    let hi = Math.min(n, block.start[axis] + block.shape[axis] + halo);
    const want = Math.min(n, Math.max(minSize, hi - lo));
    if (hi - lo < want) {
      lo = Math.max(0, lo - Math.ceil((want - (hi - lo)) / 2));
      hi = Math.min(n, lo + want);
      lo = hi - want;
    }
    start.push(lo);
    size.push(hi - lo);
  }
  return { start, shape: size };
}

export interface BlockPredictOptions {
  inference: InferenceOptions;
  /** Context in pixels read around the block in y and x. */
  halo: number;
  /** Checked between tile batches (see predictImage). */
  stop?: { readonly requested: boolean };
}

export interface BlockResult {
  block: Block;
  /** Mean foreground probability of the block. */
  meanProbability: number;
  seconds: number;
}

/** Grey values of one z-slice of the input region as a GreyImage (float32 in [0, 1] quantised to 16 bits). */
function sliceImage(data: ZarrData, z: number, width: number, height: number): GreyImage {
  const area = width * height;
  const part = data.subarray(z * area, (z + 1) * area);
  if (part instanceof Uint8Array) return { width, height, bitDepth: 8, data: part };
  if (part instanceof Uint16Array) return { width, height, bitDepth: 16, data: part };
  const grey = new Uint16Array(area);
  for (let i = 0; i < area; i++) grey[i] = Math.round(Math.min(1, Math.max(0, part[i])) * 65535);
  return { width, height, bitDepth: 16, data: grey };
}

/**
 * Predicts `block` of `input` into `output` (same spatial shape; uint8 = round(p * 255), uint16 =
 * round(p * 65535)), reading its input region with the halo. Tensors are all released.
 *
 * @example await predictBlock(seg, vol, out, blockAt(plan, 0), { inference, halo: 64 });
 */
export async function predictBlock(
  segmenter: Segmenter,
  input: ZarrVolume,
  output: ZarrVolume,
  block: Block,
  options: BlockPredictOptions,
): Promise<BlockResult> {
  const t0 = performance.now();
  const flat = input.shape.length === 2;
  const shape3d = as3d(input.shape, 1);
  const region = inputRegion(block, shape3d, options.halo, options.inference.tileSize);
  const [depth, height, width] = region.shape;
  const drop = (v: readonly number[]) => (flat ? v.slice(1) : [...v]);
  const data = await input.read(drop(region.start), drop(region.shape));
  const [bd, bh, bw] = block.shape;
  const max = output.dtype === 'uint8' ? 255 : 65535;
  const out = output.dtype === 'uint8' ? new Uint8Array(bd * bh * bw) : new Uint16Array(bd * bh * bw);
  const dy = block.start[1] - region.start[1];
  const dx = block.start[2] - region.start[2];
  let sum = 0;
  for (let z = 0; z < depth; z++) {
    const name = `${input.path} block ${block.id} z ${block.start[0] + z}`;
    const p = await predictImage(segmenter, sliceImage(data, z, width, height), options.inference, name, undefined, options.stop);
    if (p.length !== width * height)
      throw new Error(`${name}: the model gives ${p.length / (width * height)} values per pixel; block prediction writes one foreground probability per voxel`);
    for (let y = 0; y < bh; y++) {
      const src = (y + dy) * width + dx;
      const dst = (z * bh + y) * bw;
      for (let x = 0; x < bw; x++) {
        const v = Math.min(1, Math.max(0, p[src + x]));
        sum += v;
        out[dst + x] = Math.round(v * max);
      }
    }
  }
  await output.write(drop(block.start), drop(block.shape), out);
  return { block, meanProbability: sum / out.length, seconds: (performance.now() - t0) / 1000 };
}

/** The folder of a block job's state inside its output store: job.json and done/. */
export const jobFolder = (outputRoot: string) => join(outputRoot, '.emseg-job');

/** Where block `id`'s done marker lives. */
export const doneMarkerPath = (outputRoot: string, id: string) => join(jobFolder(outputRoot), 'done', `${id}.json`);

/** Whether block `id` is done (its marker exists and names it). */
export async function isBlockDone(outputRoot: string, id: string): Promise<boolean> {
  try {
    const marker = JSON.parse(await readFile(doneMarkerPath(outputRoot, id), 'utf8')) as { block?: string };
    return marker.block === id;
  } catch {
    return false;
  }
}

/** Writes block `result`'s done marker atomically; call it after the block's data is written. */
export function writeDoneMarker(outputRoot: string, result: BlockResult, worker: string): Promise<void> {
  const { block } = result;
  return writeJsonAtomic(doneMarkerPath(outputRoot, block.id), {
    block: block.id,
    index: block.index,
    start: block.start,
    shape: block.shape,
    meanProbability: result.meanProbability,
    seconds: result.seconds,
    worker,
  });
}
