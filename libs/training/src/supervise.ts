/**
 * The end of every training command, once: the work runs under the started MLflow run with a
 * graceful stop (SIGINT/SIGTERM); its summary is printed to stdout with where to see the run, the run
 * is ended with the work's status, and the command's exit code comes back (130 when interrupted). On
 * an error the run is ended FAILED with the message (tag `emseg.endReason`) and the error rethrown.
 *
 * @example
 *   return superviseRun(run, { trackingUri, onFailure: () => bar?.done('(failed)') }, async (stop) => {
 *     const result = await train({ stop, ... });
 *     return { status: result.status, summary: [`training ${result.status.toLowerCase()}`] };
 *   });
 */
import { EXIT } from '@emseg/config';
import type { TrackedRun } from '@emseg/tracking';
import { gracefulStop, type GracefulStop } from './interrupt.js';
import { runUiHint } from './run-lineage.js';

export interface RunOutcome {
  status: 'FINISHED' | 'KILLED';
  /** Lines for stdout; "see the run" is added after them. */
  summary: string[];
}

export interface SuperviseOptions {
  /** The command's --tracking-uri, for the "see the run" line. */
  trackingUri?: string;
  /** Called before the run is ended FAILED (to close a progress bar, say). */
  onFailure?: () => void;
}

export async function superviseRun(run: TrackedRun, options: SuperviseOptions, work: (stop: GracefulStop) => Promise<RunOutcome>): Promise<number> {
  const stop = gracefulStop();
  try {
    const outcome = await work(stop);
    process.stdout.write([...outcome.summary, `see the run:    ${runUiHint(run, options.trackingUri)}`, ''].join('\n'));
    await run.end(outcome.status);
    return outcome.status === 'KILLED' ? EXIT.interrupted : EXIT.ok;
  } catch (err) {
    options.onFailure?.();
    await run.end('FAILED', { reason: (err as Error).message });
    throw err;
  } finally {
    stop.dispose();
  }
}

/** The summary line that says where the checkpoints are, and how to continue an interrupted run. */
export function checkpointsLine(checkpointDir: string, status: RunOutcome['status'], outDir: string): string {
  return `checkpoints:    ${checkpointDir}${status === 'KILLED' ? `  (continue with --resume --out ${outDir})` : ''}`;
}
