/**
 * `predict`: whole images (any size, e.g. 9958 x 9959) -> a 16-bit probability map and the binary
 * U-RISC submission, both written atomically:
 *
 *   <out>/<stem>.png               submission: membrane black 0, background white 255 (8-bit)
 *   <out>/probability/<stem>.png   membrane probability * 65535 (16-bit PNG, or .tif)
 *
 * so `<out>` can be handed to `score` (or the competition) as it is. A multi-class model writes its
 * class map instead (each pixel the label value of its most probable class, as its masks draw it)
 * and the probability of any foreground class (1 - p(background)).
 *
 * Before any pixel is predicted: the output folder must not hold an input (realpaths compared) and
 * must be writable (created, probe file written and removed), and every input's header must read.
 */
import { mkdir, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { DataError, fileStem, listImageFiles, readImage, readImageInfo, writeImage, type GreyImage, type ImageInfo } from '@emseg/data';
import { argmaxClasses, predictImage, PredictionStopped, tileCount, toProbability16, type InferenceOptions, type Segmenter } from '@emseg/segmentation';
import { membraneFraction, submissionProblem, toSubmission } from './tasks/urisc.js';

export interface PredictOptions {
  /** Image files and/or folders of images. */
  inputs: readonly string[];
  outDir: string;
  inference: InferenceOptions;
  /** Membrane (foreground) where p >= threshold in the submission. */
  threshold: number;
  /**
   * The binary output: 'urisc' (default) a U-RISC submission, membrane black 0 on white 255, checked
   * against the competition's rules; 'mask' a plain mask, foreground white 255 on black 0.
   */
  format?: 'urisc' | 'mask';
  /** Probability map format, or 'none' to write only the submission. */
  probability: 'png' | 'tiff' | 'none';
  /** Progress: tiles done of this image's total. */
  onTiles?: (image: string, done: number, total: number) => void;
  /** After each image. */
  onImage?: (result: PredictedImage) => void;
  /**
   * An image that failed (unreadable pixels, a failed write...): with this callback the error is
   * reported here and the next image predicted; without it the error is thrown.
   */
  onFailed?: (input: string, error: Error) => void;
  /** Checked between tile batches and images: when it turns true, the current image is dropped and predictFiles returns. */
  stop?: { readonly requested: boolean };
}

export interface PredictedImage {
  name: string;
  input: string;
  width: number;
  height: number;
  submission: string;
  probability: string | null;
  /** Fraction of pixels drawn as membrane (foreground) in the submission. */
  membraneFraction: number;
  /** Why the official scorer would reject the submission (format 'urisc'), or null. */
  problem: string | null;
  seconds: number;
}

/** The image files named by `inputs` (files as they are, folders listed), checked for unique stems. */
export async function listInputs(inputs: readonly string[]): Promise<string[]> {
  const files: string[] = [];
  for (const input of inputs) {
    const path = resolve(input);
    let kind;
    try {
      kind = await stat(path);
    } catch {
      throw new DataError(path, 'does not exist', 'an image file or a folder of images to predict');
    }
    if (kind.isDirectory()) {
      const names = await listImageFiles(path, { nonImage: 'skip' });
      if (names.length === 0) throw new DataError(path, 'holds no PNG/TIFF/JPEG images', 'a folder of images to predict');
      files.push(...names.map((n) => join(path, n)));
    } else files.push(path);
  }
  const seen = new Map<string, string>();
  for (const f of files) {
    const stem = fileStem(f);
    const other = seen.get(stem);
    if (other !== undefined)
      throw new DataError(f, `has the same name stem "${stem}" as ${other}, so their outputs would overwrite each other`, 'inputs with distinct names');
    seen.set(stem, f);
  }
  return files;
}

/**
 * The realpath of `path`, or of its nearest existing ancestor joined with the rest for a path not
 * created yet (as it is when a parent is a file: then it cannot hold anything).
 */
async function realpathOfNew(path: string): Promise<string> {
  try {
    return await realpath(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const parent = dirname(path);
    if (code === 'ENOTDIR' || parent === path) return path;
    if (code !== 'ENOENT') throw err;
    return join(await realpathOfNew(parent), basename(path));
  }
}

/** Is `path` the folder itself or anything under it? */
const within = (folder: string, path: string) => {
  const rel = relative(folder, path);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
};

/**
 * Refuses an output folder that holds any input (directly or in a subfolder, such as
 * `probability/`; realpaths, so symlinks and `..` are seen through): predicting there could write
 * a mask over an input image. Nothing is created.
 */
export async function checkOutputOutsideInputs(outDir: string, inputs: readonly string[]): Promise<void> {
  const out = await realpathOfNew(resolve(outDir));
  for (const input of inputs) {
    const real = await realpath(input);
    if (within(out, real)) {
      const shown = real === input ? input : `${input} (${real})`;
      throw new DataError(
        outDir,
        `output folder holds the input image ${shown}, which predicting could overwrite`,
        `an --out folder that holds none of the inputs (e.g. a new folder beside them)`,
      );
    }
  }
}

function writeProblem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') return `is not writable (${code === 'EROFS' ? 'read-only file system' : 'permission denied'})`;
  if (code === 'ENOTDIR' || code === 'EEXIST') return 'cannot be created: it or one of its parents is a file, not a folder';
  if (code === 'ENOSPC') return 'cannot be written: no space left on the device';
  return `cannot be written (${code ?? (err as Error).message})`;
}

/**
 * Creates `dir` and proves it writable by writing and removing a probe file, so a bad --out fails
 * before hours of prediction instead of after them.
 */
export async function checkWritableFolder(dir: string): Promise<void> {
  const probe = join(dir, `.emseg-write-probe-${process.pid}`);
  try {
    await mkdir(dir, { recursive: true });
    await writeFile(probe, '');
    await rm(probe);
  } catch (err) {
    throw new DataError(dir, writeProblem(err), 'a folder that can be created and written (--out)');
  }
}

/**
 * The header (size, depth) of every input, read before anything is predicted. Every unreadable
 * file is named in one error, not just the first.
 */
export async function readInputHeaders(files: readonly string[]): Promise<ImageInfo[]> {
  const infos: ImageInfo[] = [];
  const problems: string[] = [];
  for (const file of files) {
    try {
      infos.push(await readImageInfo(file));
    } catch (err) {
      if (!(err instanceof DataError)) throw err;
      problems.push(err.message);
    }
  }
  if (problems.length > 0)
    throw new Error(`${problems.length} of ${files.length} input image(s) cannot be read, so nothing was predicted:\n  ${problems.join('\n  ')}`);
  return infos;
}

/**
 * Predicts every input image, one at a time (memory is bounded by the largest image).
 *
 * @example await predictFiles(seg, { inputs: ['data/imgs/Track1/test'], outDir: 'out', inference, threshold: 0.5, probability: 'png' });
 */
export async function predictFiles(segmenter: Segmenter, options: PredictOptions): Promise<PredictedImage[]> {
  const files = await listInputs(options.inputs);
  const results: PredictedImage[] = [];
  for (const input of files) {
    if (options.stop?.requested) break;
    try {
      const result = await predictFile(segmenter, input, options);
      results.push(result);
      options.onImage?.(result);
    } catch (err) {
      if (err instanceof PredictionStopped) break;
      if (!options.onFailed) throw err;
      options.onFailed(input, err as Error);
    }
  }
  return results;
}

/** One image: probability map and submission, or neither (a written map is removed if the submission fails). */
async function predictFile(segmenter: Segmenter, input: string, options: PredictOptions): Promise<PredictedImage> {
  const t0 = performance.now();
  const image = await readImage(input);
  const name = fileStem(input);
  const total = tileCount(image.width, image.height, options.inference);
  const probability = await predictImage(segmenter, image, options.inference, input, (done) => options.onTiles?.(input, done, total), options.stop);
  const { width, height } = image;
  const classMap = segmenter.classMap;
  const urisc = classMap === null && (options.format ?? 'urisc') === 'urisc';
  let submission: GreyImage & { data: Uint8Array };
  let foreground: number;
  let map = probability;
  if (classMap !== null) {
    const classes = argmaxClasses(probability, classMap.length);
    const values = classMap.map((c) => c.value);
    submission = { width, height, bitDepth: 8, data: Uint8Array.from(classes, (c) => values[c]) };
    foreground = classes.reduce((n, c) => n + (c === 0 ? 0 : 1), 0) / Math.max(1, classes.length);
    map = new Float32Array(width * height);
    for (let i = 0; i < map.length; i++) map[i] = 1 - probability[i * classMap.length];
  } else {
    submission = toSubmission(probability, width, height, options.threshold);
    foreground = membraneFraction(submission);
    if (!urisc) for (let i = 0; i < submission.data.length; i++) submission.data[i] = 255 - submission.data[i];
  }
  const submissionFile = join(options.outDir, `${name}.png`);
  let probabilityFile: string | null = null;
  if (options.probability !== 'none') {
    probabilityFile = join(options.outDir, 'probability', `${name}.${options.probability === 'tiff' ? 'tif' : 'png'}`);
    await writeImage(probabilityFile, toProbability16(map, width, height), { compressionLevel: 3 });
  }
  try {
    await writeImage(submissionFile, submission);
  } catch (err) {
    if (probabilityFile) await rm(probabilityFile, { force: true });
    throw err;
  }
  return {
    name,
    input,
    width,
    height,
    submission: submissionFile,
    probability: probabilityFile,
    membraneFraction: foreground,
    problem: urisc ? submissionProblem(submission, submissionFile) : null,
    seconds: (performance.now() - t0) / 1000,
  };
}
