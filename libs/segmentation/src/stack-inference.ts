/**
 * 3D prediction of a multi-page TIFF stack (one z-slice per page) with a 2D segmenter:
 *
 * - 'stack': every z-slice (xy plane) predicted on its own, exactly as `predictImage` predicts one
 *   2D image. Memory: one slice.
 * - 'orthoplane': every plane along each of the three axes predicted (xy at each z, xz at each y,
 *   yz at each x; z is the row axis of xz and yz planes, as empanada and cem-dataset slice
 *   `volume[:, y, :]` and `volume[:, :, x]`) and the three probabilities averaged per voxel.
 *
 * Orthoplane memory is bounded by a slice and a plane, not the volume: a hidden scratch directory
 * beside the mask output holds the input twice on disk, transposed so that every xz plane (rows of
 * one y from every page) and every yz plane (columns of one x) is one contiguous read, and the xz
 * and yz probabilities, quantised to 16 bits like the probability output (an error of at most
 * 1 / 131070 per plane, below the output's own step), one plane after another. Passes: (1) each
 * page decoded once and scattered into the two transposed copies; (2) the xz planes predicted;
 * (3) the yz planes; (4) each page decoded again, its xy plane predicted, its xz and yz
 * probabilities gathered from the scratch files (one strided read per row or column), averaged,
 * thresholded and appended to the output stacks (`StackWriter`). Scratch files: two input copies
 * (bytes per voxel each) and two 16-bit probability files (2 bytes per voxel each), an input copy
 * removed when its pass is done; the directory is removed at the end, also on an error or a stop.
 * Before anything is opened, the free space of the scratch folder's disk is checked against the
 * peak of scratch and output spools (`orthoplaneDiskBytes`: 7 bytes per voxel for 8-bit input with
 * a probability stack on the same disk, 448 MiB for 64 x 1024 x 1024) plus `SCRATCH_MARGIN_BYTES`,
 * so a full disk fails at once with the numbers and the fix instead of hours into a volume.
 *
 * A plane thinner than the tile along z (a stack shallower than the tile) is predicted in strips:
 * tiles of the full tile width and the plane's height padded by reflection to a multiple of 32
 * (the U-Net's smallest input step; centred, as a single tile row of `tilePlan`), blended along the
 * long axis with the same window and overlap as `predictImage`; a plane that holds a tile is
 * predicted by `predictImage` itself. Unlike `predictImage`, no overlap / 2 of reflected context is
 * added along z: for a 64-slice stack under a 512 tile with overlap 128 it would triple the xz and
 * yz work (192 rows for 64), and the stack's first and last slices are its edges anyway.
 */
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { mkdir, rm, stat, statfs } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { blendWeights, cutRegion, maxValue, readStackInfo, readStackSlice, StackWriter, tilePlan, type GreyImage, type PixelArray } from '@emseg/data';
import { temporarySibling } from '@emseg/fs';
import { checkTileFits, inferenceProblem, predictImage, PredictionStopped, TILE_MULTIPLE, toProbability16, type InferenceOptions } from './inference.js';
import type { Segmenter } from './segmenter.js';

export type StackMode = 'stack' | 'orthoplane';

/** The plane orientations: xy at one z (a page), xz at one y, yz at one x. */
export type PlaneAxis = 'xy' | 'xz' | 'yz';

export interface StackPredictOptions {
  mode: StackMode;
  inference: InferenceOptions;
  /** Foreground where the (averaged) probability >= threshold. */
  threshold: number;
  /** 16-bit probability stack (round(p * 65535)), if wanted. A .tif/.tiff path. */
  probabilityOut?: string;
  /** 8-bit mask stack, foreground 255 on background 0. A .tif/.tiff path. */
  maskOut: string;
  /** After each plane: `done` of `total` planes of this axis (orthoplane: xz, then yz, then xy). */
  onSlice?: (axis: PlaneAxis, done: number, total: number) => void;
  /** Checked between tile batches and planes: when it turns true, prediction ends with `PredictionStopped`, nothing written. */
  stop?: { readonly requested: boolean };
  /**
   * Reads a disk's free space for orthoplane's check before any work (default: node's
   * `fs.promises.statfs`; free = bavail x bsize, the blocks an unprivileged process may use).
   */
  statfs?: (path: string) => Promise<{ bavail: number | bigint; bsize: number | bigint }>;
}

/** Spare room orthoplane's disk check asks for beyond `orthoplaneDiskBytes` (spool headers, block rounding, other writers). */
export const SCRATCH_MARGIN_BYTES = 64 * 1024 * 1024;

/** Allowance per spooled output page (`StackWriter`'s libvips .v header and metadata, rounded up to a 4 KiB block). */
const SPOOL_PAGE_BYTES = 8192;

/** The disk space orthoplane prediction uses on its scratch folder's disk, in bytes. */
export interface OrthoplaneDisk {
  /** Peak of the scratch files alone: both input copies and the xz probabilities, or one copy and both probabilities. */
  scratch: number;
  /** The output stacks' uncompressed spools on that disk (the mask's always, the probability's when on the same disk). */
  spools: number;
  /** Peak of scratch and spools together: the most the prediction holds on that disk at once. */
  peak: number;
}

/**
 * What `predictStack` in orthoplane mode puts on the disk of its scratch folder, pass by pass (V
 * voxels, b bytes per input voxel): (1) the two transposed input copies, 2bV; (2) the xz pass adds
 * the xz probabilities, 2bV + 2V; (3) the xz input copy removed, the yz probabilities added,
 * bV + 4V; (4) the yz input copy removed, the xy pass appends every slice to the mask spool (V)
 * and, with `probabilitySpool`, the 16-bit probability spool (2V): 4V + V (+ 2V). After (4) the
 * scratch is removed before the spools are joined into the (LZW) output stacks.
 *
 * @example orthoplaneDiskBytes({ width: 1024, height: 1024, depth: 64, bitDepth: 8 }, true).peak // 7 x 2^26 bytes + page allowances
 */
export function orthoplaneDiskBytes(size: { width: number; height: number; depth: number; bitDepth: 8 | 16 }, probabilitySpool: boolean): OrthoplaneDisk {
  const voxels = size.width * size.height * size.depth;
  const b = size.bitDepth / 8;
  const pages = size.depth * (probabilitySpool ? 2 : 1);
  const spools = voxels * (probabilitySpool ? 3 : 1) + pages * SPOOL_PAGE_BYTES;
  const scratch = Math.max(2 * b * voxels + 2 * voxels, b * voxels + 4 * voxels);
  return { scratch, spools, peak: Math.max(scratch, 4 * voxels + spools) };
}

/** The path itself or its nearest existing ancestor, with the device it lives on. */
async function existingAncestor(path: string): Promise<{ dir: string; dev: number }> {
  let dir = resolve(path);
  for (;;) {
    try {
      return { dir, dev: (await stat(dir)).dev };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if ((code !== 'ENOENT' && code !== 'ENOTDIR') || dirname(dir) === dir) throw err;
      dir = dirname(dir);
    }
  }
}

const sizeText = (bytes: number) => `${bytes} bytes (${bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`})`;

/**
 * Fails, before anything is opened or predicted, when the disk of the orthoplane scratch folder
 * (`scratch`, beside the mask output) has less free space than `orthoplaneDiskBytes` plus
 * `SCRATCH_MARGIN_BYTES`; the error names the folder, both numbers and the fix.
 */
async function checkScratchSpace(
  input: string,
  size: { width: number; height: number; depth: number; bitDepth: 8 | 16 },
  scratch: string,
  options: StackPredictOptions,
): Promise<void> {
  const disk = await existingAncestor(dirname(scratch));
  const probabilitySpool = options.probabilityOut !== undefined && (await existingAncestor(dirname(options.probabilityOut))).dev === disk.dev;
  const need = orthoplaneDiskBytes(size, probabilitySpool);
  const fs = await (options.statfs ?? statfs)(disk.dir);
  const available = Number(fs.bavail) * Number(fs.bsize);
  if (available >= need.peak + SCRATCH_MARGIN_BYTES) return;
  const { width, height, depth, bitDepth } = size;
  throw new Error(
    `${input}: not enough disk space for orthoplane prediction of this ${width} x ${height} x ${depth} ${bitDepth}-bit stack: ` +
      `its scratch folder ${scratch} (created beside the mask output) needs ${sizeText(need.peak)} at its peak ` +
      `(scratch files ${sizeText(need.scratch)}: two transposed input copies and the 16-bit xz and yz probabilities; ` +
      `then the output spools, ${sizeText(need.spools)}, beside them) plus ${sizeText(SCRATCH_MARGIN_BYTES)} to spare, ` +
      `but ${disk.dir} has ${sizeText(available)} available. Nothing was predicted or written. ` +
      `Free space on that disk, write the mask output to a disk with more room (the scratch folder follows it: ` +
      `maskOut, \`finetune predict --out DIR\`), or predict slice by slice (mode 'stack', \`--stack stack\`), which needs no scratch`,
  );
}

export interface StackPrediction {
  input: string;
  mode: StackMode;
  width: number;
  height: number;
  depth: number;
  mask: string;
  probability: string | null;
  /** Planes predicted per axis (stack: depth xy planes only). */
  planes: Record<PlaneAxis, number>;
  /** Fraction of voxels in the mask. */
  foregroundFraction: number;
  seconds: number;
  /** z-slices of the volume per second (the whole volume's depth over the whole time). */
  slicesPerSecond: number;
}

/** Rows of a strip for a plane `height` rows tall: a multiple of 32, at most the tile. */
export function stripHeight(height: number, tileSize: number): number {
  return Math.min(tileSize, Math.ceil(height / TILE_MULTIPLE) * TILE_MULTIPLE);
}

/**
 * Foreground probability of every pixel of one plane (width x height floats, row-major). A plane
 * that holds a tile is `predictImage`'s; one shallower than the tile (rows < tileSize, width >=
 * tileSize) is predicted in strips of `stripHeight(rows)` x tileSize, reflect-padded and centred
 * vertically, tiled and blended along the width as `predictImage` tiles a row of tiles.
 *
 * @example const p = await predictPlane(seg, { width: 1024, height: 64, bitDepth: 8, data }, inference); // an xz plane of a 64-slice stack
 */
export async function predictPlane(
  segmenter: Segmenter,
  plane: GreyImage,
  options: InferenceOptions,
  name = 'plane',
  stop?: { readonly requested: boolean },
): Promise<Float32Array> {
  const { tileSize, overlap } = options;
  const { width, height } = plane;
  if (height >= tileSize || width < tileSize) return predictImage(segmenter, plane, options, name, undefined, stop);
  const rows = stripHeight(height, tileSize);
  const top = -Math.floor((rows - height) / 2);
  const { xs } = tilePlan(width, 1, { tileSize, overlap, padding: options.padding });
  const weights = blendWeights(tileSize, overlap, options.window);
  const scale = 1 / maxValue(plane.bitDepth);
  const area = rows * tileSize;
  const sum = new Float32Array(width * height);
  for (let start = 0; start < xs.length; start += options.batchSize) {
    if (stop) {
      await yieldToEventLoop();
      if (stop.requested) throw new PredictionStopped(name);
    }
    const group = xs.slice(start, start + options.batchSize);
    const input = new Float32Array(group.length * area);
    group.forEach((x, i) => {
      const raw = cutRegion(plane.data, width, height, { x, y: top, width: tileSize, height: rows });
      const o = i * area;
      for (let k = 0; k < area; k++) input[o + k] = raw[k] * scale;
    });
    const out = segmenter.probabilities(input, group.length, [rows, tileSize], options.flipTta);
    group.forEach((x, i) => {
      const c0 = Math.max(0, -x);
      const c1 = Math.min(tileSize, width - x);
      for (let r = 0; r < height; r++) {
        const src = i * area + (r - top) * tileSize;
        const dst = r * width + x;
        for (let c = c0; c < c1; c++) sum[dst + c] += weights[c] * out[src + c];
      }
    });
  }
  // the blend's normaliser: the summed window of the strips over each column
  const norm = new Float64Array(width);
  for (const x of xs) for (let c = Math.max(0, -x); c < tileSize && x + c < width; c++) norm[x + c] += weights[c];
  for (let r = 0; r < height; r++) for (let c = 0; c < width; c++) sum[r * width + c] /= norm[c];
  return sum;
}

/** A raw scratch file read and written at byte offsets. */
class RawFile {
  private fd: number | null;

  constructor(readonly path: string) {
    this.fd = openSync(path, 'w+');
  }

  write(data: ArrayBufferView, position: number): void {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    let done = 0;
    while (done < bytes.length) done += writeSync(this.fd!, bytes, done, bytes.length - done, position + done);
  }

  read(into: ArrayBufferView, position: number): void {
    const bytes = new Uint8Array(into.buffer, into.byteOffset, into.byteLength);
    let done = 0;
    while (done < bytes.length) {
      const n = readSync(this.fd!, bytes, done, bytes.length - done, position + done);
      if (n === 0) throw new Error(`${this.path}: scratch file ends at byte ${position + done}, expected ${bytes.length - done} more`);
      done += n;
    }
  }

  async remove(): Promise<void> {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
    await rm(this.path, { force: true });
  }
}

const pixels = (bitDepth: 8 | 16, length: number): PixelArray => (bitDepth === 16 ? new Uint16Array(length) : new Uint8Array(length));

/**
 * Predicts a stack (`input`, a multi-page TIFF; a single-page image is a stack of depth 1) and
 * writes the mask stack (and the probability stack), each atomically by `StackWriter`. Memory is
 * bounded by a slice and a plane (see the module comment); TensorFlow tensors are all released.
 *
 * @example const r = await predictStack(seg, 'em/stack.tif', { mode: 'orthoplane', inference, threshold: 0.5, maskOut: 'out/stack.tif', probabilityOut: 'out/probability/stack.tif' });
 */
export async function predictStack(segmenter: Segmenter, input: string, options: StackPredictOptions): Promise<StackPrediction> {
  const t0 = performance.now();
  const { inference, threshold, mode, stop } = options;
  if (mode !== 'stack' && mode !== 'orthoplane') throw new Error(`stack mode must be 'stack' or 'orthoplane', got ${JSON.stringify(mode)}`);
  const problem = inferenceProblem(inference, (n) => `inference.${n}`);
  if (problem) throw new Error(problem);
  if (!(threshold >= 0 && threshold <= 1)) throw new Error(`threshold must be a probability in [0, 1], got ${threshold}`);
  const info = await readStackInfo(input);
  const { width, height, depth, bitDepth } = info;
  checkTileFits(input, width, height, inference);
  const plane = width * height;
  const planes: Record<PlaneAxis, number> = { xy: depth, xz: mode === 'orthoplane' ? height : 0, yz: mode === 'orthoplane' ? width : 0 };
  const checkStop = () => {
    if (stop?.requested) throw new PredictionStopped(input);
  };
  const scratch = mode === 'orthoplane' ? temporarySibling(options.maskOut) : null;
  if (scratch !== null) await checkScratchSpace(input, { width, height, depth, bitDepth }, scratch, options);

  const maskWriter = await StackWriter.open(options.maskOut, { width, height, bitDepth: 8 });
  let probabilityWriter: StackWriter | null = null;
  try {
    if (options.probabilityOut) probabilityWriter = await StackWriter.open(options.probabilityOut, { width, height, bitDepth: 16 });
  } catch (err) {
    await maskWriter.abort();
    throw err;
  }
  let foreground = 0;
  /** Appends slice z's probabilities to the outputs. */
  const emit = async (probability: Float32Array) => {
    const mask = new Uint8Array(plane);
    for (let i = 0; i < plane; i++) {
      if (probability[i] >= threshold) {
        mask[i] = 255;
        foreground++;
      }
    }
    if (probabilityWriter) await probabilityWriter.append(toProbability16(probability, width, height));
    await maskWriter.append({ width, height, bitDepth: 8, data: mask });
  };
  try {
    if (scratch === null) {
      for (let z = 0; z < depth; z++) {
        checkStop();
        const slice = await readStackSlice(input, z);
        await emit(await predictImage(segmenter, slice, inference, `${input} slice z=${z}`, undefined, stop));
        options.onSlice?.('xy', z + 1, depth);
      }
    } else {
      await mkdir(scratch, { recursive: true });
      await predictOrthoplane(segmenter, input, { width, height, depth, bitDepth }, scratch, inference, options, checkStop, emit);
    }
    // the probability stack first: a mask that cannot be written takes it away again
    if (probabilityWriter) await probabilityWriter.close();
    try {
      await maskWriter.close();
    } catch (err) {
      if (options.probabilityOut) await rm(options.probabilityOut, { force: true });
      throw err;
    }
  } catch (err) {
    await Promise.all([maskWriter.abort(), probabilityWriter?.abort()]);
    throw err;
  } finally {
    if (scratch !== null) await rm(scratch, { recursive: true, force: true });
  }
  const seconds = (performance.now() - t0) / 1000;
  return {
    input,
    mode,
    width,
    height,
    depth,
    mask: options.maskOut,
    probability: options.probabilityOut ?? null,
    planes,
    foregroundFraction: foreground / (plane * depth),
    seconds,
    slicesPerSecond: depth / seconds,
  };
}

/** The four orthoplane passes (see the module comment); `emit` gets each z-slice's mean probability in order. */
async function predictOrthoplane(
  segmenter: Segmenter,
  input: string,
  size: { width: number; height: number; depth: number; bitDepth: 8 | 16 },
  scratch: string,
  inference: InferenceOptions,
  options: StackPredictOptions,
  checkStop: () => void,
  emit: (probability: Float32Array) => Promise<void>,
): Promise<void> {
  const { width: W, height: H, depth: D, bitDepth } = size;
  const bytes = bitDepth / 8;
  const stop = options.stop;
  // (1) the input transposed twice: xz planes (y, z, x) and yz planes (x, z, y), each contiguous
  const xzInput = new RawFile(join(scratch, 'input-xz.raw'));
  const yzInput = new RawFile(join(scratch, 'input-yz.raw'));
  const xzProbability = new RawFile(join(scratch, 'probability-xz.u16'));
  const yzProbability = new RawFile(join(scratch, 'probability-yz.u16'));
  try {
    const columns = pixels(bitDepth, W * H);
    for (let z = 0; z < D; z++) {
      checkStop();
      const { data } = await readStackSlice(input, z);
      for (let y = 0; y < H; y++) xzInput.write(data.subarray(y * W, (y + 1) * W), (y * D + z) * W * bytes);
      for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) columns[x * H + y] = data[y * W + x];
      for (let x = 0; x < W; x++) yzInput.write(columns.subarray(x * H, (x + 1) * H), (x * D + z) * H * bytes);
    }
    // (2), (3) the xz planes (D x W, at each y) and the yz planes (D x H, at each x)
    const passes = [
      { axis: 'xz' as const, count: H, length: W, source: xzInput, target: xzProbability },
      { axis: 'yz' as const, count: W, length: H, source: yzInput, target: yzProbability },
    ];
    for (const { axis, count, length, source, target } of passes) {
      const data = pixels(bitDepth, D * length);
      for (let i = 0; i < count; i++) {
        checkStop();
        source.read(data, i * D * length * bytes);
        const p = await predictPlane(
          segmenter,
          { width: length, height: D, bitDepth, data },
          inference,
          `${input} ${axis} plane ${axis === 'xz' ? 'y' : 'x'}=${i}`,
          stop,
        );
        target.write(toProbability16(p, length, D).data, i * D * length * 2);
        options.onSlice?.(axis, i + 1, count);
      }
      await source.remove();
    }
    // (4) each z: xy predicted, xz and yz gathered, the mean emitted
    const row = new Uint16Array(W);
    const column = new Uint16Array(H);
    const unit = 1 / 65535;
    for (let z = 0; z < D; z++) {
      checkStop();
      const slice = await readStackSlice(input, z);
      const sum = await predictImage(segmenter, slice, inference, `${input} slice z=${z}`, undefined, stop);
      for (let y = 0; y < H; y++) {
        xzProbability.read(row, (y * D + z) * W * 2);
        const o = y * W;
        for (let x = 0; x < W; x++) sum[o + x] += row[x] * unit;
      }
      for (let x = 0; x < W; x++) {
        yzProbability.read(column, (x * D + z) * H * 2);
        for (let y = 0; y < H; y++) sum[y * W + x] += column[y] * unit;
      }
      for (let i = 0; i < sum.length; i++) sum[i] /= 3;
      await emit(sum);
      options.onSlice?.('xy', z + 1, D);
    }
  } finally {
    await Promise.all([xzInput.remove(), yzInput.remove(), xzProbability.remove(), yzProbability.remove()]);
  }
}
