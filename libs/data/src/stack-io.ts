/**
 * 3D EM volumes as multi-page TIFF stacks (one z-slice per page), read and written with sharp
 * (libvips). The single-image readers (`readImage`, `readImageInfo`) keep refusing stacks; these
 * are the explicit stack readers.
 *
 * - `readStackInfo`: size, depth (pages) and bit depth from the header. A single-page file (TIFF,
 *   PNG or JPEG) is a stack of depth 1.
 * - `readStackSlice(path, z)`: decodes one page only (sharp's `page` option), so memory stays one
 *   slice; the page must have page 0's size and bit depth.
 * - `readStack`: every slice, one after another.
 * - `writeStack(path, slices)`: 8- or 16-bit grey, LZW, one page per slice, atomically (temp file +
 *   rename). sharp takes the volume as one tall raw image ("toilet roll") with
 *   `raw.pageHeight = height`, so it holds one extra copy of the volume while writing.
 * - `StackWriter`: appends slices one at a time with memory bounded by a slice (plus libvips'
 *   per-page bookkeeping, ~0.2 MB per 2048 x 2048 page); see the class comment.
 *
 * libvips limits a stack to height x depth <= 100,000,000 rows (it would silently write one page
 * beyond that), so writes refuse taller stacks; files over 2 GiB of pixels are written as BigTIFF.
 */
import { mkdir, rm } from 'node:fs/promises';
import { extname, join } from 'node:path';
import sharp from 'sharp';
import { temporarySibling, withTemporaryFile } from '@emseg/fs';
import { DataError, assertPathKind } from './errors.js';
import type { BitDepth, GreyImage, PixelArray } from './image.js';

export interface StackInfo {
  readonly path: string;
  readonly format: 'tiff' | 'png' | 'jpeg';
  /** Size of every slice (page 0's; other pages are checked when they are decoded). */
  readonly width: number;
  readonly height: number;
  /** Number of z-slices: TIFF pages; 1 for a single-page file. */
  readonly depth: number;
  readonly bitDepth: BitDepth;
  /** Channels stored in the file (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA); reads always return 1. */
  readonly channels: number;
}

/** A decoded volume: `slices[z]` is z-slice z, all of one size and bit depth. */
export interface GreyStack {
  readonly width: number;
  readonly height: number;
  readonly depth: number;
  readonly bitDepth: BitDepth;
  readonly slices: readonly GreyImage[];
}

export interface WriteStackOptions {
  /**
   * Bit depth of the file. Default: the slices' own (they must then agree). Values are kept, never
   * rescaled: 8-bit slices written as 16-bit keep 0..255; 16-bit slices written as 8-bit must not
   * exceed 255 (instance ids, class maps).
   */
  readonly bitDepth?: BitDepth;
}

export interface StackWriterOptions {
  readonly width: number;
  readonly height: number;
  readonly bitDepth: BitDepth;
}

const READABLE = 'a multi-page TIFF stack or a single-page PNG, TIFF or JPEG image (8- or 16-bit grey)';
/** libvips' largest image dimension (VIPS_MAX_COORD); the toilet roll is height x depth tall. */
const MAX_ROWS = 100_000_000;
/** Above this many bytes of pixels, write BigTIFF (64-bit offsets); classic TIFF stops at 4 GiB. */
const BIGTIFF_BYTES = 2 ** 31;

function decodeError(path: string, err: unknown): DataError {
  return new DataError(path, `is not a readable image stack (${(err as Error).message.trim()})`, `a complete, uncorrupted ${READABLE.slice(2)}`);
}

async function header(path: string, page?: number): Promise<sharp.Metadata> {
  try {
    return await sharp(path, { limitInputPixels: false, ...(page === undefined ? {} : { page }) }).metadata();
  } catch (err) {
    throw decodeError(path, err);
  }
}

function bitDepthOf(path: string, depth: string | undefined, what: string): BitDepth {
  if (depth === 'uchar') return 8;
  if (depth === 'ushort') return 16;
  throw new DataError(path, `${what} has samples of type "${depth}"`, READABLE);
}

/**
 * Size, depth (number of pages) and bit depth from the file header, without decoding pixels.
 *
 * @example const { width, height, depth } = await readStackInfo('data/images/stack.tif');
 */
export async function readStackInfo(path: string): Promise<StackInfo> {
  await assertPathKind(path, 'file', READABLE);
  const meta = await header(path);
  const format = meta.format === 'jpg' ? 'jpeg' : meta.format;
  if (format !== 'png' && format !== 'tiff' && format !== 'jpeg') {
    throw new DataError(path, `is a ${String(meta.format).toUpperCase()} image`, READABLE);
  }
  const bitDepth = bitDepthOf(path, meta.depth, 'page 0');
  if (meta.width === undefined || meta.height === undefined) throw new DataError(path, 'has no image size in its header', READABLE);
  return { path, format, width: meta.width, height: meta.height, depth: meta.pages ?? 1, bitDepth, channels: meta.channels ?? 1 };
}

function checkZ(info: StackInfo, z: number): void {
  if (!Number.isInteger(z) || z < 0 || z >= info.depth) {
    throw new DataError(
      info.path,
      `has no slice z=${z}: the stack has ${info.depth} slice${info.depth === 1 ? '' : 's'}`,
      `an integer z from 0 to ${info.depth - 1}`,
    );
  }
}

/** Decodes page z of a stack whose header is `info`, checking it against page 0. */
async function decodeSlice(info: StackInfo, z: number): Promise<GreyImage> {
  const { path, width, height, bitDepth } = info;
  let channels = info.channels;
  if (z > 0) {
    const page = await header(path, z);
    const pageDepth = bitDepthOf(path, page.depth, `page ${z}`);
    if (page.width !== width || page.height !== height || pageDepth !== bitDepth) {
      throw new DataError(
        path,
        `page ${z} is ${page.width}x${page.height} ${pageDepth}-bit`,
        `every page ${width}x${height} ${bitDepth}-bit, like page 0 (one z-slice per page)`,
      );
    }
    channels = page.channels ?? 1;
  }
  let pipeline = sharp(path, { limitInputPixels: false, failOn: 'error', page: z });
  if (channels === 2 || channels === 4) pipeline = pipeline.removeAlpha();
  pipeline = pipeline.toColourspace(bitDepth === 16 ? 'grey16' : 'b-w');
  let output: { data: Buffer; info: sharp.OutputInfo };
  try {
    output = await pipeline.raw(bitDepth === 16 ? { depth: 'ushort' } : {}).toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw decodeError(path, err);
  }
  const { data } = output;
  if (output.info.channels !== 1 || output.info.width !== width || output.info.height !== height || data.byteLength !== width * height * (bitDepth / 8)) {
    throw new DataError(
      path,
      `page ${z} decoded to ${output.info.width}x${output.info.height}, ${output.info.channels} channels, ${data.byteLength} bytes`,
      `one grey channel of ${width}x${height}`,
    );
  }
  if (bitDepth === 8) return { width, height, bitDepth: 8, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  const words = data.byteOffset % 2 === 0 ? new Uint16Array(data.buffer, data.byteOffset, data.byteLength / 2) : new Uint16Array(Uint8Array.from(data).buffer);
  return { width, height, bitDepth: 16, data: words };
}

/**
 * Decodes z-slice `z` (page z, counting from 0) as one grey channel at the stack's bit depth.
 * Only that page is decoded.
 *
 * @example const middle = await readStackSlice(path, Math.floor((await readStackInfo(path)).depth / 2));
 */
export async function readStackSlice(path: string, z: number): Promise<GreyImage> {
  const info = await readStackInfo(path);
  checkZ(info, z);
  return decodeSlice(info, z);
}

/** Decodes every slice of a stack (memory: the whole volume). */
export async function readStack(path: string): Promise<GreyStack> {
  const info = await readStackInfo(path);
  const slices: GreyImage[] = [];
  for (let z = 0; z < info.depth; z++) slices.push(await decodeSlice(info, z));
  return { width: info.width, height: info.height, depth: info.depth, bitDepth: info.bitDepth, slices };
}

function checkTiffPath(path: string): void {
  const ext = extname(path).toLowerCase();
  if (ext !== '.tif' && ext !== '.tiff') throw new DataError(path, `cannot write a stack with extension "${ext}"`, 'a path ending in .tif or .tiff');
}

function checkRows(path: string, height: number, depth: number): void {
  if (height * depth > MAX_ROWS) {
    throw new DataError(
      path,
      `a stack of ${depth} slices of height ${height} is ${height * depth} rows tall`,
      `height x depth <= ${MAX_ROWS} (libvips' largest image)`,
    );
  }
}

/** `slice`'s pixels at `bitDepth`, values unchanged (a copy only when the depth changes). */
function atBitDepth(path: string, slice: GreyImage, z: number, bitDepth: BitDepth): PixelArray {
  const { data } = slice;
  const sixteen = data instanceof Uint16Array;
  if (sixteen === (bitDepth === 16)) return data;
  if (bitDepth === 16) return Uint16Array.from(data);
  let max = 0;
  for (let i = 0; i < data.length; i++) if (data[i] > max) max = data[i];
  if (max > 255) throw new DataError(path, `slice ${z} has value ${max}`, 'values 0..255 for an 8-bit stack (write it with bitDepth: 16)');
  return Uint8Array.from(data);
}

function checkSlice(path: string, slice: GreyImage, z: number, width: number, height: number): void {
  if (slice.width !== width || slice.height !== height) {
    throw new DataError(path, `slice ${z} is ${slice.width}x${slice.height}`, `every slice ${width}x${height}, like slice 0`);
  }
  if (slice.data.length !== width * height) {
    throw new DataError(path, `slice ${z} has ${slice.data.length} values for ${width}x${height}`, `${width * height} values`);
  }
}

function tiffOptions(width: number, height: number, depth: number, bitDepth: BitDepth): sharp.TiffOptions {
  return { compression: 'lzw', bigtiff: width * height * depth * (bitDepth / 8) > BIGTIFF_BYTES };
}

/** Writes `pipeline` to a temporary sibling of `path`, checks its pages and channels, renames it into place. */
async function saveStack(path: string, pipeline: sharp.Sharp, depth: number): Promise<void> {
  await withTemporaryFile(path, async (tmp) => {
    await pipeline.toFile(tmp);
    const meta = await sharp(tmp).metadata();
    const pages = meta.pages ?? 1;
    if (pages !== depth || meta.channels !== 1) {
      throw new DataError(path, `was written with ${pages} pages of ${meta.channels} channels`, `${depth} grey pages, one per slice`);
    }
  });
}

/**
 * Writes slices as a multi-page grey TIFF (LZW, one page per slice), atomically. Every slice must
 * have slice 0's size. Holds one extra copy of the volume while writing; use `StackWriter` to keep
 * memory to a slice.
 *
 * @example await writeStack('out/masks/stack.tif', masks, { bitDepth: 8 });
 */
export async function writeStack(path: string, slices: readonly GreyImage[], options: WriteStackOptions = {}): Promise<void> {
  checkTiffPath(path);
  if (slices.length === 0) throw new DataError(path, 'no slices to write', 'at least one slice');
  const { width, height } = slices[0];
  const depth = slices.length;
  let bitDepth = options.bitDepth;
  if (bitDepth === undefined) {
    bitDepth = slices[0].data instanceof Uint16Array ? 16 : 8;
    const other = slices.findIndex((s) => s.data instanceof Uint16Array !== (bitDepth === 16));
    if (other >= 0) {
      throw new DataError(path, `slice ${other} is ${bitDepth === 16 ? 8 : 16}-bit, slice 0 ${bitDepth}-bit`, 'slices of one bit depth, or a bitDepth option');
    }
  }
  checkRows(path, height, depth);
  slices.forEach((slice, z) => checkSlice(path, slice, z, width, height));
  const plane = width * height;
  const volume = bitDepth === 16 ? new Uint16Array(plane * depth) : new Uint8Array(plane * depth);
  slices.forEach((slice, z) => volume.set(atBitDepth(path, slice, z, bitDepth), z * plane));
  const pipeline = sharp(volume, { raw: { width, height: height * depth, channels: 1, pageHeight: height }, limitInputPixels: false })
    .toColourspace(bitDepth === 16 ? 'grey16' : 'b-w')
    .tiff(tiffOptions(width, height, depth, bitDepth));
  await saveStack(path, pipeline, depth);
}

/**
 * Writes a multi-page TIFF a slice at a time, for volumes too large to hold (e.g. prediction
 * output). Each appended slice is spooled to an uncompressed libvips `.v` file in a hidden
 * temporary directory beside `path` (same disk); `close()` joins the spooled pages with sharp
 * (`join: { animated: true }`, which streams them from disk; then `extractChannel(0)`, as join
 * returns 3 bands and an alpha) into the LZW stack, written
 * atomically, and removes the spool. Memory: one slice in JavaScript, and libvips reads the
 * pages as it writes (measured: 108 MB peak RSS for 100 slices of 2048 x 2048 8-bit, 153 MB for 300, a 1.2 GB volume).
 * Disk: the uncompressed volume once more, until `close()` returns. An interrupted writer leaves
 * only a hidden `.NAME.tmp-*` directory (listings ignore hidden names); `abort()` removes it.
 *
 * @example
 * const writer = await StackWriter.open('out/pred.tif', { width, height, bitDepth: 8 });
 * for (let z = 0; z < depth; z++) await writer.append(await predictSlice(z));
 * await writer.close();
 */
export class StackWriter {
  private readonly pages: string[] = [];
  private state: 'open' | 'closed' = 'open';

  private constructor(
    readonly path: string,
    readonly width: number,
    readonly height: number,
    readonly bitDepth: BitDepth,
    private readonly spool: string,
  ) {}

  /** Starts a stack at `path` (written by `close()`; nothing appears there before). */
  static async open(path: string, options: StackWriterOptions): Promise<StackWriter> {
    checkTiffPath(path);
    const { width, height, bitDepth } = options;
    if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
      throw new DataError(path, `slice size ${width}x${height}`, 'a positive integer width and height');
    }
    if (bitDepth !== 8 && bitDepth !== 16) throw new DataError(path, `bit depth ${String(bitDepth)}`, 'bitDepth 8 or 16');
    const spool = temporarySibling(path);
    await mkdir(spool, { recursive: true });
    return new StackWriter(path, width, height, bitDepth, spool);
  }

  /** Slices appended so far. */
  get depth(): number {
    return this.pages.length;
  }

  /** Appends the next z-slice (values kept at the writer's bit depth, as `writeStack`). */
  async append(slice: GreyImage): Promise<void> {
    if (this.state !== 'open') throw new Error(`StackWriter for ${this.path} is already closed`);
    const z = this.pages.length;
    checkSlice(this.path, slice, z, this.width, this.height);
    checkRows(this.path, this.height, z + 1);
    const data = atBitDepth(this.path, slice, z, this.bitDepth);
    const page = join(this.spool, `${String(z).padStart(6, '0')}.v`);
    this.pages.push(page);
    await sharp(data, { raw: { width: this.width, height: this.height, channels: 1 }, limitInputPixels: false })
      .toColourspace(this.bitDepth === 16 ? 'grey16' : 'b-w')
      .toFile(page);
  }

  /** Writes the stack (atomically) and removes the spool; returns the written stack's header. */
  async close(): Promise<StackInfo> {
    if (this.state !== 'open') throw new Error(`StackWriter for ${this.path} is already closed`);
    this.state = 'closed';
    try {
      const depth = this.pages.length;
      if (depth === 0) throw new DataError(this.path, 'no slices were appended', 'at least one slice');
      const input = depth === 1 ? sharp(this.pages[0], { limitInputPixels: false }) : sharp(this.pages, { join: { animated: true }, limitInputPixels: false });
      // join makes the pages 3-band (+ alpha); band 0 holds the exact values at either bit depth.
      const pipeline = input
        .extractChannel(0)
        .toColourspace(this.bitDepth === 16 ? 'grey16' : 'b-w')
        .tiff(tiffOptions(this.width, this.height, depth, this.bitDepth));
      await saveStack(this.path, pipeline, depth);
    } finally {
      await rm(this.spool, { recursive: true, force: true });
    }
    return readStackInfo(this.path);
  }

  /** Discards the appended slices; nothing is written. */
  async abort(): Promise<void> {
    this.state = 'closed';
    await rm(this.spool, { recursive: true, force: true });
  }
}
