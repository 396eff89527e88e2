/**
 * Batch -> tensor, the one place in libs/data that uses TensorFlow. Tensors are [B, H, W, 1]
 * (NHWC, one grey channel) and the caller owns (and disposes) what is returned.
 */
import { tf } from '@emseg/tf';
import type { ImageBatch, MaskBatch } from './batch.js';
import { normalise, type Normalisation } from './normalisation.js';

/** A rank-4 float tensor, as tfjs types it. */
export type Tensor4D = ReturnType<typeof tf.tensor4d>;

/**
 * Normalised images as a float32 tensor [size, height, width, 1]: (x - mean) / std.
 *
 * @example const x = imageBatchToTensor(batch.views[0], CEM500K_NORMALISATION); ... x.dispose();
 */
export function imageBatchToTensor(batch: ImageBatch, normalisation: Normalisation): Tensor4D {
  return tf.tensor4d(normalise(batch.data, normalisation), [batch.size, batch.height, batch.width, 1], 'float32');
}

/**
 * Masks as a float32 tensor: [size, height, width, 1] of 0 and 1 (targets for focal/dice losses),
 * or with `classes` > 1 the masks' class indices one-hot, [size, height, width, classes].
 */
export function maskBatchToTensor(batch: MaskBatch, classes = 1): Tensor4D {
  if (classes <= 1) return tf.tensor4d(Float32Array.from(batch.data), [batch.size, batch.height, batch.width, 1], 'float32');
  return tf.tidy(() => {
    const ids = tf.tensor3d(Int32Array.from(batch.data), [batch.size, batch.height, batch.width], 'int32');
    return tf.oneHot(ids, classes, 1, 0, 'float32') as Tensor4D;
  });
}
