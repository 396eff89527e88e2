/**
 * The MoCo v2 model (facebookresearch/moco `builder.py` in TensorFlow.js): a query network
 * (encoder + projection head) trained by SGD, a key network following it by momentum, and
 * the queue of negative keys.
 */
import { tf, type Tensor, type Tensor2D, type Tensor4D, type Variable } from '@emseg/tf';
import { createEncoder, encoderSpec, globalAveragePool, modelVariables, trainableVariables, type Encoder } from '@emseg/models';
import { trainStep, type Optimizer } from '@emseg/training';
import { KeyQueue, infoNceLogits, infoNceLoss, momentumUpdate, normalizeRows, shuffledKeyForward } from './moco.js';
import { projectionHead } from './projection-head.js';
import type { MocoConfig } from './config.js';

type LayersModel = ReturnType<typeof tf.model>;

export interface MocoStepResult {
  loss: number;
  /** Mean cosine similarity of each query with its positive key. */
  posSim: number;
  /** Mean cosine similarity of queries with the queued negatives. */
  negSim: number;
}

interface Branch {
  encoder: Encoder;
  head: LayersModel;
}

export class MocoModel {
  readonly query: Branch;
  readonly key: Branch;
  readonly queue: KeyQueue;
  /** Trainable weights of each branch by name (MoCo never changes what trains). */
  private readonly queryWeights: Record<string, Variable>;
  private readonly keyWeights: Record<string, Variable>;

  constructor(readonly cfg: MocoConfig) {
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
    const q = this.allVariables(this.query);
    for (const [name, k] of Object.entries(this.allVariables(this.key))) k.assign(q[name]);
    this.queue = new KeyQueue(cfg.moco.queueSize, cfg.moco.dim, cfg.train.seed + 1);
    this.queryWeights = this.trainable(this.query);
    this.keyWeights = this.trainable(this.key);
  }

  /** Trainable weights of a branch, `encoder/<layer>/<weight>` and `head/...`. */
  private trainable(branch: Branch): Record<string, Variable> {
    return { ...prefixed('encoder', trainableVariables(branch.encoder.model)), ...prefixed('head', trainableVariables(branch.head)) };
  }

  /** Every weight (BN statistics included) of a branch. */
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
   * One MoCo step on two views of the same crops (both [N, H, W, C], normalised):
   * momentum-update the key network, compute keys with shuffle-BN, then queries, InfoNCE, SGD
   * on the query network, and enqueue the keys.
   */
  step(viewQ: Tensor4D, viewK: Tensor4D, optimizer: Optimizer, lr: number, shuffleSeed: number): MocoStepResult {
    const { moco } = this.cfg;
    momentumUpdate(this.keyWeights, this.queryWeights, moco.momentum);
    const k = shuffledKeyForward((x) => this.embed(this.key, x, moco.shuffleGroups), viewK, shuffleSeed);
    const out: { sims?: Tensor } = {};
    try {
      const loss = trainStep(
        this.queryWeights,
        () => {
          const q = this.embed(this.query, viewQ);
          const logits = infoNceLogits(q, k, this.queue.keys as Tensor2D, moco.temperature);
          out.sims = tf.keep(tf.stack([logits.slice([0, 0], [-1, 1]).mean(), logits.slice([0, 1], [-1, -1]).mean()]).mul(moco.temperature));
          return infoNceLoss(logits) as ReturnType<typeof tf.scalar>;
        },
        optimizer,
        lr,
      );
      this.queue.enqueue(k);
      const [posSim, negSim] = Array.from(out.sims!.dataSync());
      return { loss, posSim, negSim };
    } finally {
      tf.dispose([k, ...(out.sims ? [out.sims] : [])]);
    }
  }

  dispose(): void {
    for (const b of [this.query, this.key]) {
      b.encoder.dispose();
      b.head.dispose();
    }
    this.queue.dispose();
  }
}

function prefixed(prefix: string, vars: Record<string, Variable>): Record<string, Variable> {
  return Object.fromEntries(Object.entries(vars).map(([k, v]) => [`${prefix}/${k}`, v]));
}
