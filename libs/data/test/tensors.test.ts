import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tensorCountGuard } from '@emseg/tf';
import {
  CEM500K_NORMALISATION,
  UnlabeledCrops,
  estimateNormalisation,
  generateSyntheticCrops,
  imageBatchToTensor,
  maskBatchToTensor,
  stackImages,
  stackMasks,
} from '@emseg/data';
import { tempDir } from './helpers.js';

const dir = tempDir('tensors');

describe('batch -> tensor', () => {
  it('makes [B, H, W, 1] float tensors normalised by the dataset mean/std', () => {
    const batch = stackImages([new Float32Array(6).fill(0.573), new Float32Array(6).fill(0.7)], 2, 3);
    const x = imageBatchToTensor(batch, CEM500K_NORMALISATION);
    expect(x.shape).toEqual([2, 2, 3, 1]);
    expect(x.dtype).toBe('float32');
    const values = x.dataSync();
    expect(values[0]).toBeCloseTo(0, 5);
    expect(values[6]).toBeCloseTo((0.7 - 0.573) / 0.127, 5);
    x.dispose();
    const m = maskBatchToTensor(stackMasks([Uint8Array.from([0, 1, 1, 0])], 2, 2));
    expect(Array.from(m.dataSync())).toEqual([0, 1, 1, 0]);
    m.dispose();
  });

  it('streams MoCo batches into tensors without growing the tensor count', async () => {
    const { root } = await generateSyntheticCrops({ dir: join(dir, 'crops'), seed: 1, count: 24, size: 32 });
    const crops = await UnlabeledCrops.open(root);
    const normalisation = await estimateNormalisation(
      crops.files.map((f) => join(root, f)),
      { sample: 8 },
    );
    expect(normalisation.mean).toBeGreaterThan(0.2);
    expect(normalisation.mean).toBeLessThan(0.8);
    const guard = tensorCountGuard();
    for (let epoch = 0; epoch < 2; epoch++) {
      for await (const batch of crops.stream({ seed: 1, epoch, batchSize: 8, size: 24 })) {
        const [q, k] = batch.views.map((v) => imageBatchToTensor(v, normalisation));
        expect(q.shape).toEqual([8, 24, 24, 1]);
        q.dispose();
        k.dispose();
        expect(guard.leaked()).toBe(0);
      }
    }
  });
});
