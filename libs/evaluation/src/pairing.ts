/**
 * Pair prediction files with ground-truth files by name, as the U-RISC script does
 * (`gt = pred.replace(pred_dir, gt_dir)`), with two additions: TIFF predictions are accepted beside
 * PNG ones, and a ground truth may differ from its prediction in extension only (U-RISC labels are
 * TIFF, submissions PNG), e.g. `pred/0001.png` <-> `gt/0001.tiff`.
 */
import { readdir } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { EvaluationInputError } from './image.js';

/** Image extensions looked at in a folder (case-insensitive). */
export const IMAGE_EXTENSIONS = ['.png', '.tif', '.tiff'] as const;

/** One prediction and its ground truth. */
export interface ImagePair {
  /** The prediction's file name, e.g. `0001.png`. */
  name: string;
  prediction: string;
  groundTruth: string;
}

export interface PairingOptions {
  /**
   * The competition script ignores ground-truth files nobody predicted. By default that is an error
   * here (a missing prediction would silently raise the mean); set this to follow the script.
   */
  ignoreUnpairedGroundTruth?: boolean;
}

function isImage(name: string): boolean {
  return (IMAGE_EXTENSIONS as readonly string[]).includes(extname(name).toLowerCase());
}

function stem(name: string): string {
  return name.slice(0, name.length - extname(name).length);
}

async function listImages(dir: string, role: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such directory' : code === 'ENOTDIR' ? 'not a directory' : String(err);
    throw new EvaluationInputError(`cannot list ${role} folder ${dir}: ${why}`, dir);
  }
  return entries
    .filter((e) => (e.isFile() || e.isSymbolicLink()) && isImage(e.name))
    .map((e) => e.name)
    .sort();
}

/**
 * List the image pairs of two folders, sorted by prediction name. Throws naming the file when a
 * prediction has no ground truth (or several candidates), and, unless told otherwise, when a ground
 * truth has no prediction.
 */
export async function pairImageFolders(predictionDir: string, groundTruthDir: string, options: PairingOptions = {}): Promise<ImagePair[]> {
  const preds = await listImages(predictionDir, 'prediction');
  const gts = await listImages(groundTruthDir, 'ground-truth');
  if (preds.length === 0) {
    throw new EvaluationInputError(`no prediction images (${IMAGE_EXTENSIONS.join(', ')}) in ${predictionDir}`, predictionDir);
  }
  const gtByName = new Set(gts);
  const gtByStem = new Map<string, string[]>();
  for (const g of gts) gtByStem.set(stem(g), [...(gtByStem.get(stem(g)) ?? []), g]);

  const used = new Set<string>();
  const pairs: ImagePair[] = [];
  for (const p of preds) {
    let partner: string;
    if (gtByName.has(p)) {
      partner = p;
    } else {
      const candidates = gtByStem.get(stem(p)) ?? [];
      if (candidates.length === 0) {
        throw new EvaluationInputError(
          `missing ground truth for prediction ${join(predictionDir, p)}: expected ${join(groundTruthDir, p)} ` +
            `(or ${stem(p)} with another of ${IMAGE_EXTENSIONS.join(', ')})`,
          join(predictionDir, p),
        );
      }
      if (candidates.length > 1) {
        throw new EvaluationInputError(
          `ambiguous ground truth for prediction ${join(predictionDir, p)}: ${candidates
            .map((c) => join(groundTruthDir, c))
            .join(' and ')} both match; keep one`,
          join(predictionDir, p),
        );
      }
      partner = candidates[0];
    }
    if (used.has(partner)) {
      throw new EvaluationInputError(
        `ground truth ${join(groundTruthDir, partner)} matches more than one prediction (another is ${join(predictionDir, p)})`,
        join(groundTruthDir, partner),
      );
    }
    used.add(partner);
    pairs.push({ name: p, prediction: join(predictionDir, p), groundTruth: join(groundTruthDir, partner) });
  }
  if (!options.ignoreUnpairedGroundTruth) {
    const unpaired = gts.filter((g) => !used.has(g));
    if (unpaired.length > 0) {
      throw new EvaluationInputError(
        `missing prediction for ground truth ${join(groundTruthDir, unpaired[0])}` +
          (unpaired.length > 1 ? ` (and ${unpaired.length - 1} more)` : '') +
          `: expected ${join(predictionDir, stem(unpaired[0]))}.png`,
        join(groundTruthDir, unpaired[0]),
      );
    }
  }
  return pairs;
}
