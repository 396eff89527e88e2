import { tf, type Tensor } from '@emseg/tf';

/**
 * Native TensorFlow kernels for the two layers whose tfjs training path costs most:
 * - batch normalisation in training mode: FusedBatchNormV3 forward, FusedBatchNormGradV3 backward,
 *   instead of ~25 small tfjs ops and as many passes over the activations;
 * - ReLU's gradient: ReluGrad, instead of tfjs's dy * step(x) (Greater, IsNan, Select, Fill, Mul).
 * Only on the native backend (tfjs-node); elsewhere, or with `EMSEG_NATIVE_KERNELS=0`, the
 * functions fall back to plain tfjs ops. Both paths are tested to agree.
 */

interface OpAttr {
  name: string;
  type: number;
  value: number | string | boolean;
}

interface NativeBackend {
  binding: { TF_ATTR_TYPE: number; TF_ATTR_FLOAT: number; TF_ATTR_STRING: number; TF_ATTR_BOOL: number; TF_FLOAT: number };
  executeMultipleOutputs(name: string, attrs: OpAttr[], inputs: Tensor[], numOutputs: number): Tensor[];
}

function nativeBackend(): NativeBackend | null {
  if (process.env.EMSEG_NATIVE_KERNELS === '0') return null;
  const backend = tf.backend() as unknown as Partial<NativeBackend>;
  return typeof backend.executeMultipleOutputs === 'function' && backend.binding ? (backend as NativeBackend) : null;
}

/** Whether the native kernels are used here (else plain tfjs ops). */
export function nativeKernelsAvailable(): boolean {
  return nativeBackend() !== null;
}

const floatType = (b: NativeBackend, name = 'T'): OpAttr => ({ name, type: b.binding.TF_ATTR_TYPE, value: b.binding.TF_FLOAT });

/**
 * max(x, 0), whose gradient is one native ReluGrad kernel on the native backend.
 */
export function relu(x: Tensor): Tensor {
  const backend = nativeBackend();
  if (backend === null || x.dtype !== 'float32') return tf.relu(x);
  const op = tf.customGrad((...args) => {
    const save = args[1] as (tensors: Tensor[]) => void;
    const y = tf.relu(args[0] as Tensor);
    save([y]);
    return {
      value: y,
      // ReluGrad(dy, features) = dy where features > 0; the output is > 0 exactly where the input is.
      gradFunc: (dy: Tensor, saved: Tensor[]) => backend.executeMultipleOutputs('ReluGrad', [floatType(backend)], [dy, saved[0]], 1)[0],
    };
  });
  return op(x);
}

function attrs(b: NativeBackend, epsilon: number, extra: OpAttr[] = []): OpAttr[] {
  const { binding } = b;
  return [
    floatType(b),
    floatType(b, 'U'),
    { name: 'epsilon', type: binding.TF_ATTR_FLOAT, value: epsilon },
    { name: 'data_format', type: binding.TF_ATTR_STRING, value: 'NHWC' },
    { name: 'is_training', type: binding.TF_ATTR_BOOL, value: true },
    ...extra,
  ];
}

export interface FusedBatchNormResult {
  /** Normalised x, differentiable w.r.t. x, gamma and beta. */
  y: Tensor;
  /** (1 - momentum) runningMean + momentum batchMean. */
  runningMean: Tensor;
  /** (1 - momentum) runningVariance + momentum unbiasedBatchVariance. */
  runningVariance: Tensor;
}

/**
 * y = gamma (x - mean_b) / sqrt(var_b + eps) + beta over axes [0, 1, 2] of x [b, h, w, c], with
 * the torch running-statistics update folded into the same kernel (`exponential_avg_factor`).
 * Returns null when the native kernels are not available.
 */
export function fusedBatchNormTraining(
  x: Tensor,
  gamma: Tensor,
  beta: Tensor,
  runningMean: Tensor,
  runningVariance: Tensor,
  epsilon: number,
  momentum: number,
): FusedBatchNormResult | null {
  const backend = nativeBackend();
  if (backend === null || x.rank !== 4 || x.dtype !== 'float32') return null;
  let stats: Tensor[] = [];
  const forward = tf.customGrad((...args) => {
    const [xIn, gammaIn, betaIn] = args as Tensor[];
    const save = args[3] as (tensors: Tensor[]) => void;
    const factor = { name: 'exponential_avg_factor', type: backend.binding.TF_ATTR_FLOAT, value: momentum };
    const [y, mean, variance, r1, r2, r3] = backend.executeMultipleOutputs(
      'FusedBatchNormV3',
      attrs(backend, epsilon, [factor]),
      [xIn, gammaIn, betaIn, runningMean, runningVariance],
      6,
    );
    stats = [tf.keep(mean), tf.keep(variance)];
    save([xIn, gammaIn, r1, r2, r3]);
    return {
      value: y,
      gradFunc: (dy: Tensor, saved: Tensor[]) => {
        const [xs, g, s1, s2, s3] = saved;
        const [dx, dGamma, dBeta, s4, s5] = backend.executeMultipleOutputs('FusedBatchNormGradV3', attrs(backend, epsilon), [dy, xs, g, s1, s2, s3], 5);
        tf.dispose([s4, s5]);
        return [dx, dGamma, dBeta];
      },
    };
  });
  const y = forward(x, gamma, beta);
  return { y, runningMean: stats[0], runningVariance: stats[1] };
}
