import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { tf, type Tensor, type Tensor4D } from '@emseg/tf';

/** A fresh temporary directory, removed after the test file. */
export function tempDir(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `emseg-models-${label}-`));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Largest absolute element-wise difference of two tensors of the same shape. */
export function maxAbsDiff(a: Tensor, b: Tensor): number {
  return tf.tidy(() => tf.abs(tf.sub(a, b)).max().dataSync()[0]);
}

/** A deterministic batch of images in [0, 1]. */
export function randomImages(shape: [number, number, number, number], seed = 7): Tensor4D {
  return tf.randomUniform(shape, 0, 1, 'float32', seed) as Tensor4D;
}
