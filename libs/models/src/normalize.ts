import { tf, type Tensor4D } from '@emseg/tf';
import type { Normalization } from './encoder-json.js';

/**
 * Applies an encoder's input normalisation: (x - mean[c]) / std[c] per channel, for images
 * [b, h, w, c] with values in [0, 1] (8-bit grey / 255).
 *
 * @example normalizeInput(tf.fill([1, 32, 32, 1], 0.7), { mean: [0.573], std: [0.127] }) // all 1.0
 */
export function normalizeInput(x: Tensor4D, normalization: Normalization): Tensor4D {
  const channels = x.shape[3];
  if (normalization.mean.length !== channels || normalization.std.length !== channels) {
    throw new Error(
      `normalisation has ${normalization.mean.length} mean / ${normalization.std.length} std value(s) but the images have ${channels} channel(s)`,
    );
  }
  return tf.tidy(() => x.sub(tf.tensor1d(normalization.mean)).div(tf.tensor1d(normalization.std)));
}
