#!/usr/bin/env node
/**
 * emseg pretrain: self-supervised pretraining (MoCoV2, BYOL) of an EM encoder, logged to MLflow.
 *
 *   nx run pretrain:moco                          quick config on the embedded synthetic crops
 *   nx run pretrain:moco -c cem500k --data DIR    the CEM500K recipe on a real crops folder
 */
import { commandLine, EXIT_CODES_HELP, lazyCommand, repeatedOption, withRunOptions } from '@emseg/config';
import type { MocoArgs } from './moco-command.js';
import { DEFAULT_CONFIG } from './paths.js';

export { LATEST_PRETRAIN } from './paths.js';

// The command is imported when it runs, so `--help` answers at once, without loading TensorFlow.
commandLine('emseg-pretrain', 'name a command: moco', (y) =>
  y.command(
    'moco',
    'self-supervised pretraining of an encoder on unlabeled EM crops: MoCoV2 (CEM500K recipe; default) or BYOL (--set method=byol, configs/pretrain/byol-quick.json)',
    (y) =>
      withRunOptions(y, {
        config: { default: DEFAULT_CONFIG, describe: 'run configuration (JSON; see configs/pretrain/)' },
        setExample: 'train.maxSteps=100',
        out: 'run directory for checkpoints and the encoder bundle (default .emseg/runs/pretrain/<run name>)',
        latest: 'record the finished encoder here for fine-tuning (default: latest.json beside the run folder)',
        experiment: 'emseg-pretrain',
        runName: '<method>-<arch>-<time>',
      })
        .option('data', { type: 'string', describe: 'folder of unlabeled crops (any tree of PNG/TIFF/JPEG); default: the embedded synthetic crops' })
        .option('probe', {
          type: 'string',
          describe:
            'U-RISC-layout folder of a few labelled images ("embedded": the synthetic ones): fit a linear membrane probe on frozen features every probe.every steps and log its F1',
        })
        .check((a) => {
          const repeated = repeatedOption(a, ['data', 'probe']);
          if (repeated) throw new Error(repeated);
          return true;
        })
        .epilogue(EXIT_CODES_HELP)
        .example('$0 moco', 'quick run on the embedded synthetic crops')
        .example('$0 moco --config configs/pretrain/cem500k.json --data /data/cem500k', 'the paper recipe')
        .example('$0 moco --config configs/pretrain/byol-quick.json', 'quick BYOL run (or --set method=byol on any config)')
        .example('$0 moco --out .emseg/runs/pretrain/r1 --resume', 'continue an interrupted run'),
    lazyCommand<MocoArgs>(async () => (await import('./moco-command.js')).moco),
  ),
);
