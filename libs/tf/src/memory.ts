import { tf } from './backend.js';

/**
 * Remembers `tf.memory().numTensors` now; `leaked()` tells how many tensors exist beyond it.
 * Used by loops (and their tests) to prove that an iteration frees everything it allocates.
 *
 * @example
 * const guard = tensorCountGuard();
 * for (...) trainStep();
 * if (guard.leaked() > 0) throw new Error('training step leaks tensors');
 */
export function tensorCountGuard(): { readonly start: number; leaked(): number } {
  const start = tf.memory().numTensors;
  return { start, leaked: () => tf.memory().numTensors - start };
}
