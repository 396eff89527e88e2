/**
 * One exit-code convention for every emseg command line, documented in each `--help`:
 *
 *   0    the work is done
 *   1    bad input (a file, a config value) or the work failed
 *   2    usage: unknown flag, missing argument, conflicting options
 *   130  interrupted (SIGINT / Ctrl-C; training saves a checkpoint first)
 */
export const EXIT = { ok: 0, failed: 1, usage: 2, interrupted: 130 } as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** The `--help` epilogue that states the convention. */
export const EXIT_CODES_HELP = 'Exit codes: 0 done, 1 bad input or failed work, 2 usage error, 130 interrupted (Ctrl-C).';

/**
 * The yargs `.fail` handler of the convention: a usage problem (`msg`) prints the help and exits 2;
 * an error thrown by a command prints `error: <message>` and exits 1.
 * @example yargs(argv).command(...).fail(failCommandLine).parseAsync().catch(exitWithError)
 */
export function failCommandLine(msg: string | null | undefined, err: Error | null | undefined, y: { help(): unknown }): never {
  if (msg) process.stderr.write(`${y.help()}\n\nerror: ${msg}\n`);
  else process.stderr.write(`error: ${err?.message ?? 'failed'}\n`);
  process.exit(msg ? EXIT.usage : EXIT.failed);
}

/** Ends a command line whose work rejected: prints `error: <message>` and exits 1. */
export function exitWithError(err: unknown): never {
  process.stderr.write(`error: ${(err as Error).message}\n`);
  process.exit(EXIT.failed);
}

/**
 * A yargs command handler that imports its command module only when it runs (so `--help` answers
 * at once, without loading TensorFlow) and sets the process's exit code from what it returns.
 *
 * @example .command('predict', '...', builder, lazyCommand(async () => (await import('./predict-command.js')).predict))
 */
export function lazyCommand<A>(load: () => Promise<(args: A) => Promise<number>>): (args: unknown) => Promise<void> {
  return async (args) => {
    const command = await load();
    process.exitCode = await command(args as A);
  };
}
