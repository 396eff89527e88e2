/**
 * `score`: the official U-RISC F1 (libs/evaluation) of a folder of submissions against a folder of
 * labels, pairing files by name (`0.png` <-> `0.tiff`); per-image scores as a table, JSON and CSV.
 *
 * A prediction the competition would reject (not binary, or background < 5x membrane) does not
 * stop the folder: it scores F1 = precision = recall = 0 and carries the reason in `rejected`,
 * so the mean is what the leaderboard would show for such a submission set.
 */
import { pairImageFolders, uriscFileScore, UriscFormatError, type UriscImageScore } from '@emseg/evaluation';

export interface ImageScore extends UriscImageScore {
  /** Why the official scorer rejects this prediction, or null. */
  rejected: string | null;
}

export interface FolderScore {
  /** Mean of the per-image F1 values (the U-RISC folder score). */
  meanF1: number;
  meanPrecision: number;
  meanRecall: number;
  images: ImageScore[];
}

const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);

/**
 * Scores every prediction in `predictionDir` against its label in `labelDir`, one pair at a time.
 *
 * @example const { meanF1, images } = await scoreFolder('out/test', 'urisc/label/Track1/test');
 */
export async function scoreFolder(predictionDir: string, labelDir: string, options: { ignoreUnpairedLabels?: boolean } = {}): Promise<FolderScore> {
  const pairs = await pairImageFolders(predictionDir, labelDir, { ignoreUnpairedGroundTruth: options.ignoreUnpairedLabels ?? false });
  const images: ImageScore[] = [];
  for (const pair of pairs) {
    try {
      images.push({ ...(await uriscFileScore(pair)), rejected: null });
    } catch (err) {
      if (!(err instanceof UriscFormatError)) throw err;
      images.push({ name: pair.name, prediction: pair.prediction, groundTruth: pair.groundTruth, f1: 0, precision: 0, recall: 0, predictedMembranePixels: 0, predictedBackgroundPixels: 0, rejected: err.message });
    }
  }
  return { meanF1: mean(images.map((r) => r.f1)), meanPrecision: mean(images.map((r) => r.precision)), meanRecall: mean(images.map((r) => r.recall)), images };
}

const COLUMNS = ['name', 'f1', 'precision', 'recall', 'predictedMembranePixels', 'predictedBackgroundPixels', 'prediction', 'groundTruth', 'rejected'] as const;

const csvField = (v: string | number | null) => {
  const s = v === null ? '' : String(v);
  return /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
};

/** Per-image scores as CSV (header + one row per image + a `mean` row). */
export function scoresCsv(score: FolderScore): string {
  const rows = score.images.map((r) => COLUMNS.map((c) => csvField(r[c])).join(','));
  rows.push(['mean', score.meanF1, score.meanPrecision, score.meanRecall, '', '', '', '', ''].map(csvField).join(','));
  return `${COLUMNS.join(',')}\n${rows.join('\n')}\n`;
}

/** Per-image scores as JSON (means first). */
export function scoresJson(score: FolderScore): string {
  return `${JSON.stringify({ protocol: 'urisc', ...score }, null, 2)}\n`;
}

/** A plain-text table for the terminal; rejected predictions are marked. */
export function scoresTable(score: FolderScore): string {
  const width = Math.max(5, ...score.images.map((r) => r.name.length));
  const line = (name: string, f1: string, p: string, r: string, note = '') => `${name.padEnd(width)}  ${f1.padStart(7)}  ${p.padStart(9)}  ${r.padStart(7)}${note}`;
  const f = (v: number) => v.toFixed(4);
  return [
    line('image', 'F1', 'precision', 'recall'),
    ...score.images.map((r) => line(r.name, f(r.f1), f(r.precision), f(r.recall), r.rejected ? '  REJECTED (see below)' : '')),
    line('mean', f(score.meanF1), f(score.meanPrecision), f(score.meanRecall)),
    ...score.images.filter((r) => r.rejected).map((r) => `rejected: ${r.rejected}`),
  ].join('\n');
}
