import { tf, type Tensor, type Variable } from '@emseg/tf';

/** A named set of trainable variables and their gradients. */
export type NamedVariables = Record<string, Variable>;
export type NamedTensors = Record<string, Tensor>;

/**
 * A first-order optimizer whose state is keyed by variable name (not by position), so a checkpoint
 * restores into a freshly built model exactly. `apply` consumes the gradients (it does not dispose
 * them: the caller owns them) and takes the learning rate per step, so schedules are plain functions.
 */
export interface Optimizer {
  readonly kind: string;
  /** Number of updates applied so far. */
  readonly iterations: number;
  apply(vars: NamedVariables, grads: NamedTensors, lr: number): void;
  /** Slot tensors by `<variable>/<slot>` plus the iteration count, for checkpoints. */
  state(): { iterations: number; slots: NamedTensors };
  /** Restores what `state()` returned; copies the tensors. */
  restore(state: { iterations: number; slots: NamedTensors }): void;
  dispose(): void;
}

/** A non-trainable variable that takes over `t` (disposed here; the variable keeps its data). */
function ownedVariable(t: Tensor): Variable {
  const v = tf.variable(t, false);
  t.dispose();
  return v;
}

abstract class SlotOptimizer implements Optimizer {
  abstract readonly kind: string;
  iterations = 0;
  protected slots = new Map<string, Variable>();

  protected slot(name: string, like: Tensor): Variable {
    let v = this.slots.get(name);
    if (!v) {
      v = ownedVariable(tf.zerosLike(like));
      this.slots.set(name, v);
    }
    return v;
  }

  abstract apply(vars: NamedVariables, grads: NamedTensors, lr: number): void;

  state() {
    return { iterations: this.iterations, slots: Object.fromEntries(this.slots) as NamedTensors };
  }

  restore(state: { iterations: number; slots: NamedTensors }): void {
    this.dispose();
    this.iterations = state.iterations;
    for (const [name, t] of Object.entries(state.slots)) this.slots.set(name, ownedVariable(t.clone()));
  }

  dispose(): void {
    for (const v of this.slots.values()) v.dispose();
    this.slots.clear();
  }
}

/**
 * SGD with momentum and (coupled, L2) weight decay, as in PyTorch's `torch.optim.SGD`:
 * g += wd * w;  buf = momentum * buf + g;  w -= lr * buf.
 */
export class Sgd extends SlotOptimizer {
  readonly kind = 'sgd';
  constructor(
    readonly momentum = 0.9,
    readonly weightDecay = 0,
  ) {
    super();
  }

  apply(vars: NamedVariables, grads: NamedTensors, lr: number): void {
    tf.tidy(() => {
      for (const [name, g0] of Object.entries(grads)) {
        const w = vars[name];
        const g = this.weightDecay ? g0.add(w.mul(this.weightDecay)) : g0;
        if (this.momentum) {
          const buf = this.slot(`${name}/momentum`, w);
          buf.assign(buf.mul(this.momentum).add(g));
          w.assign(w.sub(buf.mul(lr)));
        } else {
          w.assign(w.sub(g.mul(lr)));
        }
      }
    });
    this.iterations++;
  }
}

/**
 * Adam (Kingma & Ba) with bias correction; `decoupledWeightDecay` > 0 makes it AdamW
 * (Loshchilov & Hutter): w -= lr * (m_hat / (sqrt(v_hat) + eps) + wd * w).
 */
export class Adam extends SlotOptimizer {
  readonly kind: string;
  constructor(
    readonly beta1 = 0.9,
    readonly beta2 = 0.999,
    readonly epsilon = 1e-8,
    readonly decoupledWeightDecay = 0,
  ) {
    super();
    this.kind = decoupledWeightDecay ? 'adamw' : 'adam';
  }

  apply(vars: NamedVariables, grads: NamedTensors, lr: number): void {
    const t = this.iterations + 1;
    const c1 = 1 - this.beta1 ** t;
    const c2 = 1 - this.beta2 ** t;
    tf.tidy(() => {
      for (const [name, g] of Object.entries(grads)) {
        const w = vars[name];
        const m = this.slot(`${name}/m`, w);
        const v = this.slot(`${name}/v`, w);
        m.assign(m.mul(this.beta1).add(g.mul(1 - this.beta1)));
        v.assign(v.mul(this.beta2).add(g.square().mul(1 - this.beta2)));
        let update = m.div(c1).div(v.div(c2).sqrt().add(this.epsilon));
        if (this.decoupledWeightDecay) update = update.add(w.mul(this.decoupledWeightDecay));
        w.assign(w.sub(update.mul(lr)));
      }
    });
    this.iterations++;
  }
}
