/**
 * `score`: the official U-RISC F1 (libs/evaluation) of a folder of submissions against a folder of
 * labels, pairing files by name (`0.png` <-> `0.tiff`); per-image scores as a table, JSON and CSV.
 */
import { uriscFolderScore, type UriscFolderScore } from '@emseg/evaluation';

export type { UriscFolderScore } from '@emseg/evaluation';

/** Scores every prediction in `predictionDir` against its label in `labelDir` (mean of per-image F1). */
export function scoreFolder(predictionDir: string, labelDir: string, options: { ignoreUnpairedLabels?: boolean } = {}): Promise<UriscFolderScore> {
  return uriscFolderScore(predictionDir, labelDir, { ignoreUnpairedGroundTruth: options.ignoreUnpairedLabels ?? false });
}

const COLUMNS = ['name', 'f1', 'precision', 'recall', 'predictedMembranePixels', 'predictedBackgroundPixels', 'prediction', 'groundTruth'] as const;

const csvField = (v: string | number) => {
  const s = String(v);
  return /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
};

/** Per-image scores as CSV (header + one row per image + a `mean` row). */
export function scoresCsv(score: UriscFolderScore): string {
  const rows = score.images.map((r) => COLUMNS.map((c) => csvField(r[c])).join(','));
  const mean = (key: 'precision' | 'recall') => score.images.reduce((s, r) => s + r[key], 0) / Math.max(1, score.images.length);
  rows.push(['mean', score.meanF1, mean('precision'), mean('recall'), '', '', '', ''].map(csvField).join(','));
  return `${COLUMNS.join(',')}\n${rows.join('\n')}\n`;
}

/** Per-image scores as JSON (mean F1 first). */
export function scoresJson(score: UriscFolderScore): string {
  return `${JSON.stringify({ protocol: 'urisc', meanF1: score.meanF1, images: score.images }, null, 2)}\n`;
}

/** A plain-text table for the terminal. */
export function scoresTable(score: UriscFolderScore): string {
  const width = Math.max(5, ...score.images.map((r) => r.name.length));
  const line = (name: string, f1: string, p: string, r: string) => `${name.padEnd(width)}  ${f1.padStart(7)}  ${p.padStart(9)}  ${r.padStart(7)}`;
  const f = (v: number) => v.toFixed(4);
  return [
    line('image', 'F1', 'precision', 'recall'),
    ...score.images.map((r) => line(r.name, f(r.f1), f(r.precision), f(r.recall))),
    line('mean', f(score.meanF1), '', ''),
  ].join('\n');
}
