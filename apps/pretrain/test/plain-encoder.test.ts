/**
 * MoCo is not tied to ResNet: `encoder.architecture = plain-conv-small` pretrains a BN-less plain conv
 * encoder through the registry (shuffle-BN is then a no-op), leaks nothing, and writes a bundle that
 * reloads as that architecture; the linear probe runs on it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tf } from '@emseg/tf';
import { loadConfig } from '@emseg/config';
import { generateSyntheticCrops, generateSyntheticUrisc } from '@emseg/data';
import { createEncoder, loadEncoder } from '@emseg/models';
import { mocoSchema } from '../src/config.js';
import { pretrainMoco } from '../src/pretrain.js';
import { disposeProbeData, loadProbeData, runProbe } from '../src/probe.js';

const QUICK = join(__dirname, '..', '..', '..', 'configs', 'pretrain', 'quick.json');
const WORK = mkdtempSync(join(tmpdir(), 'emseg-pretrain-plain-'));
afterAll(() => rmSync(WORK, { recursive: true, force: true }));

describe('MoCo over the plain conv encoder', () => {
  it('pretrains without leaking and saves a bundle that reloads as plain-conv-small', async () => {
    const crops = join(WORK, 'crops');
    await generateSyntheticCrops({ dir: crops, seed: 5, count: 32, size: 48 });
    const cfg = loadConfig(mocoSchema, {
      file: QUICK,
      overrides: [
        'encoder.architecture="plain-conv-small"',
        'data.cropSize=32',
        'train.batchSize=8',
        'moco.queueSize=32',
        'moco.mlpHidden=64',
        'moco.dim=32',
        'train.maxSteps=6',
        'train.checkpointEvery=1000',
      ],
    });
    const out = join(WORK, 'run');
    const tensors: number[] = [];
    const losses: number[] = [];
    const result = await pretrainMoco({
      cfg,
      dataDir: crops,
      outDir: out,
      listener: { step: (_s, m) => void (losses.push(m.loss), tensors.push(tf.memory().numTensors)) },
    });
    expect(result.status).toBe('FINISHED');
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(new Set(tensors.slice(1)).size).toBe(1);
    const { encoder, meta } = await loadEncoder(result.bundleDir!, { inChannels: 1 });
    expect(meta).toMatchObject({ architecture: 'plain-conv-small', featureChannels: [16, 32, 64, 128, 256], training: { method: 'mocov2', steps: 6 } });
    encoder.dispose();
  });

  it('the linear probe fits on plain conv features without leaks', async () => {
    const dir = join(WORK, 'urisc');
    await generateSyntheticUrisc({ dir, seed: 3, count: { train: 1, val: 1, test: 0 }, size: 128, cellSize: 40 });
    const data = await loadProbeData(dir, { patchSize: 64, mean: 0.573, std: 0.127 });
    const encoder = createEncoder('plain-conv-small', { seed: 1 });
    const before = tf.memory().numTensors;
    const probe = runProbe(encoder, data, { steps: 20 });
    expect(tf.memory().numTensors).toBe(before);
    expect(probe.f1).toBeGreaterThan(0);
    encoder.dispose();
    disposeProbeData(data);
  });
});
