/**
 * The self-supervised method seam, read from solo-learn's method classes and lightly's small
 * pieces: a method says what it learns (`trainable`), what follows what by momentum
 * (`momentumPairs`, `momentum`), how one step computes and minimises its loss (`step`) and what a
 * checkpoint must hold to continue it (`state` / `restore`). The pretraining loop (pretrain.ts) does
 * the rest: the data stream of `viewsPerCrop` views, the optimizer and its schedule, the momentum
 * updates (`trainMethodStep`), checkpoints, the probe and the exported encoder bundle.
 *
 * A method is one file (mocov2.ts, byol.ts) and one line in the registry (methods.ts); its
 * hyper-parameters are one section of the config (config.ts).
 */
import type { Encoder } from '@emseg/models';
import type { Tensor, Tensor4D, Variable } from '@emseg/tf';
import type { Optimizer } from '@emseg/training';
import type { MocoConfig } from './config.js';
import { momentumUpdate } from './moco.js';

/** What one step returns. */
export interface MethodStepResult {
  /** The loss the optimizer minimised this step (computed before the update). */
  loss: number;
  /** What the method logs each step, by MLflow metric name (MoCo: pos_sim, neg_sim; BYOL: z_std). */
  metrics: Record<string, number>;
}

/**
 * Weights that follow other weights by momentum (solo-learn's `momentum_pairs`):
 * target <- m target + (1 - m) online, weight by weight, matched by name. Trainable weights only:
 * a target's BN running statistics come from its own forward passes, as in both references.
 */
export interface MomentumPair {
  online: Record<string, Variable>;
  target: Record<string, Variable>;
}

/** When and by how much the momentum pairs move. */
export interface MomentumSchedule {
  /** The momentum m (MoCo's m, BYOL's tau) of the update that belongs to step `step` (0-based). */
  at(step: number): number;
  /**
   * `before-step`: before the step's forward pass (MoCo: the key encoder is updated before the keys
   * are computed, builder.py); `after-step`: after the optimizer update (BYOL, solo-learn).
   */
  when: 'before-step' | 'after-step';
}

/** The JSON side of a method's checkpoint state (MoCo: `{ queuePtr }`). */
export type MethodJson = Record<string, number | string | boolean | null>;

/** A self-supervised pretraining method. */
export interface SslMethod {
  /** The registry name, also the run tag `emseg.method` and the bundle's `training.method`. */
  readonly name: string;
  /** Augmented views the data stream draws per crop (both MoCo and BYOL: 2). */
  readonly viewsPerCrop: number;
  /** The backbone fine-tuning reuses (MoCo: the query encoder; BYOL: the online encoder). */
  readonly encoder: Encoder;
  /** What the optimizer trains, by name (the names of the optimizer's slots in checkpoints). */
  readonly trainable: Record<string, Variable>;
  /** Which weights follow which by momentum (empty for a method without a momentum network). */
  readonly momentumPairs: readonly MomentumPair[];
  readonly momentum: MomentumSchedule;
  /**
   * One optimisation step on `views` (`viewsPerCrop` normalised batches [N, H, W, C] of the same
   * crops), at rate `lr`; `step` counts the steps before it (0-based). Frees what it allocates.
   * The momentum update is not part of it (`trainMethodStep` runs it).
   */
  step(views: readonly Tensor4D[], lr: number, step: number): MethodStepResult;
  /** Every tensor a checkpoint must hold (read, not disposed; both networks, BN statistics, queues) and the JSON state. */
  state(): { tensors: Record<string, Tensor>; json: MethodJson };
  /** Loads what `state()` returned from the checkpoint at `source` (the caller disposes `tensors`). */
  restore(tensors: Record<string, Tensor>, json: Readonly<Record<string, unknown>>, source: string): void;
  dispose(): void;
}

/** What a method is built from. */
export interface MethodContext {
  cfg: MocoConfig;
  /** Applies the gradients of `trainable` (the loop owns it and checkpoints its slots). */
  optimizer: Optimizer;
  /** Steps of the whole run (BYOL's tau schedule spans them). */
  totalSteps: number;
}

/** theta_target <- m theta_target + (1 - m) theta_online for every pair (lightly's `update_momentum`). */
export function updateMomentum(pairs: readonly MomentumPair[], m: number): void {
  for (const { online, target } of pairs) momentumUpdate(target, online, m);
}

/**
 * One step of `method` with its momentum update where the method wants it; what the loop calls.
 * Returns the step's result and the momentum used.
 */
export function trainMethodStep(method: SslMethod, views: readonly Tensor4D[], lr: number, step: number): MethodStepResult & { momentum: number } {
  if (views.length !== method.viewsPerCrop) throw new Error(`${method.name} takes ${method.viewsPerCrop} views per crop, got ${views.length}`);
  const m = method.momentum.at(step);
  if (method.momentum.when === 'before-step') updateMomentum(method.momentumPairs, m);
  const result = method.step(views, lr, step);
  if (method.momentum.when === 'after-step') updateMomentum(method.momentumPairs, m);
  return { ...result, momentum: m };
}

/**
 * BYOL's target decay rate (Grill et al. 2020, section 3.2): tau_k = 1 - (1 - base) (cos(pi k / K) + 1) / 2,
 * from `base` at step 0 to 1 at step K = `totalSteps` (solo-learn `MomentumUpdater`).
 */
export function cosineMomentum(base: number, totalSteps: number, final = 1): (step: number) => number {
  return (step) => final - ((final - base) * (Math.cos((Math.PI * Math.min(step, totalSteps)) / Math.max(totalSteps, 1)) + 1)) / 2;
}

/** `vars` with `<prefix>/` before each name. */
export function prefixed(prefix: string, vars: Record<string, Variable>): Record<string, Variable> {
  return Object.fromEntries(Object.entries(vars).map(([k, v]) => [`${prefix}/${k}`, v]));
}

/** Assigns `tensors[<prefix>/<name>]` to each variable; throws naming the first one `source` lacks. */
export function assignPrefixed(vars: Record<string, Variable>, tensors: Record<string, Tensor>, prefix: string, source: string): void {
  for (const [name, v] of Object.entries(vars)) {
    const t = tensors[`${prefix}/${name}`];
    if (!t) throw new Error(`checkpoint ${source} has no ${prefix}/${name}`);
    v.assign(t);
  }
}

/** Copies every variable of `from` into the same-named one of `to` (a momentum network's start). */
export function copyVariables(to: Record<string, Variable>, from: Record<string, Variable>): void {
  for (const [name, v] of Object.entries(to)) {
    const src = from[name];
    if (!src) throw new Error(`copyVariables: the source has no weight ${name}`);
    v.assign(src);
  }
}

/** The first-view / second-view pair, checked. */
export function twoViews(views: readonly Tensor4D[], method: string): [Tensor4D, Tensor4D] {
  if (views.length !== 2) throw new Error(`${method} takes 2 views, got ${views.length}`);
  return [views[0], views[1]];
}
