/**
 * MoCo v2 (He et al. 2020; Chen et al. 2020), the pieces of facebookresearch/moco `builder.py` as
 * small functions over TensorFlow.js tensors:
 *   - `momentumUpdate`: theta_k <- m * theta_k + (1 - m) * theta_q, for trainable parameters only
 *     (the key encoder's BN statistics come from its own forward passes, as in the reference);
 *   - `KeyQueue`: a FIFO queue of K L2-normalised keys, overwritten at a pointer;
 *   - `infoNceLogits` / `infoNceLoss`: logits [q.k+, q.queue] / T with the positive at index 0;
 *   - `shuffledKeyForward`: single-device "shuffle BN": the key batch is permuted and normalised in
 *     sub-batches, so BN statistics cannot leak which key belongs to which query.
 */
import { Rng } from '@emseg/data';
import { tf, type Tensor, type Tensor2D, type Tensor4D, type Variable } from '@emseg/tf';

/**
 * theta_k <- m theta_k + (1 - m) theta_q for every trainable query weight, matched by name
 * (the key network has the same architecture and therefore the same weight names).
 */
export function momentumUpdate(keyWeights: Record<string, Variable>, queryWeights: Record<string, Variable>, m: number): void {
  const missing = Object.keys(queryWeights).filter((name) => !(name in keyWeights));
  if (missing.length) throw new Error(`momentum update: the key network has no weight ${missing.slice(0, 3).join(', ')}`);
  tf.tidy(() => {
    for (const [name, q] of Object.entries(queryWeights)) {
      const k = keyWeights[name];
      k.assign(k.mul(m).add(q.mul(1 - m)));
    }
  });
}

/** The FIFO dictionary of negative keys. K must be a multiple of the batch size (as in the reference). */
export class KeyQueue {
  readonly keys: Variable;
  ptr = 0;

  /** Starts as K random unit vectors of dimension `dim` (seeded). */
  constructor(
    readonly size: number,
    readonly dim: number,
    seed = 0,
  ) {
    const init = tf.tidy(() => normalizeRows(tf.randomNormal([size, dim], 0, 1, 'float32', seed)));
    this.keys = tf.variable(init, false);
    init.dispose();
  }

  /** Overwrites rows ptr..ptr+N with `k` [N, dim] and advances the pointer modulo K. */
  enqueue(k: Tensor2D): void {
    const n = k.shape[0];
    if (this.size % n !== 0) throw new Error(`queue size ${this.size} is not a multiple of the batch size ${n}`);
    const ptr = this.ptr;
    tf.tidy(() => {
      const parts: Tensor[] = [];
      if (ptr > 0) parts.push(this.keys.slice([0, 0], [ptr, this.dim]));
      parts.push(k);
      if (ptr + n < this.size) parts.push(this.keys.slice([ptr + n, 0], [this.size - ptr - n, this.dim]));
      this.keys.assign(tf.concat(parts, 0));
    });
    this.ptr = (ptr + n) % this.size;
  }

  /** Replaces the contents (resume). */
  load(keys: Tensor, ptr: number): void {
    if (keys.shape[0] !== this.size || keys.shape[1] !== this.dim) {
      throw new Error(`checkpoint queue has shape [${keys.shape}], expected [${this.size}, ${this.dim}]`);
    }
    this.keys.assign(keys);
    this.ptr = ptr;
  }

  dispose(): void {
    this.keys.dispose();
  }
}

/**
 * Logits of InfoNCE: [N, 1 + K] = [q.k+ , q.queue^T] / T. q, k: [N, D] unit rows; queue: [K, D].
 */
export function infoNceLogits(q: Tensor2D, k: Tensor2D, queue: Tensor2D, temperature: number): Tensor2D {
  return tf.tidy(() => {
    const pos = q.mul(k).sum(1, true);
    const neg = tf.matMul(q, queue, false, true);
    return tf.concat([pos, neg], 1).div(temperature) as Tensor2D;
  });
}

/** Cross-entropy with the positive at index 0, averaged over the batch. */
export function infoNceLoss(logits: Tensor2D): Tensor {
  return tf.tidy(() => tf.logSoftmax(logits).slice([0, 0], [-1, 1]).mean().neg());
}

/** L2-normalises rows. */
export function normalizeRows(x: Tensor2D): Tensor2D {
  return tf.tidy(() => x.div(x.norm('euclidean', 1, true).maximum(1e-12)) as Tensor2D);
}

/** The key order of shuffle-BN for `seed`: a seeded permutation of 0..n-1 (`Rng.permutation`). */
export function permutation(n: number, seed: number): number[] {
  return Array.from(new Rng(seed).permutation(n));
}

/**
 * Keys for a batch with single-device shuffle-BN: permute x [N,H,W,C], run `forward` (which
 * normalises its batch in sub-batches, e.g. `bnSubBatches`), and undo the permutation, so that the
 * BN statistics a key sees come from a random subset of the batch rather than from its own query's
 * sub-batch. Returns `forward`'s rows in the original order.
 */
export function shuffledKeyForward(forward: (shuffled: Tensor4D) => Tensor2D, x: Tensor4D, seed: number): Tensor2D {
  const n = x.shape[0];
  const perm = permutation(n, seed);
  const inverse = new Array<number>(n);
  perm.forEach((p, i) => (inverse[p] = i));
  return tf.tidy(() => tf.gather(forward(tf.gather(x, perm)), inverse) as Tensor2D);
}
