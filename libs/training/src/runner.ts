/**
 * The training loop, once for every app: the step schedule over epochs, resume from the newest
 * checkpoint, periodic checkpoints, periodic evaluation with best-model tracking and a graceful
 * stop. It knows nothing about models: a `TrainingTask` supplies the batches, the step, the
 * checkpoint state and the evaluation, as a LightningModule does for Lightning's Trainer.
 *
 * Determinism: epoch e's batches come from `task.batches(e)`, which must depend only on (seed, e,
 * position); a resumed run skips the batches of its epoch already trained on, so step s always
 * trains on the same batch, interrupted or not.
 */
import { tf, type Tensor } from '@emseg/tf';
import { latestCheckpoint, loadCheckpoint, saveCheckpoint, type Checkpoint } from './checkpoint.js';

/** The best evaluation so far: the step it was made at and the task's score record. */
export type Best<R extends object> = { step: number } & R;

/**
 * What every checkpoint's state holds for the runner: its step, and the best evaluation so far. A
 * task that selects a best model stores the `best` it is given in `state()` under this key, so a
 * resumed run keeps it; a task that does not may leave it out.
 */
export interface RunnerState<R extends object> {
  step: number;
  best?: Best<R> | null;
}

/** The outcome of one evaluation: the score to remember, and whether it beats the best so far. */
export interface Evaluated<R extends object> {
  score: R;
  /** Beats `best`; the task has already kept these weights as its best model, if it keeps one. */
  better: boolean;
}

/** What one step's timing was (the runner measures it; the task reports it as it likes). */
export interface StepTiming {
  /** The epoch the batch belongs to. */
  epoch: number;
  /** Wall time of the step, waiting for the batch included. */
  stepMs: number;
  /** Of which waiting for the batch. */
  dataMs: number;
}

/**
 * One model's part of training. Every method must free the tensors it allocates (the runner
 * checks nothing, but its test does): the loop must not grow `tf.memory().numTensors`.
 */
export interface TrainingTask<B, M extends { readonly loss: number }, S extends RunnerState<R>, R extends object> {
  /** The batches of `epoch`, in order; the runner takes the first `stepsPerEpoch` of them. */
  batches(epoch: number): Iterable<B> | AsyncIterable<B>;
  /** One optimisation step on `batch`; `step` counts the steps taken before it (0-based). */
  step(batch: B, step: number): M | Promise<M>;
  /** A checkpoint's content at `at.step`: tensors (read, not disposed) and JSON state. */
  state(at: { step: number; best: Best<R> | null }): { tensors: Record<string, Tensor>; state: S };
  /** Loads a checkpoint into the model and optimizer; the runner disposes `ck.tensors` afterwards. */
  restore(ck: Checkpoint<S>): void;
  /** Called once after resuming (or not), before the first step, with the step training starts at. */
  start?(startStep: number): void | Promise<void>;
  /** Evaluates the current weights at `step` against the best so far. */
  evaluate?(step: number, best: Best<R> | null): Evaluated<R> | Promise<Evaluated<R>>;
}

export interface TrainingListener<M> {
  /** After each step; `step` counts the steps done (1 after the first). */
  step?(step: number, metrics: M, timing: StepTiming): void;
  /** After each checkpoint is written. */
  checkpoint?(dir: string, step: number): void | Promise<void>;
}

/** What a training loop built on the runner reports to its caller (a CLI, MLflow): pretrain and finetune extend it. */
export interface LoopListener<Start, M> {
  /** Called once the data are ready, before the first step. */
  start?(info: Start & { totalSteps: number; startStep: number }): void | Promise<void>;
  step?(step: number, metrics: M): void;
  checkpoint?(dir: string, step: number): void | Promise<void>;
}

export interface TrainingOptions<B, M extends { readonly loss: number }, S extends RunnerState<R>, R extends object> {
  task: TrainingTask<B, M, S, R>;
  totalSteps: number;
  stepsPerEpoch: number;
  /** Checkpoints go to `checkpointDir(checkpointRoot, step)`; the newest three are kept. */
  checkpointRoot: string;
  /** Save every N steps (and always at the end). */
  checkpointEvery: number;
  /** Evaluate every N steps; 0: only at the end. Ignored without `task.evaluate`. */
  evaluateEvery?: number;
  /** Evaluate at the end of a stopped run too (default false: a stop should be quick). */
  evaluateOnStop?: boolean;
  /** Continue from the newest checkpoint under `checkpointRoot` (none: start at 0, with a warning). */
  resume?: boolean;
  /** Checked after every step (a GracefulStop): the step finishes, a checkpoint is saved, KILLED. */
  stop?: { readonly requested: boolean };
  listener?: TrainingListener<M>;
  /** Ends the error thrown when the loss becomes NaN or infinite, e.g. "lower optimizer.lr (now 0.1)". */
  divergenceHint?: string;
  /** Things the user should know (default: printed to stderr). */
  warn?(message: string): void;
}

export interface TrainingResult<M, R extends object> {
  status: 'FINISHED' | 'KILLED';
  /** Steps done, resumed ones included. */
  steps: number;
  /** The metrics of the last step this run took (null: it took none). */
  lastMetrics: M | null;
  best: Best<R> | null;
}

/**
 * Trains `task` for `totalSteps` steps. After each step: listener, divergence check, evaluation
 * (every `evaluateEvery`), checkpoint (every `checkpointEvery`), stop check. At the end: a final
 * evaluation unless the last step was evaluated (or the run was stopped), and a final checkpoint
 * unless the last step was saved.
 *
 * @example
 * const result = await runTraining({
 *   task: {
 *     batches: (epoch) => shuffledBatches(data, { seed, epoch }),
 *     step: (batch, step) => ({ loss: trainStep(vars, () => mse(batch), adam, lrAt(step)) }),
 *     state: ({ step, best }) => ({ tensors: { ...vars, ...adam.state().slots }, state: { step, best, optimizerIterations: adam.iterations } }),
 *     restore: (ck) => restoreInto(vars, adam, ck),
 *     evaluate: (step, best) => { const mse = validate(); return { score: { mse }, better: best === null || mse < best.mse }; },
 *   },
 *   totalSteps: 1000, stepsPerEpoch: 50, checkpointRoot: 'run/checkpoints', checkpointEvery: 100, evaluateEvery: 250,
 *   resume: true, stop: gracefulStop(),
 * });
 */
export async function runTraining<B, M extends { readonly loss: number }, S extends RunnerState<R>, R extends object>(
  options: TrainingOptions<B, M, S, R>,
): Promise<TrainingResult<M, R>> {
  const { task, totalSteps, stepsPerEpoch, checkpointRoot, checkpointEvery, evaluateEvery = 0, listener, stop } = options;
  for (const [name, value] of Object.entries({ totalSteps, evaluateEvery })) {
    if (!Number.isInteger(value) || value < 0) throw new Error(`runTraining: ${name} must be an integer >= 0, got ${value}`);
  }
  for (const [name, value] of Object.entries({ stepsPerEpoch, checkpointEvery })) {
    if (!Number.isInteger(value) || value < 1) throw new Error(`runTraining: ${name} must be a positive integer, got ${value}`);
  }
  const warn = options.warn ?? ((message: string) => void process.stderr.write(`${message}\n`));

  let step = 0;
  let best: Best<R> | null = null;
  if (options.resume) ({ step, best } = resumeFrom<S, R>((ck) => task.restore(ck), checkpointRoot, warn));
  await task.start?.(step);

  let lastMetrics: M | null = null;
  let lastSaved = step;
  let lastEvaluated = -1;
  const save = async () => {
    const { tensors, state } = task.state({ step, best });
    const dir = await saveCheckpoint(checkpointRoot, step, tensors, state);
    lastSaved = step;
    await listener?.checkpoint?.(dir, step);
  };
  const evaluate = async () => {
    if (!task.evaluate) return;
    const { score, better } = await task.evaluate(step, best);
    lastEvaluated = step;
    if (better) best = { step, ...score };
  };

  outer: while (step < totalSteps) {
    const epoch = Math.floor(step / stepsPerEpoch);
    const skip = step - epoch * stepsPerEpoch;
    const firstStep = step;
    let position = 0;
    let t0 = performance.now();
    for await (const batch of task.batches(epoch)) {
      if (position++ < skip) {
        t0 = performance.now();
        continue;
      }
      const dataMs = performance.now() - t0;
      const metrics = await task.step(batch, step);
      step++;
      lastMetrics = metrics;
      listener?.step?.(step, metrics, { epoch, stepMs: performance.now() - t0, dataMs });
      if (!Number.isFinite(metrics.loss)) {
        throw new Error(`loss became ${metrics.loss} at step ${step}${options.divergenceHint ? `; ${options.divergenceHint}` : ''}`);
      }
      if (evaluateEvery > 0 && step % evaluateEvery === 0) await evaluate();
      if (step % checkpointEvery === 0) await save();
      if (stop?.requested || step >= totalSteps) break outer;
      if (position >= stepsPerEpoch) break;
      t0 = performance.now();
    }
    if (step === firstStep) {
      throw new Error(`runTraining: epoch ${epoch} gave ${position} batch(es); step ${step} needs batch ${skip} of it (stepsPerEpoch ${stepsPerEpoch})`);
    }
  }
  const killed = Boolean(stop?.requested) && step < totalSteps;
  if ((!killed || options.evaluateOnStop) && lastEvaluated !== step) await evaluate();
  if (lastSaved !== step || latestCheckpoint(checkpointRoot) === null) await save();
  return { status: killed ? 'KILLED' : 'FINISHED', steps: step, lastMetrics, best };
}

/** Restores the newest checkpoint under `root` into the task; returns its step and best (0, null if none). */
function resumeFrom<S extends RunnerState<R>, R extends object>(
  restore: (ck: Checkpoint<S>) => void,
  root: string,
  warn: (message: string) => void,
): { step: number; best: Best<R> | null } {
  const dir = latestCheckpoint(root);
  if (dir === null) {
    warn(`--resume: no checkpoint under ${root}; starting from step 0`);
    return { step: 0, best: null };
  }
  const ck = loadCheckpoint<S>(dir);
  try {
    restore(ck);
    return { step: ck.step, best: ck.state.best ?? null };
  } finally {
    tf.dispose(Object.values(ck.tensors));
  }
}
