/**
 * runTraining on a real, tiny tfjs model: linear regression on fixed data, trained by Adam through
 * trainStep, checkpointed to disk. Batches are a per-epoch shuffle fixed by (seed, epoch), as the
 * apps' data are, so an interrupted and resumed run must match an uninterrupted one bit for bit.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tensorCountGuard, tf, type Scalar, type Tensor, type Variable } from '@emseg/tf';
import {
  Adam,
  latestCheckpoint,
  listCheckpoints,
  loadCheckpoint,
  runTraining,
  trainStep,
  type Best,
  type Evaluated,
  type TrainingOptions,
  type TrainingTask,
} from '@emseg/training';

const WORK = mkdtempSync(join(tmpdir(), 'emseg-runner-test-'));
afterAll(() => rmSync(WORK, { recursive: true, force: true }));
let runs = 0;
const freshRoot = () => join(WORK, `run-${runs++}`, 'checkpoints');

// y = x . [1, -2, 0.5] + 0.3 on 32 fixed rows; 4 batches of 8 per epoch.
const ROWS = 32;
const BATCH = 8;
const STEPS_PER_EPOCH = ROWS / BATCH;
const X = Array.from({ length: ROWS }, (_, i) => [Math.sin(i), Math.cos(1.3 * i), (i % 5) / 5 - 0.4]);
const Y = X.map(([a, b, c]) => a - 2 * b + 0.5 * c + 0.3);

/** A batch: which rows, and where it came from (to check that step s always sees the same batch). */
interface Batch {
  id: string;
  rows: number[];
}

/** Epoch `epoch`'s batches: a shuffle fixed by (seed, epoch), cut into batches. */
function* epochBatches(seed: number, epoch: number): Generator<Batch> {
  const order = Array.from({ length: ROWS }, (_, i) => i);
  let state = (seed * 7919 + epoch * 104_729 + 1) >>> 0;
  for (let i = ROWS - 1; i > 0; i--) {
    state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
    const j = state % (i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  for (let b = 0; b < STEPS_PER_EPOCH; b++) yield { id: `${epoch}:${b}`, rows: order.slice(b * BATCH, (b + 1) * BATCH) };
}

interface State {
  step: number;
  optimizerIterations: number;
  best: Best<Score> | null;
}
interface Score {
  mse: number;
}
interface Metrics {
  loss: number;
  batch: string;
}

/** The model, its optimizer, and the task that trains them; `seed` sets the initial weights. */
function linearRegression(seed: number, evaluate?: (step: number, best: Best<Score> | null) => Evaluated<Score>) {
  const init = { w: tf.randomNormal([3, 1], 0, 1, 'float32', seed), b: tf.randomNormal([1], 0, 1, 'float32', seed + 1) };
  const vars: Record<string, Variable> = { 'model/w': tf.variable(init.w), 'model/b': tf.variable(init.b) };
  tf.dispose(Object.values(init));
  const adam = new Adam();
  const predict = (x: Tensor) => x.matMul(vars['model/w']).squeeze([1]).add(vars['model/b']);
  const mse = (rows: number[]) =>
    tf.tidy(() => tf.losses.meanSquaredError(tf.tensor1d(rows.map((r) => Y[r])), predict(tf.tensor2d(rows.map((r) => X[r])))) as Scalar);
  const evaluations: { step: number; best: Best<Score> | null }[] = [];
  const all = Array.from({ length: ROWS }, (_, i) => i);
  const task: TrainingTask<Batch, Metrics, State, Score> = {
    batches: (epoch) => epochBatches(11, epoch),
    step: (batch, step) => ({ loss: trainStep(vars, () => mse(batch.rows), adam, 0.05 / (1 + step / 10)), batch: batch.id }),
    state: ({ step, best }) => ({
      tensors: { ...vars, ...Object.fromEntries(Object.entries(adam.state().slots).map(([k, t]) => [`optimizer/${k}`, t])) },
      state: { step, optimizerIterations: adam.iterations, best },
    }),
    restore: (ck) => {
      for (const [name, v] of Object.entries(vars)) v.assign(ck.tensors[name]);
      const slots = Object.fromEntries(
        Object.entries(ck.tensors)
          .filter(([k]) => k.startsWith('optimizer/'))
          .map(([k, t]) => [k.slice('optimizer/'.length), t]),
      );
      adam.restore({ iterations: ck.state.optimizerIterations, slots });
    },
    evaluate: (step, best) => {
      evaluations.push({ step, best });
      if (evaluate) return evaluate(step, best);
      const loss = mse(all);
      const value = loss.dataSync()[0];
      loss.dispose();
      return { score: { mse: value }, better: best === null || value < best.mse };
    },
  };
  const weights = () => Object.fromEntries(Object.entries(vars).map(([n, v]) => [n, Float32Array.from(v.dataSync())]));
  const dispose = () => {
    tf.dispose(Object.values(vars));
    adam.dispose();
  };
  return { task, weights, evaluations, dispose };
}

/** Runs `task`, recording every step's metrics, tensor count and checkpoint. */
async function train(
  task: TrainingTask<Batch, Metrics, State, Score>,
  options: Partial<TrainingOptions<Batch, Metrics, State, Score>> & { stopAfter?: number },
) {
  const steps: (Metrics & { step: number; epoch: number; tensors: number })[] = [];
  const checkpoints: number[] = [];
  const stop = {
    get requested() {
      return options.stopAfter !== undefined && steps.length >= options.stopAfter;
    },
  };
  const result = await runTraining({
    task,
    totalSteps: 20,
    stepsPerEpoch: STEPS_PER_EPOCH,
    checkpointRoot: freshRoot(),
    checkpointEvery: 5,
    stop,
    listener: {
      step: (step, m, t) => void steps.push({ ...m, step, epoch: t.epoch, tensors: tf.memory().numTensors }),
      checkpoint: (_dir, step) => void checkpoints.push(step),
    },
    ...options,
  });
  return { result, steps, checkpoints };
}

describe('runTraining', () => {
  it('lowers the loss, checkpoints every N steps, and keeps the tensor count flat', async () => {
    const guard = tensorCountGuard();
    const m = linearRegression(1);
    const root = freshRoot();
    const { result, steps, checkpoints } = await train(m.task, { checkpointRoot: root, evaluateEvery: 0 });
    expect(result.status).toBe('FINISHED');
    expect(result.steps).toBe(20);
    expect(steps.map((s) => s.step)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(steps.map((s) => s.epoch)).toEqual(Array.from({ length: 20 }, (_, i) => Math.floor(i / STEPS_PER_EPOCH)));
    expect(steps.map((s) => s.batch)).toEqual(Array.from({ length: 20 }, (_, i) => `${Math.floor(i / 4)}:${i % 4}`));
    expect(result.lastMetrics?.loss).toBeLessThan(steps[0].loss / 4);
    expect(checkpoints).toEqual([5, 10, 15, 20]);
    expect(listCheckpoints(root).map((c) => c.step)).toEqual([10, 15, 20]); // the newest three are kept
    // Adam's slots appear in step 1; after that nothing per step, and nothing left by saves or evaluations.
    expect(new Set(steps.map((s) => s.tensors))).toEqual(new Set([steps[0].tensors]));
    expect(tf.memory().numTensors).toBe(steps[0].tensors);
    expect(m.evaluations.map((e) => e.step)).toEqual([20]); // evaluateEvery 0: at the end only
    m.dispose();
    expect(guard.leaked()).toBe(0);
  });

  it('stops after a step with a checkpoint (KILLED); resuming into a fresh model reproduces the uninterrupted run exactly', async () => {
    const guard = tensorCountGuard();
    const a = linearRegression(1);
    const straightRoot = freshRoot();
    const straight = await train(a.task, { checkpointRoot: straightRoot, evaluateEvery: 4 });

    const root = freshRoot();
    const b = linearRegression(1);
    const first = await train(b.task, { checkpointRoot: root, evaluateEvery: 4, stopAfter: 7 });
    expect(first.result.status).toBe('KILLED');
    expect(first.result.steps).toBe(7);
    expect(first.checkpoints).toEqual([5, 7]);
    const stopCk = loadCheckpoint<State>(latestCheckpoint(root)!);
    expect(stopCk.step).toBe(7);
    tf.dispose(Object.values(stopCk.tensors));
    expect(b.evaluations.map((e) => e.step)).toEqual([4]); // no evaluation at the stop
    const c = linearRegression(99); // other initial weights: everything must come from the checkpoint
    const second = await train(c.task, { checkpointRoot: root, evaluateEvery: 4, resume: true });
    expect(second.result.status).toBe('FINISHED');
    expect(second.result.steps).toBe(20);
    expect(second.steps.map((s) => s.step)).toEqual(straight.steps.slice(7).map((s) => s.step));
    // step 8 is batch 3 of epoch 1: the resumed run skips into the epoch
    expect(second.steps.map((s) => s.batch)).toEqual(straight.steps.slice(7).map((s) => s.batch));
    expect([...first.steps, ...second.steps].map((s) => s.loss)).toEqual(straight.steps.map((s) => s.loss));
    expect(c.weights()).toEqual(a.weights());
    expect(c.evaluations.map((e) => e.step)).toEqual([8, 12, 16, 20]);
    expect(first.result.best?.step).toBe(4);
    expect(c.evaluations[0].best).toEqual(first.result.best); // the best came back from the checkpoint
    expect(second.result.best).toEqual(straight.result.best);
    const ckA = loadCheckpoint<State>(latestCheckpoint(straightRoot)!);
    const ckC = loadCheckpoint<State>(latestCheckpoint(root)!);
    expect(ckC.state).toEqual(ckA.state);
    tf.dispose([...Object.values(ckA.tensors), ...Object.values(ckC.tensors)]);
    for (const m of [a, b, c]) m.dispose();
    expect(guard.leaked()).toBe(0);
  });

  it('evaluates every N steps and at the end, hands each evaluation the best so far, and keeps the best', async () => {
    const scripted: Record<number, number> = { 4: 0.5, 8: 0.2, 10: 0.3 };
    const m = linearRegression(2, (step, best) => ({ score: { mse: scripted[step] }, better: best === null || scripted[step] < best.mse }));
    const root = freshRoot();
    const { result } = await train(m.task, { checkpointRoot: root, totalSteps: 10, evaluateEvery: 4 });
    expect(m.evaluations).toEqual([
      { step: 4, best: null },
      { step: 8, best: { step: 4, mse: 0.5 } },
      { step: 10, best: { step: 8, mse: 0.2 } },
    ]);
    expect(result.best).toEqual({ step: 8, mse: 0.2 });
    const ck = loadCheckpoint<State>(latestCheckpoint(root)!); // the final save follows the final evaluation
    expect(ck.step).toBe(10);
    expect(ck.state.best).toEqual({ step: 8, mse: 0.2 });
    tf.dispose(Object.values(ck.tensors));
    m.dispose();
  });

  it('evaluates a stopped run only when asked to, and never twice at one step', async () => {
    const stopped = async (evaluateOnStop: boolean, stopAfter: number) => {
      const m = linearRegression(3);
      await train(m.task, { evaluateEvery: 4, evaluateOnStop, stopAfter });
      m.dispose();
      return m.evaluations.map((e) => e.step);
    };
    expect(await stopped(false, 3)).toEqual([]);
    expect(await stopped(true, 3)).toEqual([3]);
    expect(await stopped(true, 4)).toEqual([4]);
  });

  it('resumes from nothing with a warning, and names the step and the fix when the loss diverges', async () => {
    const m = linearRegression(4);
    const warnings: string[] = [];
    const root = freshRoot();
    const { result } = await train(m.task, { checkpointRoot: root, totalSteps: 2, resume: true, warn: (w) => void warnings.push(w) });
    expect(result.steps).toBe(2);
    expect(warnings).toEqual([`--resume: no checkpoint under ${root}; starting from step 0`]);
    const diverging = { ...m.task, step: (batch: Batch, step: number) => ({ loss: step === 2 ? NaN : 1, batch: batch.id }) };
    await expect(train(diverging, { divergenceHint: 'lower optimizer.lr (now 0.05)' })).rejects.toThrow(
      'loss became NaN at step 3; lower optimizer.lr (now 0.05)',
    );
    m.dispose();
  });
});
