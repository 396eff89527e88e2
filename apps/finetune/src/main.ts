#!/usr/bin/env node
/**
 * emseg finetune: U-Net fine-tuning for EM membrane segmentation (U-RISC), full-image prediction and
 * official scoring.
 *
 *   nx run finetune:urisc                                   quick config on the embedded synthetic data
 *   nx run finetune:urisc -c track2 --data DIR --encoder REF   the paper setup on real U-RISC data
 *   nx run finetune:predict -- IMAGES... --out DIR          probability maps + binary submissions
 *   nx run finetune:score -- --pred DIR --labels DIR        official U-RISC F1 of a folder
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { EXIT, EXIT_CODES_HELP, repeatedOption } from '@emseg/config';
import type { PredictArgs } from './predict-command.js';
import type { ScoreArgs } from './score-command.js';
import type { UriscArgs } from './urisc-run.js';
import { DEFAULT_CONFIG, DEFAULT_PREDICTIONS } from './workspace.js';

// Commands are imported when they run, so `--help` answers at once, without loading TensorFlow.

async function main(): Promise<void> {
  await yargs(hideBin(process.argv))
    .scriptName('emseg-finetune')
    .usage('$0 <command> [options]')
    .command(
      'urisc',
      'fine-tune a U-Net (encoder from a pretrained bundle or random) on U-RISC-layout data, validate with the official F1, score the test split',
      (y) =>
        y
          .option('config', { type: 'string', default: DEFAULT_CONFIG, describe: 'run configuration (JSON; see configs/finetune/: quick, track1, track2)' })
          .option('data', { type: 'string', describe: 'U-RISC release root (imgs/<track>/{train,val,test}, label/<track>/...); default: the embedded synthetic data' })
          .option('encoder', { type: 'string', describe: 'encoder bundle directory, runs:/<run_id>/encoder, the latest.json of a pretraining, "latest-pretrain" (the newest default pretraining) or "random" (default: model.encoder of the config)' })
          .option('set', { type: 'string', array: true, default: [] as string[], describe: 'override a config value, e.g. --set train.steps=500 (repeatable)' })
          .option('out', { type: 'string', describe: 'run directory for checkpoints, the best model and predictions (default .emseg/runs/finetune/<run name>)' })
          .option('resume', { type: 'boolean', default: false, describe: 'continue the run in --out from its newest checkpoint' })
          .option('overwrite', { type: 'boolean', default: false, describe: 'clear the run in --out and start over (a used --out is refused otherwise)' })
          .option('latest', { type: 'string', describe: 'record the finished run here for `predict` (default: latest.json beside the run folder)' })
          .option('test', { type: 'boolean', default: true, describe: 'predict and score the test split with the best model at the end (--no-test to skip)' })
          .option('experiment', { type: 'string', default: process.env.MLFLOW_EXPERIMENT_NAME ?? 'emseg-finetune', describe: 'MLflow experiment' })
          .option('run-name', { type: 'string', describe: 'MLflow run name (default unet-<arch>-<time>)' })
          .option('tracking-uri', { type: 'string', describe: 'MLflow server (default MLFLOW_TRACKING_URI, else the project store started on a free port)' })
          .check((a) => {
            const repeated = repeatedOption(a, ['config', 'data', 'encoder', 'out', 'latest', 'experiment', 'run-name', 'tracking-uri']);
            if (repeated) throw new Error(repeated);
            if (a.resume && !a.out) throw new Error('--resume needs --out DIR, the run directory to continue');
            if (a.resume && a.overwrite) throw new Error('--resume and --overwrite contradict each other: continue the run in --out, or clear it');
            return true;
          })
          .example('$0 urisc', 'quick run on the embedded synthetic data, from the latest quick pretraining')
          .example('$0 urisc --config configs/finetune/track2.json --data /data/urisc --encoder runs:/4f2c.../encoder', 'the paper setup on Track 2')
          .example('$0 urisc --out .emseg/runs/finetune/r1 --resume', 'continue an interrupted run')
          .epilogue(EXIT_CODES_HELP),
      async (a) => {
        const { runUrisc } = await import('./urisc-run.js');
        process.exitCode = await runUrisc(a as unknown as UriscArgs);
      },
    )
    .command(
      'predict [inputs..]',
      'predict whole images in blended tiles: 16-bit probability maps and binary U-RISC submissions (membrane black = 0)',
      (y) =>
        y
          .positional('inputs', { type: 'string', array: true, default: [] as string[], describe: 'image files and/or folders (default: the embedded synthetic test images)' })
          .option('model', { type: 'string', describe: 'model directory, a fine-tuning run directory or runs:/<run_id>/model (default: the latest fine-tuning)' })
          .option('out', { type: 'string', default: DEFAULT_PREDICTIONS, describe: 'output folder: <stem>.png submissions, probability/<stem>.png maps; must not hold any input, and is created and checked writable before predicting' })
          .option('tile-size', { type: 'number', describe: 'tile edge, a multiple of 32 (default: as validated)' })
          .option('overlap', { type: 'number', describe: 'pixels shared by neighbouring tiles (default: as validated)' })
          .option('window', { type: 'string', choices: ['gaussian', 'linear', 'uniform'] as const, describe: 'tile blending window (default: as validated)' })
          .option('batch-size', { type: 'number', describe: 'tiles per forward pass' })
          .option('tta', { type: 'boolean', describe: 'average the four flips of every tile (--no-tta to disable)' })
          .option('threshold', { type: 'number', describe: 'membrane where probability >= threshold (default: as validated)' })
          .option('probability', { type: 'string', choices: ['png', 'tiff', 'none'] as const, default: 'png' as const, describe: 'probability map format (16-bit)' })
          .option('tracking-uri', { type: 'string', describe: 'MLflow server for a runs:/ --model' })
          .example('$0 predict data/imgs/Track1/test --out out/test --tta', 'a submission folder for the test images')
          .example('$0 predict big.png --model .emseg/runs/finetune/r1 --tile-size 1024 --overlap 512', 'one 10k x 10k image')
          .epilogue(EXIT_CODES_HELP),
      async (a) => {
        const { predict } = await import('./predict-command.js');
        process.exitCode = await predict(a as unknown as PredictArgs);
      },
    )
    .command(
      'score',
      'official U-RISC F1 of a folder of binary predictions against a folder of labels (paired by name); a prediction the rules reject scores 0 with a warning (exit 1 if every one is)',
      (y) =>
        y
          .option('pred', { type: 'string', default: DEFAULT_PREDICTIONS, describe: 'folder of predictions (membrane black = 0)' })
          .option('labels', { type: 'string', describe: 'folder of labels (default: the embedded synthetic test labels)' })
          .option('json', { type: 'string', describe: 'write per-image scores as JSON here' })
          .option('csv', { type: 'string', describe: 'write per-image scores as CSV here' })
          .option('ignore-unpaired', { type: 'boolean', default: false, describe: 'ignore labels without a prediction (as the competition script does)' })
          .example('$0 score --pred out/test --labels data/label/Track1/test --csv scores.csv', 'score a submission folder')
          .epilogue(EXIT_CODES_HELP),
      async (a) => {
        const { score } = await import('./score-command.js');
        process.exitCode = await score(a as unknown as ScoreArgs);
      },
    )
    .demandCommand(1, 'name a command: urisc, predict or score')
    .strict()
    .help()
    .epilogue(EXIT_CODES_HELP)
    .fail((msg, err, y) => {
      // msg: yargs found a usage problem (exit 2); err alone: the command failed (exit 1)
      if (msg) process.stderr.write(`${y.help()}\n\nerror: ${msg}\n`);
      else process.stderr.write(`error: ${err?.message ?? 'failed'}\n`);
      process.exit(msg ? EXIT.usage : EXIT.failed);
    })
    .parseAsync();
}

main().catch((err: unknown) => {
  process.stderr.write(`error: ${(err as Error).message}\n`);
  process.exit(EXIT.failed);
});
