/**
 * The `score` command: the official U-RISC F1 of a folder of submissions, as a table, JSON and CSV.
 */
import { resolve } from 'node:path';
import { ensureDefaultData } from '@emseg/data';
import { scoreFolder, scoresCsv, scoresJson, scoresTable } from './score.js';
import { writeTextAtomic } from './workspace.js';

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
  if (args.json) writeTextAtomic(resolve(args.json), scoresJson(result));
  if (args.csv) writeTextAtomic(resolve(args.csv), scoresCsv(result));
  return 0;
}
