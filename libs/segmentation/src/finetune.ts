/**
 * The U-Net fine-tuning loop: labelled patches -> focal + dice steps -> periodic full-image
 * validation scored by the task (U-RISC: its official F1) -> the best model kept, checkpoints for
 * resume. Tracking-agnostic: progress, metrics and files go to a `FinetuneListener` (the app wires MLflow).
 * The loop itself (schedule, resume, checkpoints, best tracking, stop) is `runTraining`; this file
 * supplies the U-Net step, the checkpoint state and the validation.
 *
 * Determinism: the batch at step s is fixed by (train.seed, s) (patch positions and augmentation
 * are seeded per epoch and position), so a resumed run sees the same batches as an uninterrupted one.
 */
import { join } from 'node:path';
import { tf, type Tensor } from '@emseg/tf';
import { maskBatchToTensor, patchBatches, patchGrid, URISC_AUGMENTATION, type LabeledImages, type LabeledSample, type PatchBatch } from '@emseg/data';
import { segmentationLoss, trainableVariables, type EncoderFreeze, type SegmentationLossSpec } from '@emseg/models';
import {
  Adam,
  constantSchedule,
  cosineSchedule,
  latestCheckpoint,
  oneCycleSchedule,
  runTraining,
  stepSchedule,
  trainStep,
  type Best,
  type Checkpoint,
  type LoopListener,
  type LrSchedule,
  type TrainingTask,
} from '@emseg/training';
import type { SegmentationConfig } from './config.js';
import { evaluateSegmenter, type Evaluation } from './evaluate.js';
import type { InferenceOptions } from './inference.js';
import type { Segmenter, SegmenterInfo } from './segmenter.js';
import type { SegmentationTask } from './task.js';

export interface StepMetrics {
  loss: number;
  lr: number;
  /** Wall time of the step, data preparation included. */
  stepMs: number;
  /** Of which preparing the batch (patch cutting, augmentation). */
  dataMs: number;
  epoch: number;
  frozen: EncoderFreeze;
}

export interface FinetuneListener extends LoopListener<{ trainImages: number; validationImages: number; batchesPerEpoch: number }, StepMetrics> {
  /** After each validation; `best` tells whether it is the best so far (and was saved). */
  evaluation?(step: number, evaluation: Evaluation, best: boolean): void | Promise<void>;
  /** Things the user should know (unfreezing, ...). */
  note?(message: string): void;
}

export interface FinetuneOptions {
  cfg: SegmentationConfig;
  /** What validation checks and scores (see SegmentationTask). */
  task: SegmentationTask;
  /** The model to train (owned by the caller, who disposes it). */
  segmenter: Segmenter;
  /** Decoded training images with masks (see loadTrainingSamples). */
  train: readonly LabeledSample[];
  /** Validation images, predicted whole every validation.every steps; null = no validation. */
  validation: LabeledImages | null;
  /** Run directory: checkpoints/, best/ and overlays/ go here. */
  outDir: string;
  /** Continue from the newest checkpoint in outDir/checkpoints. */
  resume?: boolean;
  /** Checked after every step (a GracefulStop): save, then return KILLED. */
  stop?: { readonly requested: boolean };
  listener?: FinetuneListener;
  mlflowRunId?: string | null;
}

/**
 * What best-model selection compares: the task's score at the chosen threshold (Evaluation.chosen),
 * then the threshold-sweep F1; `threshold` is the one the model was saved with. Checkpoints written
 * before tasks had a metric hold no `score`: their `f1` was the score.
 */
interface BestScore {
  score?: number;
  f1: number;
  bestF1: number;
  threshold?: number;
}

/** The best validated model so far. */
export type BestModel = Best<BestScore>;

export interface FinetuneResult {
  status: 'FINISHED' | 'KILLED';
  steps: number;
  totalSteps: number;
  lastLoss: number | null;
  /** The best validated model (or the final one when nothing was validated). */
  modelDir: string;
  /** The weights at the last step, kept beside the best model (`<out>/final/step-<n>`). */
  finalModelDir: string;
  best: BestModel | null;
  lastEvaluation: Evaluation | null;
  checkpointDir: string;
}

/**
 * The state of a training checkpoint. `model` describes the weights stored as `model/<name>`, so
 * `predict` can load any checkpoint as a model (see Segmenter.load).
 */
interface CheckpointState {
  step: number;
  optimizerIterations: number;
  architecture: string;
  best: BestModel | null;
  model: SegmenterInfo;
}

/** The tiling part of the inference section. */
export function inferenceOptions(i: SegmentationConfig['inference']): InferenceOptions {
  return { tileSize: i.tileSize, overlap: i.overlap, window: i.window, batchSize: i.batchSize, flipTta: i.flipTta };
}

/** The learning rate at each step, from the optimizer section. */
export function learningRateSchedule(o: SegmentationConfig['optimizer'], totalSteps: number): LrSchedule {
  switch (o.schedule) {
    case 'constant':
      return o.warmupSteps > 0 ? stepSchedule(o.lr, [], 1, { warmupSteps: o.warmupSteps }) : constantSchedule(o.lr);
    case 'cosine':
      return cosineSchedule(o.lr, totalSteps, { warmupSteps: o.warmupSteps });
    case 'one-cycle':
      return oneCycleSchedule(o.lr, totalSteps);
  }
}

function lossSpec(l: SegmentationConfig['loss'], classes: number): SegmentationLossSpec {
  if ((l.kind === 'ce-dice') !== classes > 1) {
    throw new Error(
      classes > 1
        ? `loss.kind "${l.kind}" is a binary loss but the model has ${classes} classes; use loss.kind "ce-dice" (softmax cross-entropy + Dice)`
        : `loss.kind "ce-dice" needs a multi-class model (data.classes), but this one has 1 output; use "focal-dice" or "bce"`,
    );
  }
  if (l.kind === 'ce-dice') return { kind: 'ce-dice', lambda: l.lambda };
  return l.kind === 'bce' ? { kind: 'bce' } : { kind: 'focal-dice', gamma: l.gamma, alpha: l.alpha, lambda: l.lambda };
}

/** Batches per epoch: every grid patch once (grid), or patches.perEpoch patches (random). */
export function batchesPerEpoch(samples: readonly LabeledSample[], p: SegmentationConfig['patches'], batchSize: number): number {
  const grid = samples.reduce((n, s) => n + patchGrid(s.image.width, s.image.height, { size: p.size, stride: p.stride }).length, 0);
  const patches = p.sampling === 'random' ? (p.perEpoch ?? grid) : grid;
  const batches = Math.floor(patches / batchSize);
  if (batches === 0) {
    throw new Error(`one epoch has ${patches} patch(es), fewer than train.batchSize (${batchSize}): raise patches.perEpoch or add images`);
  }
  return batches;
}

/** The encoder freezing in force at `step`. */
function freezingAt(cfg: SegmentationConfig, step: number): EncoderFreeze {
  const { freezeEncoder, unfreezeAfter } = cfg.model;
  return unfreezeAfter !== null && step >= unfreezeAfter ? 'none' : freezeEncoder;
}

/** Is `e` better than the best so far? The task's score at the chosen threshold first, the threshold-sweep F1 breaks ties (e.g. both rejected). */
function improves(e: Evaluation, best: BestModel | null): boolean {
  if (best === null) return true;
  const bestScore = best.score ?? best.f1;
  return e.chosen.score > bestScore || (e.chosen.score === bestScore && e.bestF1 > best.bestF1);
}

export async function finetune(opts: FinetuneOptions): Promise<FinetuneResult> {
  const { cfg, segmenter, outDir, validation } = opts;
  const totalSteps = cfg.train.steps;
  const ckptRoot = join(outDir, 'checkpoints');
  const bestRoot = join(outDir, 'best');
  const finalRoot = join(outDir, 'final');
  const lrAt = learningRateSchedule(cfg.optimizer, totalSteps);
  const loss = segmentationLoss(lossSpec(cfg.loss, segmenter.classes));
  const perEpoch = batchesPerEpoch(opts.train, cfg.patches, cfg.train.batchSize);
  const optimizer = new Adam(0.9, 0.999, 1e-8, cfg.optimizer.kind === 'adamw' ? cfg.optimizer.weightDecay : 0);
  const inference = cfg.inference;
  // A model is saved with the threshold validation chose for it (inference.threshold if not validated).
  const info = (step: number, chosen: { score: number; f1: number; threshold: number } | null) =>
    segmenter.info({
      threshold: chosen?.threshold ?? inference.threshold,
      inference: inferenceOptions(inference),
      step,
      valF1: chosen?.f1 ?? null,
      mlflowRunId: opts.mlflowRunId ?? null,
      task: opts.task.name,
      metric: opts.task.metric,
      valScore: chosen?.score ?? null,
    });

  let frozen: EncoderFreeze = cfg.model.freezeEncoder;
  let lastEvaluation: Evaluation | null = null;
  let lastEvaluatedStep = -1;
  // The validation of the current weights (chosen threshold and its F1), if they were validated at this step.
  const validated = (step: number) => (lastEvaluatedStep === step ? (lastEvaluation?.chosen ?? null) : null);

  const task: TrainingTask<PatchBatch, { loss: number; lr: number; frozen: EncoderFreeze }, CheckpointState, BestScore> = {
    batches: (epoch) =>
      patchBatches(opts.train, {
        mode: cfg.patches.sampling,
        size: cfg.patches.size,
        stride: cfg.patches.stride,
        batchSize: cfg.train.batchSize,
        seed: cfg.train.seed,
        epoch,
        patchesPerEpoch: cfg.patches.sampling === 'random' ? perEpoch * cfg.train.batchSize : undefined,
        foregroundProbability: cfg.patches.sampling === 'random' ? cfg.patches.foregroundProbability : undefined,
        augmentation: cfg.patches.augmentation === 'urisc' ? URISC_AUGMENTATION : undefined,
      }),
    start: async (startStep) => {
      frozen = freezingAt(cfg, startStep);
      segmenter.net.freezeEncoder(frozen);
      await opts.listener?.start?.({
        trainImages: opts.train.length,
        validationImages: validation?.size ?? 0,
        batchesPerEpoch: perEpoch,
        totalSteps,
        startStep,
      });
    },
    step: (batch, step) => {
      if (freezingAt(cfg, step) !== frozen) {
        frozen = freezingAt(cfg, step);
        segmenter.net.freezeEncoder(frozen);
        opts.listener?.note?.(`step ${step}: encoder unfrozen (model.unfreezeAfter = ${cfg.model.unfreezeAfter})`);
      }
      const lr = lrAt(step);
      return { loss: trainOnBatch(segmenter, batch, loss, optimizer, lr), lr, frozen };
    },
    state: ({ step, best }) => {
      const tensors: Record<string, Tensor> = {};
      for (const [name, v] of Object.entries(segmenter.variables())) tensors[`model/${name}`] = v;
      for (const [name, t] of Object.entries(optimizer.state().slots)) tensors[`optimizer/${name}`] = t;
      return {
        tensors,
        state: { step, optimizerIterations: optimizer.iterations, architecture: segmenter.architecture, best, model: info(step, validated(step)) },
      };
    },
    restore: (ck) => restore(segmenter, optimizer, ck, cfg),
    evaluate:
      validation && validation.size > 0
        ? async (step, best) => {
            const overlayCount = cfg.validation.overlays;
            const evaluation = await evaluateSegmenter(segmenter, validation, {
              task: opts.task,
              inference: inferenceOptions(inference),
              threshold: inference.threshold,
              candidates: cfg.validation.thresholds,
              overlays:
                overlayCount > 0
                  ? { count: overlayCount, size: cfg.validation.overlaySize, dir: join(outDir, 'overlays', `step-${String(step).padStart(6, '0')}`) }
                  : undefined,
            });
            lastEvaluation = evaluation;
            lastEvaluatedStep = step;
            const better = improves(evaluation, best);
            const { chosen } = evaluation;
            if (better) await segmenter.save(bestRoot, info(step, chosen));
            await opts.listener?.evaluation?.(step, evaluation, better);
            return { score: { score: chosen.score, f1: chosen.f1, bestF1: evaluation.bestF1, threshold: chosen.threshold }, better };
          }
        : undefined,
  };

  try {
    const run = await runTraining({
      task,
      totalSteps,
      stepsPerEpoch: perEpoch,
      checkpointRoot: ckptRoot,
      checkpointEvery: cfg.train.checkpointEvery,
      evaluateEvery: cfg.validation.every,
      resume: opts.resume,
      stop: opts.stop,
      divergenceHint: `lower optimizer.lr (now ${cfg.optimizer.lr})`,
      listener: {
        step: (step, m, t) => opts.listener?.step?.(step, { loss: m.loss, lr: m.lr, stepMs: t.stepMs, dataMs: t.dataMs, epoch: t.epoch, frozen: m.frozen }),
        checkpoint: opts.listener?.checkpoint,
      },
    });
    const finalInfo = info(run.steps, validated(run.steps));
    const finalModelDir = await segmenter.save(finalRoot, finalInfo);
    // Nothing validated (no validation images, or stopped first): the current weights are the model.
    if (latestCheckpoint(bestRoot) === null) await segmenter.save(bestRoot, finalInfo);
    return {
      status: run.status,
      steps: run.steps,
      totalSteps,
      lastLoss: run.lastMetrics?.loss ?? null,
      modelDir: latestCheckpoint(bestRoot) as string,
      finalModelDir,
      best: run.best,
      lastEvaluation,
      checkpointDir: ckptRoot,
    };
  } finally {
    optimizer.dispose();
  }
}

/** One optimisation step on a batch of patches; returns the loss. */
function trainOnBatch(segmenter: Segmenter, batch: PatchBatch, loss: ReturnType<typeof segmentationLoss>, optimizer: Adam, lr: number): number {
  const { size, height, width, data } = batch.images;
  const x = tf.tensor4d(data, [size, height, width, 1]);
  const y = maskBatchToTensor(batch.masks, segmenter.classes);
  try {
    return trainStep(trainableVariables(segmenter.net.model), () => loss(segmenter.forward(x, true), y), optimizer, lr);
  } finally {
    tf.dispose([x, y]);
  }
}

/** Loads a checkpoint (the runner found, and disposes) into the model and optimizer. */
function restore(segmenter: Segmenter, optimizer: Adam, ck: Checkpoint<CheckpointState>, cfg: SegmentationConfig): void {
  const { dir } = ck;
  if (ck.state.architecture !== segmenter.architecture) {
    throw new Error(
      `checkpoint ${dir} is a ${ck.state.architecture} U-Net, but this run builds a ${segmenter.architecture} one (model.architecture / --encoder must match the interrupted run)`,
    );
  }
  for (const [name, v] of Object.entries(segmenter.variables())) {
    const t = ck.tensors[`model/${name}`];
    if (!t) throw new Error(`checkpoint ${dir} has no weight model/${name}; was it written with other model.decoderChannels?`);
    if (!tf.util.arraysEqual(t.shape, v.shape)) throw new Error(`checkpoint ${dir}: model/${name} has shape [${t.shape}], the model expects [${v.shape}]`);
    v.assign(t);
  }
  const slots = Object.fromEntries(
    Object.entries(ck.tensors)
      .filter(([k]) => k.startsWith('optimizer/'))
      .map(([k, t]) => [k.slice('optimizer/'.length), t]),
  );
  optimizer.restore({ iterations: ck.state.optimizerIterations, slots });
  if (ck.step > cfg.train.steps) process.stderr.write(`--resume: checkpoint step ${ck.step} is past train.steps ${cfg.train.steps}; nothing left to train\n`);
}
