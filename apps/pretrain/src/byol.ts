/**
 * BYOL (Grill et al. 2020; solo-learn `solo/methods/byol.py`) as a method:
 *   - online network: encoder -> projector -> predictor, trained by the optimizer;
 *   - target network: encoder -> projector, an exponential moving average of the online one,
 *     tau rising from `byol.tauBase` to 1 over the run on a cosine (updated after each step);
 *   - loss: 2 - 2 cos(predictor(online(v1)), stopgrad(target(v2))), symmetrised over the two views
 *     (summed, as the paper and solo-learn do: 0 when aligned, 8 at worst). No negatives, no queue,
 *     so it works with small batches.
 * Projector and predictor are Linear -> BN -> ReLU -> Linear (projection-head.ts `bnMlpHead`). Each
 * view goes through each network as its own batch (its own BN statistics), as in solo-learn; the
 * target's BN layers normalise with batch statistics too and keep their own running statistics.
 *
 * Checkpoint content: tensors `online/{encoder,projector,predictor}/<weight>` and
 * `target/{encoder,projector}/<weight>` (every weight, BN statistics included); no JSON state.
 */
import { tf, type LayersModel, type Scalar, type Tensor, type Tensor2D, type Tensor4D, type Variable } from '@emseg/tf';
import { createEncoder, encoderSpec, modelVariables, trainableVariables, type Encoder } from '@emseg/models';
import { trainStep, type Optimizer } from '@emseg/training';
import { assignPrefixed, copyVariables, cosineMomentum, prefixed, twoViews } from './method.js';
import type { MethodContext, MethodJson, MethodStepResult, MomentumPair, MomentumSchedule, SslMethod } from './method.js';
import { normalizeRows } from './moco.js';
import { bnMlpHead } from './projection-head.js';

/** An encoder and its projector; the online network also has the predictor. */
interface Network {
  encoder: Encoder;
  projector: LayersModel;
}

/**
 * The BYOL regression loss of one direction: mean_i (2 - 2 p_i . z_i / (|p_i| |z_i|)).
 * p: predictions [N, D]; z: target projections [N, D] (any norm). Returns a scalar.
 */
export function byolLoss(p: Tensor2D, z: Tensor2D): Scalar {
  return tf.tidy(() => tf.scalar(2).sub(normalizeRows(p).mul(normalizeRows(z)).sum(1).mean().mul(2)) as Scalar);
}

/**
 * solo-learn's collapse indicator: the std over the batch of the L2-normalised projections,
 * averaged over dimensions and views (unbiased, as torch.std). About 1/sqrt(D) for spread
 * embeddings, 0 when every crop maps to the same point. zs: V tensors [N, D]. Returns a scalar.
 */
export function projectionStd(zs: readonly Tensor2D[]): Scalar {
  return tf.tidy(() => {
    const z = tf.stack(zs.map((x) => normalizeRows(x))); // [V, N, D]
    const n = z.shape[1]!;
    const centred = z.sub(z.mean(1, true));
    return centred
      .square()
      .sum(1)
      .div(Math.max(n - 1, 1))
      .sqrt()
      .mean() as Scalar;
  });
}

export class Byol implements SslMethod {
  readonly name = 'byol';
  readonly viewsPerCrop = 2;
  readonly online: Network & { predictor: LayersModel };
  readonly target: Network;
  /** The online network's trainable weights: `encoder/...`, `projector/...`, `predictor/...`. */
  readonly trainable: Record<string, Variable>;
  /** online encoder + projector -> target encoder + projector (the predictor has no target twin). */
  readonly momentumPairs: readonly MomentumPair[];
  readonly momentum: MomentumSchedule;
  private readonly optimizer: Optimizer;

  constructor({ cfg, optimizer, totalSteps }: MethodContext) {
    this.optimizer = optimizer;
    const { byol } = cfg;
    const channels = encoderSpec(cfg.encoder.architecture).featureChannels;
    const features = channels[channels.length - 1];
    const seed = cfg.train.seed * 7919;
    const projector = () => bnMlpHead({ name: 'projector', inFeatures: features, hidden: byol.projectorHidden, dim: byol.dim, seed: seed + 17 });
    const encoder = (initialize: boolean) => createEncoder(cfg.encoder.architecture, { inChannels: cfg.encoder.inChannels, seed: cfg.train.seed, initialize });
    this.online = {
      encoder: encoder(true),
      projector: projector(),
      predictor: bnMlpHead({ name: 'predictor', inFeatures: byol.dim, hidden: byol.predictorHidden, dim: byol.dim, seed: seed + 29 }),
    };
    // The target starts as an exact copy of the online encoder and projector.
    this.target = { encoder: encoder(false), projector: projector() };
    copyVariables(networkVariables(this.target), networkVariables(this.online));
    this.trainable = { ...trainableOf(this.online), ...prefixed('predictor', trainableVariables(this.online.predictor)) };
    this.momentumPairs = [{ online: trainableOf(this.online), target: trainableOf(this.target) }];
    this.momentum = { at: cosineMomentum(byol.tauBase, totalSteps), when: 'after-step' };
  }

  get encoder(): Encoder {
    return this.online.encoder;
  }

  /** Projections [N, dim] of a batch [N, H, W, C] (BN with batch statistics). */
  private project(net: Network, x: Tensor4D): Tensor2D {
    return tf.tidy(() => net.projector.apply(net.encoder.pooled(x, { training: true }), { training: true }) as Tensor2D);
  }

  /**
   * One BYOL step on two views (both [N, H, W, C], normalised): target projections of both views
   * (outside the gradient tape: stop-gradient), then online projections and predictions, the
   * symmetrised loss, and the optimizer on the online network. Logs z_std (`projectionStd` of the
   * online projections).
   */
  step(views: readonly Tensor4D[], lr: number): MethodStepResult {
    twoViews(views, this.name);
    const targets = tf.tidy(() => views.map((v) => normalizeRows(this.project(this.target, v))));
    const out: { zStd?: Tensor } = {};
    try {
      const loss = trainStep(
        this.trainable,
        () => {
          const z = views.map((v) => this.project(this.online, v));
          const p = z.map((zi) => this.online.predictor.apply(zi, { training: true }) as Tensor2D);
          out.zStd = tf.keep(projectionStd(z));
          return byolLoss(p[0], targets[1]).add(byolLoss(p[1], targets[0]));
        },
        this.optimizer,
        lr,
      );
      return { loss, metrics: { z_std: out.zStd!.dataSync()[0] } };
    } finally {
      tf.dispose([...targets, ...(out.zStd ? [out.zStd] : [])]);
    }
  }

  state(): { tensors: Record<string, Tensor>; json: MethodJson } {
    return {
      tensors: {
        ...prefixed('online', networkVariables(this.online)),
        ...prefixed('online/predictor', modelVariables(this.online.predictor)),
        ...prefixed('target', networkVariables(this.target)),
      },
      json: {},
    };
  }

  restore(tensors: Record<string, Tensor>, _json: Readonly<Record<string, unknown>>, source: string): void {
    assignPrefixed(networkVariables(this.online), tensors, 'online', source);
    assignPrefixed(modelVariables(this.online.predictor), tensors, 'online/predictor', source);
    assignPrefixed(networkVariables(this.target), tensors, 'target', source);
  }

  dispose(): void {
    for (const net of [this.online, this.target]) {
      net.encoder.dispose();
      net.projector.dispose();
    }
    this.online.predictor.dispose();
  }
}

/** Every weight (BN statistics included) of an encoder + projector, `encoder/...`, `projector/...`. */
function networkVariables(net: Network): Record<string, Variable> {
  return { ...prefixed('encoder', modelVariables(net.encoder.model)), ...prefixed('projector', modelVariables(net.projector)) };
}

/** Trainable weights of an encoder + projector. */
function trainableOf(net: Network): Record<string, Variable> {
  return { ...prefixed('encoder', trainableVariables(net.encoder.model)), ...prefixed('projector', trainableVariables(net.projector)) };
}
