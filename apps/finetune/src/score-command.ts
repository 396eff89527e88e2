/**
 * The `score` command: the official U-RISC F1 of a folder of submissions, as a table, JSON and CSV.
 * A rejected prediction scores 0 with a warning; when every one is rejected the command exits 1.
 */
import { resolve } from 'node:path';
import { EXIT } from '@emseg/config';
import { ensureDefaultData, writeFileAtomic } from '@emseg/data';
import { rejectionReport } from '@emseg/evaluation';
import { scoreFolder, scoresCsv, scoresJson, scoresTable } from './score.js';

export interface ScoreArgs {
  pred: string;
  labels?: string;
  json?: string;
  csv?: string;
  ignoreUnpaired: boolean;
}

export async function score(args: ScoreArgs): Promise<number> {
  let labels = args.labels;
  if (!labels) {
    labels = (await ensureDefaultData()).urisc.splits.test.labels;
    process.stderr.write(`labels: the embedded synthetic test labels in ${labels}\n`);
  }
  const result = await scoreFolder(resolve(args.pred), resolve(labels), { ignoreUnpairedLabels: args.ignoreUnpaired });
  process.stdout.write(`${scoresTable(result)}\n\nofficial U-RISC F1 (mean over ${result.images.length} images): ${result.meanF1.toFixed(4)}\n`);
  if (args.json) await writeFileAtomic(resolve(args.json), scoresJson(result));
  if (args.csv) await writeFileAtomic(resolve(args.csv), scoresCsv(result));
  const { warnings, error } = rejectionReport(result.images);
  for (const w of warnings) process.stderr.write(`${w}\n`);
  if (!error) return EXIT.ok;
  process.stderr.write(`error: ${error}\n`);
  return EXIT.failed;
}
