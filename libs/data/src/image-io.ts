/**
 * Reading and writing grey EM images with sharp (libvips).
 *
 * - Reads PNG, TIFF and JPEG, 8- or 16-bit; RGB(A) is converted to grey (luminance, alpha dropped).
 * - Refuses multi-page TIFF stacks (one file = one image until stacks are supported everywhere;
 *   libvips would silently decode only the first page).
 * - `region` decodes only what libvips needs for that rectangle: for PNG (decoded top to bottom) the
 *   rows up to the region's bottom, for tiled TIFF only the tiles it touches.
 * - Writes 8- and 16-bit PNG/TIFF (lossless: TIFF uses LZW) atomically (temp file + rename).
 */
import { extname } from 'node:path';
import sharp from 'sharp';
import { withTemporaryFile } from '@emseg/fs';
import { DataError, assertPathKind } from './errors.js';
import type { BitDepth, GreyImage, Rect } from './image.js';

/** File extensions treated as images (lower case). */
export const IMAGE_EXTENSIONS: readonly string[] = ['.png', '.tif', '.tiff', '.jpg', '.jpeg'];
const READABLE = 'a PNG, TIFF or JPEG image (8- or 16-bit)';

/** Whether a file name has one of IMAGE_EXTENSIONS. */
export function isImageFileName(name: string): boolean {
  return IMAGE_EXTENSIONS.includes(extname(name).toLowerCase());
}

export interface ImageInfo {
  readonly path: string;
  readonly format: 'png' | 'tiff' | 'jpeg';
  readonly width: number;
  readonly height: number;
  readonly bitDepth: BitDepth;
  /** Channels stored in the file (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA); reads always return 1. */
  readonly channels: number;
}

export interface ReadImageOptions {
  /** Decode only this rectangle (must lie inside the image). */
  readonly region?: Rect;
}

function decodeError(path: string, err: unknown): DataError {
  return new DataError(path, `is not a readable image (${(err as Error).message.trim()})`, `a complete, uncorrupted ${READABLE.slice(2)}`);
}

/** Size, bit depth and format from the file header, without decoding pixels. */
export async function readImageInfo(path: string): Promise<ImageInfo> {
  await assertPathKind(path, 'file', READABLE);
  let meta: sharp.Metadata;
  try {
    meta = await sharp(path, { limitInputPixels: false }).metadata();
  } catch (err) {
    throw decodeError(path, err);
  }
  const format = meta.format === 'jpg' ? 'jpeg' : meta.format;
  if (format !== 'png' && format !== 'tiff' && format !== 'jpeg') {
    throw new DataError(path, `is a ${String(meta.format).toUpperCase()} image`, READABLE);
  }
  let bitDepth: BitDepth;
  if (meta.depth === 'uchar') bitDepth = 8;
  else if (meta.depth === 'ushort') bitDepth = 16;
  else throw new DataError(path, `has samples of type "${meta.depth}"`, READABLE);
  if (meta.width === undefined || meta.height === undefined) throw new DataError(path, 'has no image size in its header', READABLE);
  if ((meta.pages ?? 1) > 1) {
    throw new DataError(
      path,
      `is a multi-page ${format.toUpperCase()} stack (${meta.pages} pages); stacks are not supported yet`,
      'one image per file: split the stack into one file per slice (e.g. Fiji: Image > Stacks > Stack to Images, or `tiffsplit`)',
    );
  }
  return { path, format, width: meta.width, height: meta.height, bitDepth, channels: meta.channels ?? 1 };
}

/**
 * Decodes an image (or a region of it) to one grey channel at its native bit depth.
 *
 * @example
 * const img = await readImage('imgs/Track1/train/0.png');                // full image
 * const tile = await readImage(path, { region: { x: 0, y: 0, width: 1024, height: 1024 } });
 */
export async function readImage(path: string, options: ReadImageOptions = {}): Promise<GreyImage> {
  const info = await readImageInfo(path);
  const { region } = options;
  if (region !== undefined) {
    const { x, y, width, height } = region;
    const valid = [x, y, width, height].every(Number.isInteger) && x >= 0 && y >= 0 && width > 0 && height > 0;
    if (!valid || x + width > info.width || y + height > info.height) {
      throw new DataError(
        path,
        `region x=${x} y=${y} ${width}x${height} is outside the ${info.width}x${info.height} image`,
        'a region of positive integer size inside the image',
      );
    }
  }
  let pipeline = sharp(path, { limitInputPixels: false, failOn: 'error' });
  if (region !== undefined) pipeline = pipeline.extract({ left: region.x, top: region.y, width: region.width, height: region.height });
  if (info.channels === 2 || info.channels === 4) pipeline = pipeline.removeAlpha();
  pipeline = pipeline.toColourspace(info.bitDepth === 16 ? 'grey16' : 'b-w');
  let output: { data: Buffer; info: sharp.OutputInfo };
  try {
    output = await pipeline.raw(info.bitDepth === 16 ? { depth: 'ushort' } : {}).toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw decodeError(path, err);
  }
  const { data } = output;
  const width = output.info.width;
  const height = output.info.height;
  if (output.info.channels !== 1 || data.byteLength !== width * height * (info.bitDepth / 8)) {
    throw new DataError(path, `decoded to ${output.info.channels} channels, ${data.byteLength} bytes`, `one grey channel of ${width}x${height}`);
  }
  if (info.bitDepth === 8) return { width, height, bitDepth: 8, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  const words = data.byteOffset % 2 === 0 ? new Uint16Array(data.buffer, data.byteOffset, data.byteLength / 2) : new Uint16Array(Uint8Array.from(data).buffer);
  return { width, height, bitDepth: 16, data: words };
}

export interface WriteImageOptions {
  /** PNG zlib level 0..9 (default 6); lower is faster and larger. */
  readonly compressionLevel?: number;
}

/**
 * Writes an 8- or 16-bit grey image as PNG (`.png`) or LZW TIFF (`.tif`, `.tiff`), atomically.
 * The bit depth follows the data: Uint8Array -> 8-bit, Uint16Array -> 16-bit.
 */
export async function writeImage(path: string, image: GreyImage, options: WriteImageOptions = {}): Promise<void> {
  const ext = extname(path).toLowerCase();
  if (ext !== '.png' && ext !== '.tif' && ext !== '.tiff') {
    throw new DataError(path, `cannot write images with extension "${ext}"`, 'a path ending in .png, .tif or .tiff');
  }
  const { width, height, data } = image;
  if (data.length !== width * height) {
    throw new DataError(path, `image data has ${data.length} values for ${width}x${height}`, `${width * height} values`);
  }
  const sixteen = data instanceof Uint16Array;
  let pipeline = sharp(data, { raw: { width, height, channels: 1 }, limitInputPixels: false }).toColourspace(sixteen ? 'grey16' : 'b-w');
  pipeline = ext === '.png' ? pipeline.png({ compressionLevel: options.compressionLevel ?? 6 }) : pipeline.tiff({ compression: 'lzw' });
  await withTemporaryFile(path, (tmp) => pipeline.toFile(tmp));
}
