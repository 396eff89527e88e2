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
