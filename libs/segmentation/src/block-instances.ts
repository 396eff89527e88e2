/**
 * Block-wise instance labels of a chunked probability volume: the connected components of the
 * thresholded probabilities, computed block by block (the way igneous and daisy do it) yet
 * identical, id for id, to {@link connectedInstances} of the whole volume at once
 * (`skimage.measure.label` after `remove_small_objects`, ids 1..n in raster order of each
 * instance's first voxel).
 *
 * 1. {@link labelBlockPass1} (per block, independent, any order, any engine): binarises the
 *    block's probabilities, labels its components (`connectedInstances`, block-local ids 1..count
 *    in the block's raster order), writes them to the provisional uint32 array and then a record
 *    (component count, voxel count and first voxel of each component), which is the block's done
 *    marker. A provisional id is global as (block, local id): the merge numbers them
 *    `offset(block) + local - 1`, the offsets being the prefix sums of the blocks' counts.
 * 2. {@link mergeBlockLabels} (once, after every block's pass 1): for every block and every axis
 *    with a next block, reads the block's last plane and the plane just past it (grown by one voxel
 *    in the other two axes when the connectivity has diagonals, so pairs across block edges and
 *    corners are found too) and unions the ids that touch under the connectivity; union-find over
 *    all provisional ids; components of fewer than `minSize` voxels (summed over their blocks) are
 *    dropped and the others numbered 1..count in raster order of their first voxel. Writes one
 *    relabel table per block, creates the output array (uint16 when count < 65536, else uint32)
 *    and, last, merge.json.
 * 3. {@link relabelBlock} (per block, independent): maps the block's provisional ids through its
 *    table and writes the final labels, then the block's done marker.
 *
 * {@link blockwiseInstances} runs the three passes in turn (tests, the local engine). Memory: one
 * block (plus two face planes) at a time; the merge holds a few numbers per provisional id. A rerun
 * skips done blocks and a done merge, so an interrupted job resumes; a rerun with other parameters
 * is refused.
 *
 * Layout, all inside the output store (`<output>/.emseg-job/`): `instances.json` (the job's
 * parameters), `provisional.zarr` (uint32 block-local ids, chunked as the output),
 * `provisional/<block>.json` (pass-1 records), `relabel/<block>.u32` (little-endian uint32 tables,
 * index = local id), `merge.json`, and `done/<block>.json` (pass-3 markers, as {@link isBlockDone}
 * reads them).
 *
 * Blocks are the chunk-aligned blocks of {@link planBlocks}; 2D volumes ([y, x]) are one block deep.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic, writeJsonAtomic } from '@emseg/fs';
import { createZarrVolume, openZarrVolume, type ZarrData, type ZarrFormat, type ZarrVolume } from '@emseg/data';
import { connectedInstances, type Connectivity } from '@emseg/evaluation';
import { blockAt, doneMarkerPath, isBlockDone, jobFolder, planBlocks, type Block, type BlockPlan } from './blocks.js';

export interface BlockInstanceOptions {
  /**
   * Foreground where the probability is >= threshold, in [0, 1]. Quantised probabilities (uint8,
   * uint16) are compared as the block predictor's mask compares them: q >= {@link probabilityLevel}.
   */
  threshold: number;
  /** Neighbour count: 6 (default), 18 or 26 in 3D; 4 (default) or 8 in 2D (6, 18, 26 mean 4, 8, 8 there). */
  connectivity?: Connectivity;
  /** Instances with fewer voxels are removed (0); default 1 (keep all). */
  minSize?: number;
  /** Chunks of the labels (provisional and final), as the input's rank; default the input's chunks. */
  chunks?: readonly number[];
  /** Chunks per block [z, y, x] (see planBlocks); default [1, 1, 1]. */
  blockChunks?: readonly number[];
  /** Zarr format of the arrays written; default 3. */
  format?: ZarrFormat;
  /** Write the final labels as an OME-Zarr image of this name (array at `<output>/0`); default a plain array. */
  ome?: { name: string };
}

/** A block-wise labelling job: what every pass of every worker needs. */
export interface InstanceJob {
  /** The probabilities (uint8, uint16 or float32). */
  readonly input: ZarrVolume;
  /** The output store: the final labels' array, and the job's state in its `.emseg-job`. */
  readonly output: string;
  /** The uint32 block-local provisional ids. */
  readonly provisional: ZarrVolume;
  readonly plan: BlockPlan;
  readonly threshold: number;
  readonly connectivity: Connectivity;
  readonly minSize: number;
  readonly format: ZarrFormat;
  readonly ome: { name: string } | null;
}

/** Pass 1's record of a block (also its done marker). */
export interface BlockLabelRecord {
  block: string;
  index: number;
  start: number[];
  shape: number[];
  /** Components in the block: local ids 1..count, in the block's raster order. */
  count: number;
  /** Voxel count of local id k at `sizes[k - 1]`. */
  sizes: number[];
  /** Global raster index ((z * height + y) * width + x) of the first voxel of local id k at `first[k - 1]`. */
  first: number[];
  threshold: number;
  connectivity: Connectivity;
  seconds: number;
}

/** The merge's outcome (merge.json). */
export interface MergeResult {
  /** Final instances: ids 1..count. */
  count: number;
  /** The output's dtype: uint16 when count < 65536, else uint32. */
  dtype: 'uint16' | 'uint32';
  /** Provisional ids (components of all blocks). */
  provisional: number;
  threshold: number;
  connectivity: Connectivity;
  minSize: number;
  seconds: number;
}

export interface BlockwiseInstancesResult {
  job: InstanceJob;
  /** The final labels. */
  labels: ZarrVolume;
  merge: MergeResult;
  /** Blocks labelled (pass 1) and relabelled (pass 3) by this run; the others were done already. */
  labelled: number;
  relabelled: number;
  /** Whether the merge was done already. */
  mergeSkipped: boolean;
}

const as3d = (v: readonly number[], pad: number) => (v.length === 2 ? [pad, ...v] : [...v]);

/** skimage's connectivity steps of a neighbour count, for a volume of `depth` slices (as connectedInstances reads it). */
function connectivitySteps(connectivity: number, depth: number): 1 | 2 | 3 {
  const table: Record<number, 1 | 2 | 3> = depth === 1 ? { 4: 1, 8: 2, 6: 1, 18: 2, 26: 2 } : { 6: 1, 18: 2, 26: 3 };
  const steps = table[connectivity];
  if (steps === undefined)
    throw new Error(
      `block instances: connectivity must be ${depth === 1 ? '4 or 8' : '6, 18 or 26'} for a ${depth === 1 ? '2D' : '3D'} volume, got ${connectivity}`,
    );
  return steps;
}

/**
 * The smallest stored value q (of round(p * max)) that counts as foreground at `threshold`: the
 * level of the block predictor's `--mask-out` and of these labels, so both agree voxel for voxel.
 * That is p >= threshold exactly when threshold * max + 0.5 is whole (0.5 with uint8 or uint16
 * outputs), else up to half a quantisation step above the threshold.
 *
 * @example probabilityLevel(0.5, 255) // 128: q >= 128 <=> p >= 0.5
 */
export function probabilityLevel(threshold: number, max: number): number {
  return threshold <= 0 ? 0 : Math.min(max, Math.ceil(threshold * max + 0.5 - 1e-9));
}

/** 1 where the voxel is foreground. */
function binarise(data: ZarrData, threshold: number): Uint8Array {
  const mask = new Uint8Array(data.length);
  const level = data instanceof Uint8Array ? probabilityLevel(threshold, 255) : data instanceof Uint16Array ? probabilityLevel(threshold, 65535) : threshold;
  for (let i = 0; i < data.length; i++) mask[i] = data[i] >= level ? 1 : 0;
  return mask;
}

const stateFolder = (output: string) => jobFolder(output);
const recordPath = (output: string, id: string) => join(stateFolder(output), 'provisional', `${id}.json`);
const tablePath = (output: string, id: string) => join(stateFolder(output), 'relabel', `${id}.u32`);
const mergePath = (output: string) => join(stateFolder(output), 'merge.json');

async function readJson<T>(path: string): Promise<T | null> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/**
 * Opens (or starts) the labelling of `input` into the store `output`: checks the parameters,
 * plans the blocks, creates the provisional array and records the parameters. Every worker of a
 * job calls it with the same arguments; a job already started with other parameters is refused.
 *
 * @example const job = await prepareInstanceJob(probabilities, 'labels.zarr', { threshold: 0.5, connectivity: 26, minSize: 50 });
 */
export async function prepareInstanceJob(input: ZarrVolume, output: string, options: BlockInstanceOptions): Promise<InstanceJob> {
  if (!['uint8', 'uint16', 'float32'].includes(input.dtype))
    throw new Error(`block instances: ${input.path} holds ${input.dtype} values; expected probabilities (uint8, uint16 or float32)`);
  const { threshold } = options;
  if (!(Number.isFinite(threshold) && threshold >= 0 && threshold <= 1))
    throw new Error(`block instances: threshold must be a probability in [0, 1], got ${threshold}`);
  const minSize = options.minSize ?? 1;
  if (!(Number.isInteger(minSize) && minSize >= 0)) throw new Error(`block instances: minSize must be an integer >= 0, got ${minSize}`);
  const shape3d = as3d(input.shape, 1);
  const connectivity = options.connectivity ?? (shape3d[0] === 1 ? 4 : 6);
  connectivitySteps(connectivity, shape3d[0]);
  const chunks = options.chunks ?? input.chunks;
  const plan = planBlocks(input.shape, chunks, options.blockChunks ?? [1, 1, 1]);
  const format = options.format ?? 3;
  const ome = options.ome ?? null;
  const parameters = { input: input.path, shape: input.shape, chunks: [...chunks], blockShape: plan.blockShape, threshold, connectivity, minSize, format, ome };
  const paramsPath = join(stateFolder(output), 'instances.json');
  const existing = await readJson<typeof parameters>(paramsPath);
  // the input's path is recorded, not compared: workers may mount the same store elsewhere
  const same = (p: typeof parameters) => JSON.stringify({ ...p, input: '' });
  if (existing === null) await writeJsonAtomic(paramsPath, parameters);
  else if (same(existing) !== same(parameters))
    throw new Error(
      `block instances: ${output} holds a labelling job with other parameters (${JSON.stringify(existing)}); asked for ${JSON.stringify(parameters)}: choose another output or remove it`,
    );
  const provisional = await createZarrVolume(join(stateFolder(output), 'provisional.zarr'), { shape: input.shape, chunks, dtype: 'uint32', format });
  return { input, output, provisional, plan, threshold, connectivity, minSize, format, ome };
}

const flat = (job: InstanceJob) => job.input.shape.length === 2;
const drop = (job: InstanceJob, v: readonly number[]) => (flat(job) ? v.slice(1) : [...v]);

/** Reads a region ([z, y, x]) of the provisional ids. */
async function readProvisional(job: InstanceJob, start: readonly number[], shape: readonly number[]): Promise<Uint32Array> {
  const data = await job.provisional.read(drop(job, start), drop(job, shape));
  if (!(data instanceof Uint32Array)) throw new Error(`block instances: ${job.provisional.path} is not a uint32 array`);
  return data;
}

async function readRecord(job: InstanceJob, block: Block): Promise<BlockLabelRecord | null> {
  const record = await readJson<BlockLabelRecord>(recordPath(job.output, block.id));
  return record !== null && record.block === block.id ? record : null;
}

/**
 * Pass 1 of block `index`: labels its components into the provisional array and writes its record
 * (the done marker) after the data. A block with a record is skipped (its record is returned).
 */
export async function labelBlockPass1(job: InstanceJob, index: number): Promise<{ record: BlockLabelRecord; skipped: boolean }> {
  const block = blockAt(job.plan, index);
  const done = await readRecord(job, block);
  if (done) return { record: done, skipped: true };
  const t0 = performance.now();
  const [bd, bh, bw] = block.shape;
  const mask = binarise(await job.input.read(drop(job, block.start), drop(job, block.shape)), job.threshold);
  const { data: ids, count } = connectedInstances(
    { width: bw, height: bh, depth: bd, data: mask },
    { connectivity: job.connectivity, minSize: 1, ids: 'uint32' },
  );
  const sizes = new Array<number>(count).fill(0);
  const first = new Array<number>(count).fill(-1);
  const [, height, width] = job.plan.shape;
  for (let z = 0; z < bd; z++)
    for (let y = 0; y < bh; y++) {
      const row = (z * bh + y) * bw;
      const global = ((block.start[0] + z) * height + block.start[1] + y) * width + block.start[2];
      for (let x = 0; x < bw; x++) {
        const l = ids[row + x];
        if (l === 0) continue;
        if (sizes[l - 1]++ === 0) first[l - 1] = global + x;
      }
    }
  await job.provisional.write(drop(job, block.start), drop(job, block.shape), ids);
  const record: BlockLabelRecord = {
    block: block.id,
    index,
    start: [...block.start],
    shape: [...block.shape],
    count,
    sizes,
    first,
    threshold: job.threshold,
    connectivity: job.connectivity,
    seconds: (performance.now() - t0) / 1000,
  };
  await writeJsonAtomic(recordPath(job.output, block.id), record);
  return { record, skipped: false };
}

function find(parent: Int32Array, i: number): number {
  while (parent[i] !== i) {
    parent[i] = parent[parent[i]];
    i = parent[i];
  }
  return i;
}

function union(parent: Int32Array, a: number, b: number): void {
  const ra = find(parent, a);
  const rb = find(parent, b);
  if (ra < rb) parent[rb] = ra;
  else if (rb < ra) parent[ra] = rb;
}

/** In-plane offsets (du, dv) of the neighbours across a face: the face step plus at most steps - 1 more. */
function faceOffsets(steps: number): [number, number][] {
  const out: [number, number][] = [];
  for (const du of [-1, 0, 1]) for (const dv of [-1, 0, 1]) if (1 + (du !== 0 ? 1 : 0) + (dv !== 0 ? 1 : 0) <= steps) out.push([du, dv]);
  return out;
}

/**
 * Unions the provisional ids of `block` that touch ids past its face along `axis` (the block after
 * it, and, with diagonal connectivity, the blocks beside that one).
 */
async function unionFace(job: InstanceJob, block: Block, axis: number, offsets: Float64Array, parent: Int32Array, steps: number): Promise<void> {
  const { plan } = job;
  const [u, v] = [0, 1, 2].filter((i) => i !== axis);
  const lastStart = [...block.start];
  lastStart[axis] = block.start[axis] + block.shape[axis] - 1;
  const lastShape = [...block.shape];
  lastShape[axis] = 1;
  const grow = steps > 1 ? 1 : 0;
  const nextStart = [...block.start];
  const nextShape = [...block.shape];
  nextStart[axis] = block.start[axis] + block.shape[axis];
  nextShape[axis] = 1;
  for (const i of [u, v]) {
    const lo = Math.max(0, block.start[i] - grow);
    const hi = Math.min(plan.shape[i], block.start[i] + block.shape[i] + grow);
    nextStart[i] = lo;
    nextShape[i] = hi - lo;
  }
  const a = await readProvisional(job, lastStart, lastShape);
  const b = await readProvisional(job, nextStart, nextShape);
  // the block (grid index) of each position of the next plane: fixed along `axis`, by coordinate along u and v
  const gridOf = (i: number, n: number) => Int32Array.from({ length: n }, (_, k) => Math.floor((nextStart[i] + k) / plan.blockShape[i]));
  const stride = [plan.grid[1] * plan.grid[2], plan.grid[2], 1];
  const base = Math.floor(nextStart[axis] / plan.blockShape[axis]) * stride[axis];
  const [gu, gv] = [gridOf(u, nextShape[u]), gridOf(v, nextShape[v])];
  const [nu, nv] = [lastShape[u], lastShape[v]];
  const [mu, mv] = [nextShape[u], nextShape[v]];
  const [su, sv] = [block.start[u] - nextStart[u], block.start[v] - nextStart[v]];
  const mine = offsets[block.index] - 1;
  const neighbours = faceOffsets(steps);
  for (let iu = 0; iu < nu; iu++)
    for (let iv = 0; iv < nv; iv++) {
      const la = a[iu * nv + iv];
      if (la === 0) continue;
      for (const [du, dv] of neighbours) {
        const ju = iu + su + du;
        const jv = iv + sv + dv;
        if (ju < 0 || ju >= mu || jv < 0 || jv >= mv) continue;
        const lb = b[ju * mv + jv];
        if (lb === 0) continue;
        union(parent, mine + la, offsets[base + gu[ju] * stride[u] + gv[jv] * stride[v]] + lb - 1);
      }
    }
}

/** The merge's result, or null while it has not been done. */
export function readMerge(job: InstanceJob): Promise<MergeResult | null> {
  return readJson<MergeResult>(mergePath(job.output));
}

/**
 * Pass 2, once every block has its pass-1 record: joins the provisional ids across block faces,
 * applies minSize to the merged components, numbers them in raster order of their first voxel,
 * writes each block's relabel table, creates the output array, then merge.json. A done merge is
 * returned as it is (`skipped`).
 */
export async function mergeBlockLabels(job: InstanceJob): Promise<{ merge: MergeResult; skipped: boolean }> {
  const done = await readMerge(job);
  if (done) return { merge: done, skipped: true };
  const t0 = performance.now();
  const { plan } = job;
  const records: BlockLabelRecord[] = [];
  const missing: string[] = [];
  for (let i = 0; i < plan.count; i++) {
    const block = blockAt(plan, i);
    const record = await readRecord(job, block);
    if (record) records.push(record);
    else missing.push(block.id);
  }
  if (missing.length > 0)
    throw new Error(
      `block instances: ${missing.length} of ${plan.count} blocks have no pass-1 record yet (${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ', ...' : ''}); run pass 1 on every block before the merge`,
    );
  // provisional id of (block, local id l) = offsets[block] + l - 1
  const offsets = new Float64Array(plan.count);
  let total = 0;
  for (const r of records) {
    offsets[r.index] = total;
    total += r.count;
  }
  if (total > 2 ** 31 - 1) throw new Error(`block instances: ${total} provisional components are more than the merge can hold (2^31 - 1)`);
  const parent = new Int32Array(total);
  for (let i = 0; i < total; i++) parent[i] = i;
  const size = new Float64Array(total);
  const first = new Float64Array(total);
  for (const r of records) {
    for (let k = 0; k < r.count; k++) {
      size[offsets[r.index] + k] = r.sizes[k];
      first[offsets[r.index] + k] = r.first[k];
    }
    // only the typed arrays are kept: a few numbers per provisional id
    r.sizes = [];
    r.first = [];
  }
  const steps = connectivitySteps(job.connectivity, plan.shape[0]);
  for (let i = 0; i < plan.count; i++) {
    const block = blockAt(plan, i);
    const g = block.id.split('-').map(Number);
    for (let axis = 0; axis < 3; axis++) if (g[axis] + 1 < plan.grid[axis]) await unionFace(job, block, axis, offsets, parent, steps);
  }
  // sizes and first voxels summed onto the roots (only roots' entries change, after their own are read)
  const kept: number[] = [];
  for (let i = 0; i < total; i++) {
    const root = find(parent, i);
    if (root === i) continue;
    size[root] += size[i];
    if (first[i] < first[root]) first[root] = first[i];
  }
  for (let i = 0; i < total; i++) if (parent[i] === i && size[i] >= job.minSize) kept.push(i);
  kept.sort((p, q) => first[p] - first[q]);
  const finalOf = new Uint32Array(total);
  for (let k = 0; k < kept.length; k++) finalOf[kept[k]] = k + 1;
  for (const r of records) {
    const table = new Uint32Array(r.count + 1);
    for (let k = 1; k <= r.count; k++) table[k] = finalOf[find(parent, offsets[r.index] + k - 1)];
    await writeFileAtomic(tablePath(job.output, r.block), new Uint8Array(table.buffer));
  }
  const count = kept.length;
  const dtype = count < 65536 ? 'uint16' : 'uint32';
  await createZarrVolume(job.output, {
    shape: job.input.shape,
    chunks: drop(job, plan.chunks),
    dtype,
    format: job.format,
    ome: job.ome ?? undefined,
    attributes: { emseg: { kind: 'instance labels', count, threshold: job.threshold, connectivity: job.connectivity, minSize: job.minSize } },
  });
  const merge: MergeResult = {
    count,
    dtype,
    provisional: total,
    threshold: job.threshold,
    connectivity: job.connectivity,
    minSize: job.minSize,
    seconds: (performance.now() - t0) / 1000,
  };
  await writeJsonAtomic(mergePath(job.output), merge);
  return { merge, skipped: false };
}

/** Opens the final labels array of a merged job. */
export function openInstanceLabels(job: InstanceJob): Promise<ZarrVolume> {
  return openZarrVolume(job.output, { labels: true });
}

/**
 * Pass 3 of block `index`, after the merge: writes its final labels (provisional ids through the
 * block's table; removed components 0) into the output, then its done marker. A done block is skipped.
 */
export async function relabelBlock(job: InstanceJob, index: number, labels?: ZarrVolume): Promise<{ skipped: boolean }> {
  const block = blockAt(job.plan, index);
  if (await isBlockDone(job.output, block.id)) return { skipped: true };
  const t0 = performance.now();
  const merge = await readMerge(job);
  if (!merge) throw new Error(`block instances: ${job.output} has no merge yet; run mergeBlockLabels before relabelling block ${block.id}`);
  const bytes = await readFile(tablePath(job.output, block.id));
  const table = new Uint32Array(Uint8Array.from(bytes).buffer);
  const ids = await readProvisional(job, block.start, block.shape);
  const out = merge.dtype === 'uint16' ? new Uint16Array(ids.length) : new Uint32Array(ids.length);
  for (let i = 0; i < ids.length; i++) {
    const l = ids[i];
    if (l >= table.length) throw new Error(`block instances: block ${block.id} holds provisional id ${l}, beyond its table of ${table.length - 1}`);
    out[i] = table[l];
  }
  const output = labels ?? (await openInstanceLabels(job));
  await output.write(drop(job, block.start), drop(job, block.shape), out);
  await writeJsonAtomic(doneMarkerPath(job.output, block.id), {
    block: block.id,
    index,
    start: block.start,
    shape: block.shape,
    seconds: (performance.now() - t0) / 1000,
  });
  return { skipped: false };
}

/**
 * The three passes in turn, in one process: instance labels of `input`'s probabilities in the
 * store `output`, equal to `connectedInstances` of the whole thresholded volume.
 *
 * @example const { labels, merge } = await blockwiseInstances(probabilities, 'labels.zarr', { threshold: 0.5, connectivity: 26, minSize: 100 });
 */
export async function blockwiseInstances(input: ZarrVolume, output: string, options: BlockInstanceOptions): Promise<BlockwiseInstancesResult> {
  const job = await prepareInstanceJob(input, output, options);
  let labelled = 0;
  for (let i = 0; i < job.plan.count; i++) if (!(await labelBlockPass1(job, i)).skipped) labelled++;
  const { merge, skipped: mergeSkipped } = await mergeBlockLabels(job);
  const labels = await openInstanceLabels(job);
  let relabelled = 0;
  for (let i = 0; i < job.plan.count; i++) if (!(await relabelBlock(job, i, labels)).skipped) relabelled++;
  return { job, labels, merge, labelled, relabelled, mergeSkipped };
}
