/**
 * Graceful stop on SIGINT/SIGTERM: the first signal sets `requested` so the loop can finish its
 * step, save a checkpoint and end its MLflow run as KILLED; a second signal exits at once (130).
 *
 * @example
 * const stop = gracefulStop();
 * while (!stop.requested && step < total) trainStep();
 * stop.dispose();
 */
export interface GracefulStop {
  readonly requested: boolean;
  /** The signal that asked for the stop, if any. */
  readonly signal: NodeJS.Signals | null;
  dispose(): void;
}

export function gracefulStop({ log = (m: string): void => void process.stderr.write(`\n${m}\n`) }: { log?: (message: string) => void } = {}): GracefulStop {
  let signal: NodeJS.Signals | null = null;
  const handler = (sig: NodeJS.Signals) => {
    if (signal) {
      log(`${sig} again: exiting now without saving.`);
      process.exit(130);
    }
    signal = sig;
    log(`${sig} received: finishing this step, saving a checkpoint and ending the run (send it again to abort).`);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    get requested() {
      return signal !== null;
    },
    get signal() {
      return signal;
    },
    dispose() {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}
