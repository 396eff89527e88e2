/**
 * Decode an image file to 8-bit grey the way the U-RISC competition script does
 * (`cv2.imread(path, 0)`), using sharp (libvips) for the decoding itself:
 * - grey: as is; 16-bit grey keeps the high byte (`v >> 8`, libpng's `png_set_strip_16`);
 * - an alpha channel is dropped, not composited;
 * - colour (RGB, palette) is reduced to luma with ITU-R BT.601 weights in the fixed point OpenCV
 *   uses: for PNG, libpng's `png_set_rgb_to_gray(0.299, 0.587)` (`(9797 R + 19234 G + 3737 B) >> 15`),
 *   for other formats OpenCV's own conversion (`(4899 R + 9617 G + 1868 B + 2^13) >> 14`).
 * The fixture tests compare this against OpenCV on grey, grey+alpha, 16-bit, palette and RGB files.
 */
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { EvaluationInputError, type GreyImage } from './image.js';

/**
 * libpng's rgb_to_gray as OpenCV calls it (`png_set_rgb_to_gray(png, 1, 0.299, 0.587)`): the
 * coefficients truncated to 15-bit fixed point (9797, 19234, and 3737 for blue) and the sum
 * truncated, verified against OpenCV 4.13 on every pixel of a random 256 x 256 image.
 */
function pngLuma(r: number, g: number, b: number): number {
  return (9797 * r + 19234 * g + 3737 * b) >> 15;
}

/** OpenCV's own BGR2GRAY for 8-bit data (14-bit fixed point, rounded): its TIFF and other decoders. */
function opencvLuma(r: number, g: number, b: number): number {
  return (4899 * r + 9617 * g + 1868 * b + 8192) >> 14;
}

/**
 * Read `path` as an 8-bit grey image. Throws {@link EvaluationInputError} naming the file when it
 * is missing or cannot be decoded.
 * @example const { width, height, data } = await readGrey8('pred/0001.png');
 */
export async function readGrey8(path: string): Promise<GreyImage> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'file not found' : code === 'EISDIR' ? 'is a directory' : String(err);
    throw new EvaluationInputError(`cannot read image ${path}: ${why}`, path);
  }
  try {
    return await decodeGrey8(bytes);
  } catch (err) {
    throw new EvaluationInputError(`cannot decode image ${path}: ${(err as Error).message}`, path);
  }
}

/** Decode an in-memory PNG/TIFF/... to 8-bit grey; see {@link readGrey8}. */
export async function decodeGrey8(bytes: Buffer): Promise<GreyImage> {
  const input = sharp(bytes, { limitInputPixels: false, failOn: 'error' });
  const meta = await input.metadata();
  // The competition script reads one 2D image per file; a stack would be scored by its first page.
  if ((meta.pages ?? 1) > 1)
    throw new Error(
      `it is a multi-page ${String(meta.format).toUpperCase()} stack (${meta.pages} pages); expected one 2D image per file: split the stack into one file per slice`,
    );
  // 8-bit raw output; libvips reduces 16-bit samples by keeping the high byte (v >> 8), like
  // libpng's strip_16, and may expand grey to three equal channels when it does.
  const { data, info } = await input.raw().toBuffer({ resolveWithObject: true });
  const { width, height, channels } = info;
  const n = width * height;
  const out = new Uint8Array(n);
  if ((meta.channels ?? channels) <= 2) {
    for (let i = 0; i < n; i++) out[i] = data[i * channels];
  } else {
    const luma = meta.format === 'png' ? pngLuma : opencvLuma;
    for (let i = 0; i < n; i++) {
      const o = i * channels;
      out[i] = luma(data[o], data[o + 1], data[o + 2]);
    }
  }
  return { width, height, data: out };
}
