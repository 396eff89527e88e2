#!/usr/bin/env node
/**
 * emseg-eval: score segmentations from the command line.
 *
 *   node libs/evaluation/dist/cli.js --pred DIR --gt DIR --protocol urisc --metrics f1,vrand,vinfo,assd --json out.json
 *   node libs/evaluation/dist/cli.js classes --pred DIR --gt DIR [--classes 0,128,255] [--ignore 255] --json out.json
 *   node libs/evaluation/dist/cli.js definition --images DIR
 *
 * Exit codes (EXIT of @emseg/config): 0 scored, 1 bad input (the message names the file) or no
 * prediction scorable (every one rejected by the U-RISC rules), 2 usage error. A rejected prediction
 * scores 0 with a warning; the others are still scored.
 */
import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { EXIT, EXIT_CODES_HELP } from '@emseg/config';
import { writeJsonAtomic } from '@emseg/fs';
import { definitionCriteria, type DefinitionCriteria } from './definition.js';
import { EvaluationInputError } from './image.js';
import { IMAGE_EXTENSIONS } from './pairing.js';
import { readGrey8 } from './read-grey.js';
import { cell, definitionTable, renderTable, scoreTable } from './report.js';
import { scoreClassFiles } from './class-folder.js';
import { METRICS, type MetricName, PROTOCOLS, type Protocol, scoreFiles } from './score-files.js';
import { rejectionReport } from './urisc-folder.js';

function parseMetrics(value: string): MetricName[] {
  const names = value
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s.length > 0);
  for (const n of names) {
    if (!(METRICS as readonly string[]).includes(n)) {
      throw new EvaluationInputError(`--metrics: unknown metric "${n}"; choose from ${METRICS.join(', ')}`);
    }
  }
  if (names.length === 0) throw new EvaluationInputError(`--metrics is empty; choose from ${METRICS.join(', ')}`);
  return names as MetricName[];
}

async function imagesIn(path: string): Promise<string[]> {
  let info;
  try {
    info = await stat(path);
  } catch {
    throw new EvaluationInputError(`--images: ${path} does not exist`, path);
  }
  if (!info.isDirectory()) return [path];
  const names = (await readdir(path)).filter((n) => (IMAGE_EXTENSIONS as readonly string[]).some((e) => n.toLowerCase().endsWith(e))).sort();
  if (names.length === 0) throw new EvaluationInputError(`--images: no ${IMAGE_EXTENSIONS.join(', ')} files in ${path}`, path);
  return names.map((n) => join(path, n));
}

async function main(argv: string[]): Promise<void> {
  await yargs(argv)
    .scriptName('emseg-eval')
    .usage('Score EM membrane segmentations against ground truth.')
    .command(
      ['score', '$0'],
      'score predictions against ground truth (folders paired by file name, or two files)',
      (y) =>
        y
          .option('pred', {
            type: 'string',
            demandOption: true,
            describe: 'prediction folder or file (8-bit grey PNG/TIFF, membrane black 0 on white 255)',
          })
          .option('gt', { type: 'string', demandOption: true, describe: 'ground-truth folder or file (same convention)' })
          .option('protocol', {
            choices: PROTOCOLS,
            default: 'urisc' as Protocol,
            describe:
              'urisc: official U-RISC F1 (strictly binary predictions, >= 5x background, value-weighted sums); ' +
              'pixel: plain pixel scores of masks thresholded at mid-grey',
          })
          .option('metrics', {
            type: 'string',
            default: 'f1',
            describe: `comma-separated, from: ${METRICS.join(', ')}`,
          })
          .option('json', { type: 'string', describe: 'also write all results (per image, summary, ISBI curves) to this JSON file' })
          .option('pixel-size', { type: 'number', default: 2.18, describe: 'nm per pixel, for ASSD in nm (U-RISC: 2.18)' })
          .option('ignore-unpaired-gt', {
            type: 'boolean',
            default: false,
            describe: 'skip ground truths without a prediction (the competition script does) instead of failing',
          })
          .option('quiet', { type: 'boolean', default: false, describe: 'no progress lines on stderr' })
          .example('$0 --pred out/pred --gt data/label --metrics f1,vrand,vinfo,assd --json scores.json', 'U-RISC folder score')
          .example('$0 --pred p.png --gt g.tiff --protocol pixel --metrics f1,assd', 'one pair, pixel protocol'),
      async (args) => {
        const result = await scoreFiles(args.pred, args.gt, {
          protocol: args.protocol as Protocol,
          metrics: parseMetrics(args.metrics),
          pixelSizeNm: args['pixel-size'],
          ignoreUnpairedGroundTruth: args['ignore-unpaired-gt'],
          onImage: (r, k, total) => {
            if (!args.quiet) process.stderr.write(`[${k + 1}/${total}] ${r.name}\n`);
          },
        });
        process.stdout.write(`${scoreTable(result)}\n`);
        if (args.json) {
          await writeJsonAtomic(args.json, {
            prediction: args.pred,
            groundTruth: args.gt,
            ...result,
          });
          process.stdout.write(`wrote ${args.json}\n`);
        }
        const { warnings, error } = rejectionReport(result.images);
        for (const w of warnings) process.stderr.write(`${w}\n`);
        if (error) {
          process.stderr.write(`error: ${error}\n`);
          process.exitCode = EXIT.failed;
        }
      },
    )
    .command(
      'classes',
      'multi-class scores of class maps (pixel value = class): per-class IoU, Dice, precision, recall, per image and pooled',
      (y) =>
        y
          .option('pred', { type: 'string', demandOption: true, describe: 'predicted class maps: a folder or a file (8-bit, pixel value = class)' })
          .option('gt', { type: 'string', demandOption: true, describe: 'true class maps, paired by file name (same convention)' })
          .option('classes', { type: 'string', describe: 'comma-separated class values to score, in this order (default: every value found)' })
          .option('ignore', { type: 'number', describe: 'a true value that is not scored (e.g. an unlabelled region)' })
          .option('json', { type: 'string', describe: 'also write the per-image and pooled scores to this JSON file' })
          .option('ignore-unpaired-gt', { type: 'boolean', default: false, describe: 'skip ground truths without a prediction instead of failing' })
          .option('quiet', { type: 'boolean', default: false, describe: 'no progress lines on stderr' })
          .example('$0 classes --pred out/pred --gt data/test/masks --classes 0,128,255', 'three classes, background 0'),
      async (args) => {
        const classes = args.classes?.split(',').map((v) => {
          const n = Number(v.trim());
          if (!Number.isInteger(n) || n < 0 || n > 255) throw new EvaluationInputError(`--classes: "${v}" is not a class value (an integer 0..255)`);
          return n;
        });
        const result = await scoreClassFiles(args.pred, args.gt, {
          classes,
          ignoreValue: args.ignore,
          ignoreUnpairedGroundTruth: args['ignore-unpaired-gt'],
          onImage: (r, k, total) => {
            if (!args.quiet) process.stderr.write(`[${k + 1}/${total}] ${r.name}\n`);
          },
        });
        const header = ['class', 'IoU', 'Dice', 'precision', 'recall', 'true px', 'predicted px'];
        const rows = result.pooled.perClass.map((c) => [
          String(c.classId),
          cell(c.iou),
          cell(c.dice),
          cell(c.precision),
          cell(c.recall),
          String(c.truePixels),
          String(c.predictedPixels),
        ]);
        const p = result.pooled;
        rows.push(['mean', cell(p.meanIoU), cell(p.meanDice), cell(p.meanPrecision), cell(p.meanRecall), '', '']);
        process.stdout.write(
          `${renderTable(header, rows)}\n\n${result.images.length} image(s), pixels pooled; mean over the classes present (scikit-learn macro); pixel accuracy ${cell(p.pixelAccuracy)}\n`,
        );
        if (args.json) {
          await writeJsonAtomic(args.json, { prediction: args.pred, groundTruth: args.gt, ...result });
          process.stdout.write(`wrote ${args.json}\n`);
        }
      },
    )
    .command(
      'definition',
      'image definition criteria (Brenner, SMD2, Variance, Vollath) of grey images',
      (y) =>
        y
          .option('images', { type: 'string', demandOption: true, describe: 'image folder or file' })
          .option('json', { type: 'string', describe: 'also write the criteria to this JSON file' }),
      async (args) => {
        const rows: { name: string; path: string; criteria: DefinitionCriteria }[] = [];
        for (const path of await imagesIn(args.images)) {
          rows.push({ name: basename(path), path, criteria: definitionCriteria(await readGrey8(path)) });
        }
        process.stdout.write(`${definitionTable(rows)}\n`);
        if (args.json) {
          await writeJsonAtomic(args.json, { images: rows });
          process.stdout.write(`wrote ${args.json}\n`);
        }
      },
    )
    .strict()
    .help()
    .alias('h', 'help')
    .epilogue(EXIT_CODES_HELP)
    .wrap(Math.min(110, process.stdout.columns ?? 110))
    .fail((msg, err, y) => {
      if (err) throw err;
      process.stderr.write(`${y.help()}\n\n${msg}\n`);
      process.exit(EXIT.usage);
    })
    .parseAsync();
}

main(hideBin(process.argv)).catch((err: unknown) => {
  if (err instanceof EvaluationInputError) {
    process.stderr.write(`error: ${err.message}\n`);
    process.exit(EXIT.failed);
  }
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(EXIT.failed);
});
