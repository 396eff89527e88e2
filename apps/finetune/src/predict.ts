/**
 * `predict`: whole images (any size, e.g. 9958 x 9959) -> a 16-bit probability map and the binary
 * U-RISC submission, both written atomically:
 *
 *   <out>/<stem>.png               submission: membrane black 0, background white 255 (8-bit)
 *   <out>/probability/<stem>.png   membrane probability * 65535 (16-bit PNG, or .tif)
 *
 * so `<out>` can be handed to `score` (or the competition) as it is.
 */
import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { DataError, fileStem, listImageFiles, readImage, writeImage } from '@emseg/data';
import { membraneFraction, predictImage, submissionProblem, tileCount, toProbability16, toSubmission, type InferenceOptions } from './inference.js';
import type { Segmenter } from './segmenter.js';

export interface PredictOptions {
  /** Image files and/or folders of images. */
  inputs: readonly string[];
  outDir: string;
  inference: InferenceOptions;
  /** Membrane where p >= threshold in the submission. */
  threshold: number;
  /** Probability map format, or 'none' to write only the submission. */
  probability: 'png' | 'tiff' | 'none';
  /** Progress: tiles done of this image's total. */
  onTiles?: (image: string, done: number, total: number) => void;
  /** After each image. */
  onImage?: (result: PredictedImage) => void;
}

export interface PredictedImage {
  name: string;
  input: string;
  width: number;
  height: number;
  submission: string;
  probability: string | null;
  /** Fraction of pixels drawn as membrane in the submission. */
  membraneFraction: number;
  /** Why the official scorer would reject the submission, or null. */
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
    if (other !== undefined) throw new DataError(f, `has the same name stem "${stem}" as ${other}, so their outputs would overwrite each other`, 'inputs with distinct names');
    seen.set(stem, f);
  }
  return files;
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
    const t0 = performance.now();
    const image = await readImage(input);
    const name = fileStem(input);
    const total = tileCount(image.width, image.height, options.inference);
    const probability = await predictImage(segmenter, image, options.inference, input, (done) => options.onTiles?.(input, done, total));
    const { width, height } = image;
    let probabilityFile: string | null = null;
    if (options.probability !== 'none') {
      probabilityFile = join(options.outDir, 'probability', `${name}.${options.probability === 'tiff' ? 'tif' : 'png'}`);
      await writeImage(probabilityFile, toProbability16(probability, width, height), { compressionLevel: 3 });
    }
    const submission = toSubmission(probability, width, height, options.threshold);
    const submissionFile = join(options.outDir, `${name}.png`);
    await writeImage(submissionFile, submission);
    const result: PredictedImage = {
      name,
      input,
      width,
      height,
      submission: submissionFile,
      probability: probabilityFile,
      membraneFraction: membraneFraction(submission),
      problem: submissionProblem(submission, submissionFile),
      seconds: (performance.now() - t0) / 1000,
    };
    results.push(result);
    options.onImage?.(result);
  }
  return results;
}
