#!/usr/bin/env node
/**
 * emseg pretrain: self-supervised pretraining (MoCoV2, BYOL) of an EM encoder, logged to MLflow.
 *
 *   nx run pretrain:moco                          quick config on the embedded synthetic crops
 *   nx run pretrain:moco -c cem500k --data DIR    the CEM500K recipe on a real crops folder
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { EXIT_CODES_HELP, exitWithError, failCommandLine, lazyCommand, repeatedOption } from '@emseg/config';
import type { MocoArgs } from './moco-command.js';
import { DEFAULT_CONFIG } from './paths.js';

export { LATEST_PRETRAIN } from './paths.js';

// The command is imported when it runs, so `--help` answers at once, without loading TensorFlow.
async function main(): Promise<void> {
  await yargs(hideBin(process.argv))
    .scriptName('emseg-pretrain')
    .usage('$0 <command> [options]')
    .command(
      'moco',
      'self-supervised pretraining of an encoder on unlabeled EM crops: MoCoV2 (CEM500K recipe; default) or BYOL (--set method=byol, configs/pretrain/byol-quick.json)',
      (y) =>
        y
          .option('config', { type: 'string', default: DEFAULT_CONFIG, describe: 'run configuration (JSON; see configs/pretrain/)' })
          .option('data', { type: 'string', describe: 'folder of unlabeled crops (any tree of PNG/TIFF/JPEG); default: the embedded synthetic crops' })
          .option('set', {
            type: 'string',
            array: true,
            default: [] as string[],
            describe: 'override a config value, e.g. --set train.maxSteps=100 (repeatable)',
          })
          .option('out', { type: 'string', describe: 'run directory for checkpoints and the encoder bundle (default .emseg/runs/pretrain/<run name>)' })
          .option('resume', { type: 'boolean', default: false, describe: 'continue the run in --out from its newest checkpoint' })
          .option('overwrite', { type: 'boolean', default: false, describe: 'clear the run in --out and start over (a used --out is refused otherwise)' })
          .option('latest', { type: 'string', describe: 'record the finished encoder here for fine-tuning (default: latest.json beside the run folder)' })
          .option('experiment', { type: 'string', default: process.env.MLFLOW_EXPERIMENT_NAME ?? 'emseg-pretrain', describe: 'MLflow experiment' })
          .option('run-name', { type: 'string', describe: 'MLflow run name (default <method>-<arch>-<time>)' })
          .option('probe', {
            type: 'string',
            describe:
              'U-RISC-layout folder of a few labelled images ("embedded": the synthetic ones): fit a linear membrane probe on frozen features every probe.every steps and log its F1',
          })
          .option('tracking-uri', { type: 'string', describe: 'MLflow server (default MLFLOW_TRACKING_URI, else the project store started on a free port)' })
          .check((a) => {
            const repeated = repeatedOption(a, ['config', 'data', 'out', 'latest', 'experiment', 'run-name', 'probe', 'tracking-uri']);
            if (repeated) throw new Error(repeated);
            if (a.resume && !a.out) throw new Error('--resume needs --out DIR, the run directory to continue');
            if (a.resume && a.overwrite) throw new Error('--resume and --overwrite contradict each other: continue the run in --out, or clear it');
            return true;
          })
          .epilogue(EXIT_CODES_HELP)
          .example('$0 moco', 'quick run on the embedded synthetic crops')
          .example('$0 moco --config configs/pretrain/cem500k.json --data /data/cem500k', 'the paper recipe')
          .example('$0 moco --config configs/pretrain/byol-quick.json', 'quick BYOL run (or --set method=byol on any config)')
          .example('$0 moco --out .emseg/runs/pretrain/r1 --resume', 'continue an interrupted run'),
      lazyCommand<MocoArgs>(async () => (await import('./moco-command.js')).moco),
    )
    .demandCommand(1, 'name a command: moco')
    .strict()
    .help()
    .epilogue(EXIT_CODES_HELP)
    .fail(failCommandLine)
    .parseAsync();
}

main().catch(exitWithError);
