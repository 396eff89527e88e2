import yargs from 'yargs';
import { describe, expect, it } from 'vitest';
import { repeatedOption, withRunOptions, type RunOptionsHelp } from '@emseg/config';

const help: RunOptionsHelp = {
  config: { default: 'configs/quick.json', describe: 'run configuration' },
  setExample: 'train.steps=5',
  out: 'run directory',
  latest: 'latest record',
  experiment: 'emseg-test',
  runName: 'x-<time>',
};

/** Parses `argv` with the shared run options plus a command's own `--data` check: the arguments, or the error message. */
async function parse(argv: string[]): Promise<Record<string, unknown> | string> {
  const y = withRunOptions(yargs(argv), help)
    .option('data', { type: 'string' })
    .check((a) => {
      const repeated = repeatedOption(a, ['data']);
      if (repeated) throw new Error(repeated);
      return true;
    })
    .strict()
    .exitProcess(false)
    .fail((msg, err) => {
      throw new Error(msg ?? err?.message);
    });
  try {
    return await y.parseAsync();
  } catch (e) {
    return (e as Error).message;
  }
}

describe('withRunOptions', () => {
  it('gives the shared defaults, repeatable --set, and keeps the command’s own options', async () => {
    const a = await parse(['--set', 'a=1', '--set', 'b=2', '--data', 'd']);
    expect(typeof a).toBe('object');
    const args = a as Record<string, unknown>;
    expect(args.config).toBe('configs/quick.json');
    expect(args.set).toEqual(['a=1', 'b=2']);
    expect(args.resume).toBe(false);
    expect(args.overwrite).toBe(false);
    expect(args.experiment).toBe(process.env.MLFLOW_EXPERIMENT_NAME ?? 'emseg-test');
    expect(args.data).toBe('d');
  });

  it('refuses a single-valued run flag given twice, naming it and both values', async () => {
    expect(await parse(['--out', 'a', '--out', 'b'])).toBe('--out was given 2 times ("a", "b"); give it once');
    expect(await parse(['--tracking-uri', 'http://a', '--tracking-uri', 'http://b'])).toMatch(/^--tracking-uri was given 2 times/);
  });

  it('refuses --resume without --out and --resume with --overwrite; the command’s own check still runs', async () => {
    expect(await parse(['--resume'])).toMatch(/--resume needs --out DIR/);
    expect(await parse(['--out', 'r', '--resume', '--overwrite'])).toMatch(/--resume and --overwrite contradict each other/);
    expect(typeof (await parse(['--out', 'r', '--resume']))).toBe('object');
    expect(await parse(['--data', 'a', '--data', 'b'])).toMatch(/^--data was given 2 times/);
  });
});
