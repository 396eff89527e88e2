/**
 * `score`: the official U-RISC F1 (libs/evaluation) of a folder of submissions against a folder of
 * labels, pairing files by name (`0.png` <-> `0.tiff`); per-image scores as a table, JSON and CSV.
 *
 * A prediction the competition would reject (not binary, or background < 5x membrane) does not
 * stop the folder: it scores F1 = precision = recall = 0 and carries the reason in `rejected`,
 * so the mean is what the leaderboard would show for such a submission set (the rule lives in
 * @emseg/evaluation, shared with its CLI).
 */
import { uriscFolderScore, type UriscFolderScore, type UriscImageScore } from '@emseg/evaluation';

export type ImageScore = UriscImageScore;
export type FolderScore = UriscFolderScore;

/**
 * Scores every prediction in `predictionDir` against its label in `labelDir`, one pair at a time
 * (`uriscFolderScore` of @emseg/evaluation: rejected predictions score 0 and are flagged).
 *
 * @example const { meanF1, images } = await scoreFolder('out/test', 'urisc/label/Track1/test');
 */
export function scoreFolder(predictionDir: string, labelDir: string, options: { ignoreUnpairedLabels?: boolean } = {}): Promise<FolderScore> {
  return uriscFolderScore(predictionDir, labelDir, { ignoreUnpairedGroundTruth: options.ignoreUnpairedLabels ?? false });
}

const COLUMNS = ['name', 'f1', 'precision', 'recall', 'predictedMembranePixels', 'predictedBackgroundPixels', 'prediction', 'groundTruth', 'rejected'] as const;

const csvField = (v: string | number | null) => {
  const s = v === null ? '' : String(v);
  return /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
};

/** Per-image scores as CSV (header + one row per image + a `mean` row). */
export function scoresCsv(score: FolderScore): string {
  const rows = score.images.map((r) => COLUMNS.map((c) => csvField(r[c])).join(','));
  rows.push(
    ['mean', score.meanF1, score.meanPrecision, score.meanRecall, '', '', '', '', score.rejected ? `${score.rejected} rejected (counted as 0)` : '']
      .map(csvField)
      .join(','),
  );
  return `${COLUMNS.join(',')}\n${rows.join('\n')}\n`;
}

/** Per-image scores as JSON (means first). */
export function scoresJson(score: FolderScore): string {
  return `${JSON.stringify({ protocol: 'urisc', ...score }, null, 2)}\n`;
}

/** A plain-text table for the terminal; rejected predictions are marked. */
export function scoresTable(score: FolderScore): string {
  const width = Math.max(5, ...score.images.map((r) => r.name.length));
  const line = (name: string, f1: string, p: string, r: string, note = '') =>
    `${name.padEnd(width)}  ${f1.padStart(7)}  ${p.padStart(9)}  ${r.padStart(7)}${note}`;
  const f = (v: number) => v.toFixed(4);
  return [
    line('image', 'F1', 'precision', 'recall'),
    ...score.images.map((r) => line(r.name, f(r.f1), f(r.precision), f(r.recall), r.rejected ? '  REJECTED (see below)' : '')),
    line('mean', f(score.meanF1), f(score.meanPrecision), f(score.meanRecall), score.rejected ? `  (${score.rejected} rejected, counted as 0)` : ''),
    ...score.images.filter((r) => r.rejected).map((r) => `rejected: ${r.rejected}`),
  ].join('\n');
}
