/**
 * MoCo v2 as a method (facebookresearch/moco `builder.py` in TensorFlow.js): a query network
 * (encoder + projection head) trained by SGD, a key network following it by momentum m (updated
 * before the keys are computed), and the queue of negative keys. The pieces are in moco.ts.
 *
 * Checkpoint content (unchanged since before the method seam): tensors `queue`, `query/<weight>`,
 * `key/<weight>` (every weight, BN statistics included); JSON `queuePtr`.
 */
import { tf, type LayersModel, type Tensor, type Tensor2D, type Tensor4D, type Variable } from '@emseg/tf';
import { createEncoder, encoderSpec, globalAveragePool, modelVariables, trainableVariables, type Encoder } from '@emseg/models';
import { trainStep, type Optimizer } from '@emseg/training';
import type { MocoConfig } from './config.js';
import { assignPrefixed, copyVariables, prefixed, twoViews } from './method.js';
import type { MethodContext, MethodJson, MethodStepResult, MomentumPair, MomentumSchedule, SslMethod } from './method.js';
import { KeyQueue, infoNceLogits, infoNceLoss, normalizeRows, shuffledKeyForward } from './moco.js';
import { projectionHead } from './projection-head.js';
import { queueSizeOf } from './queue-fit.js';

/** One of MoCo's two networks. */
interface Branch {
  encoder: Encoder;
  head: LayersModel;
}

export class MocoV2 implements SslMethod {
  readonly name = 'mocov2';
  readonly viewsPerCrop = 2;
  readonly query: Branch;
  readonly key: Branch;
  readonly queue: KeyQueue;
  /** The query network's trainable weights, `encoder/<layer>/<weight>` and `head/...`. */
  readonly trainable: Record<string, Variable>;
  readonly momentumPairs: readonly MomentumPair[];
  readonly momentum: MomentumSchedule;
  private readonly cfg: MocoConfig;
  private readonly optimizer: Optimizer;

  constructor({ cfg, optimizer }: MethodContext) {
    this.cfg = cfg;
    this.optimizer = optimizer;
    const channels = encoderSpec(cfg.encoder.architecture).featureChannels;
    const features = channels[channels.length - 1];
    const headArgs = { inFeatures: features, hidden: cfg.moco.mlpHidden ?? features, dim: cfg.moco.dim, seed: cfg.train.seed * 7919 + 17 };
    const branch = (): Branch => ({
      encoder: createEncoder(cfg.encoder.architecture, { inChannels: cfg.encoder.inChannels, seed: cfg.train.seed }),
      head: projectionHead(headArgs),
    });
    this.query = branch();
    this.key = branch();
    // The key network starts as an exact copy of the query network and is never trained by SGD.
    copyVariables(this.allVariables(this.key), this.allVariables(this.query));
    this.queue = new KeyQueue(queueSizeOf(cfg), cfg.moco.dim, cfg.train.seed + 1);
    this.trainable = trainableOf(this.query);
    // MoCo never changes what trains, so the pairs are fixed once.
    this.momentumPairs = [{ online: this.trainable, target: trainableOf(this.key) }];
    this.momentum = { at: () => cfg.moco.momentum, when: 'before-step' };
  }

  get encoder(): Encoder {
    return this.query.encoder;
  }

  /** Every weight (BN statistics included) of a branch, `encoder/...` and `head/...`. */
  allVariables(branch: Branch): Record<string, Variable> {
    return { ...prefixed('encoder', modelVariables(branch.encoder.model)), ...prefixed('head', modelVariables(branch.head)) };
  }

  /** Unit-norm embeddings [N, dim] of a batch [N, H, W, C]. */
  private embed(branch: Branch, x: Tensor4D, bnSubBatches = 1): Tensor2D {
    return tf.tidy(() => {
      const maps = branch.encoder.features(x, { training: true, bnSubBatches });
      return normalizeRows(branch.head.apply(globalAveragePool(maps[maps.length - 1])) as Tensor2D);
    });
  }

  /**
   * One MoCo step on two views of the same crops (both [N, H, W, C], normalised), the key network
   * already momentum-updated: keys with shuffle-BN (seeded by train.seed and `step`), then
   * queries, InfoNCE, SGD on the query network, and enqueue the keys.
   * Logs pos_sim / neg_sim: the mean cosine similarity of each query with its positive key / with
   * the queued negatives.
   */
  step(views: readonly Tensor4D[], lr: number, step: number): MethodStepResult {
    const { moco } = this.cfg;
    const [viewQ, viewK] = twoViews(views, this.name);
    const k = shuffledKeyForward((x) => this.embed(this.key, x, moco.shuffleGroups), viewK, this.cfg.train.seed * 1_000_003 + step);
    const out: { sims?: Tensor } = {};
    try {
      const loss = trainStep(
        this.trainable,
        () => {
          const q = this.embed(this.query, viewQ);
          const logits = infoNceLogits(q, k, this.queue.keys as Tensor2D, moco.temperature);
          out.sims = tf.keep(tf.stack([logits.slice([0, 0], [-1, 1]).mean(), logits.slice([0, 1], [-1, -1]).mean()]).mul(moco.temperature));
          return infoNceLoss(logits) as ReturnType<typeof tf.scalar>;
        },
        this.optimizer,
        lr,
      );
      this.queue.enqueue(k);
      const [posSim, negSim] = Array.from(out.sims!.dataSync());
      return { loss, metrics: { pos_sim: posSim, neg_sim: negSim } };
    } finally {
      tf.dispose([k, ...(out.sims ? [out.sims] : [])]);
    }
  }

  state(): { tensors: Record<string, Tensor>; json: MethodJson } {
    return {
      tensors: { queue: this.queue.keys, ...prefixed('query', this.allVariables(this.query)), ...prefixed('key', this.allVariables(this.key)) },
      json: { queuePtr: this.queue.ptr },
    };
  }

  restore(tensors: Record<string, Tensor>, json: Readonly<Record<string, unknown>>, source: string): void {
    assignPrefixed(this.allVariables(this.query), tensors, 'query', source);
    assignPrefixed(this.allVariables(this.key), tensors, 'key', source);
    if (!tensors.queue || typeof json.queuePtr !== 'number') throw new Error(`checkpoint ${source} has no MoCo queue (queue, queuePtr)`);
    this.queue.load(tensors.queue, json.queuePtr);
  }

  dispose(): void {
    for (const b of [this.query, this.key]) {
      b.encoder.dispose();
      b.head.dispose();
    }
    this.queue.dispose();
  }
}

/** Trainable weights of a branch, `encoder/<layer>/<weight>` and `head/...`. */
function trainableOf(branch: Branch): Record<string, Variable> {
  return { ...prefixed('encoder', trainableVariables(branch.encoder.model)), ...prefixed('head', trainableVariables(branch.head)) };
}
