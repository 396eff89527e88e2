/**
 * Ending runs when the process is interrupted or crashes, so the MLflow UI never shows a run stuck
 * in RUNNING:
 *  - SIGINT / SIGTERM: active runs end as KILLED (records flushed, bounded by a deadline);
 *  - an uncaught exception or unhandled rejection: they end as FAILED, with the error in the
 *    `emseg.error` tag;
 *  - process exit with runs still open (process.exit, a second Ctrl-C): what is not delivered is
 *    written to the journal synchronously, with the final status, for `sync`.
 *
 * After ending the runs, the process does what it would have done without us (die of the signal;
 * print the error and exit 1) unless another listener for that event exists, in which case that
 * listener owns the decision (e.g. a trainer that saves a checkpoint first).
 */
import type { EndStatus } from './types.js';

/** What the hooks need from a run. */
export interface ProcessBoundRun {
  /** Ends the run (async flush) because of a process event. */
  endForProcessEvent(status: EndStatus, reason: string): Promise<unknown>;
  /** Writes everything undelivered to the journal synchronously (process is exiting). */
  persistOnExit(exitCode: number): void;
}

const bound = new Set<ProcessBoundRun>();
const signalBound = new Set<ProcessBoundRun>();
let installed = false;
let signalsInstalled = false;
let handling = false;

/**
 * Binds a run to the process: `signals` also ends it on SIGINT/SIGTERM/uncaught errors (the exit
 * safety net is always on). Returns the function that unbinds it.
 */
export function bindToProcess(run: ProcessBoundRun, signals: boolean): () => void {
  bound.add(run);
  if (!installed) {
    process.on('exit', onExit);
    installed = true;
  }
  if (signals) {
    signalBound.add(run);
    if (!signalsInstalled) {
      process.on('SIGINT', onSigint);
      process.on('SIGTERM', onSigterm);
      process.on('uncaughtException', onUncaught);
      signalsInstalled = true;
    }
  }
  return () => {
    bound.delete(run);
    signalBound.delete(run);
    if (signalBound.size === 0 && signalsInstalled && !handling) uninstallSignals();
    if (bound.size === 0 && installed) {
      process.off('exit', onExit);
      installed = false;
    }
  };
}

function uninstallSignals(): void {
  process.off('SIGINT', onSigint);
  process.off('SIGTERM', onSigterm);
  process.off('uncaughtException', onUncaught);
  signalsInstalled = false;
}

const onSigint = (): void => onSignal('SIGINT');
const onSigterm = (): void => onSignal('SIGTERM');

function onSignal(signal: 'SIGINT' | 'SIGTERM'): void {
  const code = signal === 'SIGINT' ? 130 : 143;
  if (handling) {
    // A second signal while flushing: stop waiting; the exit hook journals what is left.
    process.stderr.write(`[tracking] ${signal} again: exiting now; undelivered records stay in the journal\n`);
    process.exit(code);
  }
  handling = true;
  const alone = process.listenerCount(signal) === 1;
  process.stderr.write(`[tracking] ${signal}: ending ${signalBound.size} MLflow run(s) as KILLED\n`);
  void endAll('KILLED', `received ${signal}`).then(() => {
    handling = false;
    if (signalBound.size === 0 && signalsInstalled) uninstallSignals();
    if (alone) {
      // Die of the signal as if we had never caught it (exit status 128 + n in a shell).
      process.off(signal, signal === 'SIGINT' ? onSigint : onSigterm);
      process.kill(process.pid, signal);
      setTimeout(() => process.exit(code), 1000).unref();
    }
  });
}

function onUncaught(error: unknown, origin: string): void {
  const alone = process.listenerCount('uncaughtException') === 1;
  if (alone) {
    // Node prints the error itself only when nobody listens; do it the same way.
    process.stderr.write(`${error instanceof Error ? (error.stack ?? String(error)) : String(error)}\n`);
  }
  if (handling) return;
  handling = true;
  const what = origin === 'unhandledRejection' ? 'unhandled rejection' : 'uncaught exception';
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  void endAll('FAILED', `${what}: ${message}`).then(() => {
    handling = false;
    if (signalBound.size === 0 && signalsInstalled) uninstallSignals();
    if (alone) process.exit(1);
  });
}

async function endAll(status: EndStatus, reason: string): Promise<void> {
  await Promise.allSettled([...signalBound].map((run) => run.endForProcessEvent(status, reason)));
}

function onExit(code: number): void {
  for (const run of [...bound]) {
    try {
      run.persistOnExit(code);
    } catch {
      // Exiting anyway; nothing else can be done.
    }
  }
}
