/**
 * The command-line frame every emseg app shares: one yargs program with the exit-code convention,
 * and the options of a tracked training run (config, overrides, run folder, resume, MLflow), so
 * that `pretrain moco` and `finetune urisc` read and check them the same way.
 */
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { repeatedOption } from './cli-args.js';
import { EXIT_CODES_HELP, exitWithError, failCommandLine } from './exit-codes.js';

/**
 * Parses `process.argv` with the commands `build` adds: strict, `--help` ending with the exit codes,
 * usage errors exit 2 and failed work exits 1 (`failCommandLine`, `exitWithError`).
 * @param demand the message when no command is named, e.g. 'name a command: moco'
 */
export function commandLine(scriptName: string, demand: string, build: (y: Argv) => Argv): void {
  build(yargs(hideBin(process.argv)).scriptName(scriptName).usage('$0 <command> [options]'))
    .demandCommand(1, demand)
    .strict()
    .help()
    .epilogue(EXIT_CODES_HELP)
    .fail(failCommandLine)
    .parseAsync()
    .catch(exitWithError);
}

/** What the shared run options say in `--help` for one command. */
export interface RunOptionsHelp {
  /** The default config file and what `--config` describes. */
  config: { default: string; describe: string };
  /** An example override, e.g. 'train.steps=500'. */
  setExample: string;
  /** What `--out` holds and its default. */
  out: string;
  /** What `--latest` records. */
  latest: string;
  /** The default MLflow experiment (MLFLOW_EXPERIMENT_NAME wins). */
  experiment: string;
  /** The default MLflow run name. */
  runName: string;
}

const RUN_FLAGS = ['config', 'out', 'latest', 'experiment', 'run-name', 'tracking-uri'] as const;

/**
 * Adds the options of a tracked, resumable run to a command: --config, --set (repeatable), --out,
 * --resume, --overwrite, --latest, --experiment, --run-name, --tracking-uri; and checks that none of
 * the single-valued ones is given twice and that --resume has an --out and no --overwrite.
 */
export function withRunOptions<T>(y: Argv<T>, help: RunOptionsHelp) {
  return y
    .option('config', { type: 'string', default: help.config.default, describe: help.config.describe })
    .option('set', {
      type: 'string',
      array: true,
      default: [] as string[],
      describe: `override a config value, e.g. --set ${help.setExample} (repeatable)`,
    })
    .option('out', { type: 'string', describe: help.out })
    .option('resume', { type: 'boolean', default: false, describe: 'continue the run in --out from its newest checkpoint' })
    .option('overwrite', { type: 'boolean', default: false, describe: 'clear the run in --out and start over (a used --out is refused otherwise)' })
    .option('latest', { type: 'string', describe: help.latest })
    .option('experiment', { type: 'string', default: process.env.MLFLOW_EXPERIMENT_NAME ?? help.experiment, describe: 'MLflow experiment' })
    .option('run-name', { type: 'string', describe: `MLflow run name (default ${help.runName})` })
    .option('tracking-uri', { type: 'string', describe: 'MLflow server (default MLFLOW_TRACKING_URI, else the project store started on a free port)' })
    .check((a) => {
      const repeated = repeatedOption(a, RUN_FLAGS);
      if (repeated) throw new Error(repeated);
      if (a.resume && !a.out) throw new Error('--resume needs --out DIR, the run directory to continue');
      if (a.resume && a.overwrite) throw new Error('--resume and --overwrite contradict each other: continue the run in --out, or clear it');
      return true;
    });
}
