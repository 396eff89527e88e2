/**
 * Problems the tracking side reports instead of throwing into the training loop: a bad metric
 * key, a server that went away, records the server refused. They go to an `onProblem` callback
 * (default: one line on stderr) and are kept on the run for inspection.
 */

export type ProblemKind =
  /** A training-side call got bad input; the record was dropped. */
  | 'invalid-input'
  /** The server could not be reached or answered with a transient error; records wait in the journal. */
  | 'server-unavailable'
  /** Delivery works again after an outage. */
  | 'recovered'
  /** The server refused a record for good (e.g. a param re-logged with a different value). */
  | 'rejected'
  /** The run no longer accepts records (deleted on the server); the journal keeps them. */
  | 'run-unavailable'
  /** The run ended with records still undelivered; the journal keeps them for `sync`. */
  | 'undelivered'
  /** A call after the run ended; ignored. */
  | 'after-end'
  /** An artifact could not be uploaded yet (server unreachable); it waits in the journal. */
  | 'deferred'
  /** An artifact could not be read or uploaded. */
  | 'artifact';

export interface TrackingProblem {
  kind: ProblemKind;
  message: string;
  runId?: string;
}

export type ProblemHandler = (problem: TrackingProblem) => void;

/** The default handler: one `[tracking]` line on stderr. */
export const warnOnStderr: ProblemHandler = (problem) => {
  process.stderr.write(`[tracking] ${problem.message}\n`);
};
