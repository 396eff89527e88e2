/**
 * Where the encoder comes from: a bundle's weights and normalisation really end up in the U-Net, a
 * frozen encoder stays fixed while the decoder trains (until model.unfreezeAfter), bundles of the
 * wrong channel count are refused, and the latest quick pretraining is picked up (or its absence
 * said).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tf, type Variable } from '@emseg/tf';
import { LabeledImages, type LabeledSample } from '@emseg/data';
import { modelVariables, resnetEncoder, saveEncoderBundle } from '@emseg/models';
import { resolveEncoder } from '../src/encoder-source.js';
import { finetune } from '@emseg/segmentation';
import { Segmenter } from '@emseg/segmentation';
import { loadTrainingSamples } from '../src/tasks/urisc.js';
import { taskFor, tempDir, tinyConfig, tinyUrisc } from './helpers.js';

const tmp = tempDir('encoder');
const bundleDir = join(tmp.dir, 'bundle');
let samples: LabeledSample[];
/** The saved encoder's weights by name. */
let saved: Record<string, Float32Array>;

beforeAll(async () => {
  const ds = await tinyUrisc(join(tmp.dir, 'data'), { count: { train: 1, val: 0, test: 0 } });
  samples = await loadTrainingSamples(await LabeledImages.open(ds.splits.train), 64, 0.5);
  const encoder = resnetEncoder({ depth: 18, seed: 11 });
  // non-trivial BN running statistics, so loading them is visible too
  tf.tidy(() => encoder.features(tf.randomUniform([2, 64, 64, 1], 0, 1, 'float32', 3), { training: true }));
  await saveEncoderBundle(bundleDir, encoder, { normalization: { mean: 0.4, std: 0.3 }, training: { method: 'mocov2', steps: 5, mlflowRunId: 'abc123' } });
  saved = Object.fromEntries(Object.entries(modelVariables(encoder.model)).map(([name, v]) => [name, v.dataSync() as Float32Array]));
  encoder.dispose();
});

afterAll(() => tmp.cleanup());

const snapshot = (vars: Record<string, Variable>) => Object.fromEntries(Object.entries(vars).map(([n, v]) => [n, Float32Array.from(v.dataSync())]));
const maxDiff = (a: Float32Array, b: ArrayLike<number>) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

describe('resolveEncoder', () => {
  it('loads every weight and the normalisation of a bundle; the bundle decides the architecture', async () => {
    const notes: string[] = [];
    const choice = await resolveEncoder(bundleDir, { architecture: 'resnet50', normalization: { mean: 0.5, std: 0.2 }, seed: 0, log: (m) => notes.push(m) });
    try {
      expect(choice.encoder.architecture).toBe('resnet18');
      expect(notes.join('\n')).toMatch(/bundle is a resnet18; it replaces model.architecture = resnet50/);
      expect(choice.normalization).toEqual({ mean: [0.4], std: [0.3] });
      expect(choice.runId).toBe('abc123');
      expect(choice.source).toBe(bundleDir);
      const loaded = modelVariables(choice.encoder.model);
      expect(Object.keys(loaded).sort()).toEqual(Object.keys(saved).sort());
      for (const [name, v] of Object.entries(loaded)) expect(maxDiff(saved[name], v.dataSync()), name).toBe(0);
      // ... and they are not what a fresh initialisation gives
      const fresh = resnetEncoder({ depth: 18, seed: 0 });
      expect(maxDiff(saved['conv1/kernel'], modelVariables(fresh.model)['conv1/kernel'].dataSync())).toBeGreaterThan(1e-3);
      fresh.dispose();
    } finally {
      choice.encoder.dispose();
    }
  });

  it('refuses a bundle whose encoder takes another number of channels, naming it', async () => {
    const rgbDir = join(tmp.dir, 'rgb-bundle');
    const rgb = resnetEncoder({ depth: 18, inChannels: 3, seed: 1 });
    await saveEncoderBundle(rgbDir, rgb, { normalization: { mean: 0.5, std: 0.25 }, training: { method: 'pytorch-import' } });
    rgb.dispose();
    await expect(resolveEncoder(rgbDir, { architecture: 'resnet18', normalization: { mean: 0.5, std: 0.2 }, seed: 0 })).rejects.toThrow(
      new RegExp(`encoder bundle ${rgbDir} takes 3-channel input, but the images have 1 channel`),
    );
  });

  it('says when there is no pretraining to start from and uses random init', async () => {
    const notes: string[] = [];
    const missing = join(tmp.dir, 'no-such', 'latest.json');
    const choice = await resolveEncoder('latest-pretrain', {
      architecture: 'resnet18',
      normalization: { mean: 0.5, std: 0.2 },
      seed: 0,
      latestPretrain: missing,
      log: (m) => notes.push(m),
    });
    choice.encoder.dispose();
    expect(choice.source).toBe('random');
    expect(choice.runId).toBeNull();
    expect(choice.normalization).toEqual({ mean: [0.5], std: [0.2] });
    expect(notes.join('\n')).toContain(`no finished pretraining recorded in ${missing}; using a randomly initialised resnet18`);
  });

  it('uses the encoder the latest pretraining recorded, with its run id', async () => {
    const latest = join(tmp.dir, 'latest.json');
    writeFileSync(latest, JSON.stringify({ runId: 'run42', trackingUri: 'http://127.0.0.1:1', bundleDir, encoderUri: 'runs:/run42/encoder' }));
    const choice = await resolveEncoder('latest-pretrain', {
      architecture: 'resnet18',
      normalization: { mean: 0.5, std: 0.2 },
      seed: 0,
      latestPretrain: latest,
    });
    choice.encoder.dispose();
    expect(choice.source).toBe(bundleDir);
    expect(choice.runId).toBe('run42');
    expect(choice.description).toMatch(/mocov2 resnet18 bundle .* \(MLflow run run42\)/);
  });

  it('needs an encoder when the config names none', async () => {
    await expect(resolveEncoder(null, { architecture: 'resnet50', normalization: { mean: 0.5, std: 0.2 }, seed: 0 })).rejects.toThrow(/pass --encoder/);
  });
});

describe('encoder freezing during fine-tuning', () => {
  async function trainFrozen(overrides: string[], notes: string[]) {
    const choice = await resolveEncoder(bundleDir, { architecture: 'resnet18', normalization: { mean: 0.5, std: 0.2 }, seed: 0 });
    const seg = Segmenter.create(
      choice.encoder,
      choice.normalization,
      { encoderSource: bundleDir, encoderRunId: 'abc123' },
      { decoderChannels: [32, 16, 16, 8, 8], seed: 1 },
    );
    const encoderNames = new Set(Object.keys(modelVariables(choice.encoder.model)));
    const before = snapshot(seg.variables());
    const outDir = join(tmp.dir, `run-${notes.length}-${overrides.join('-').replace(/\W/g, '')}`);
    const cfg = tinyConfig(['model.freezeEncoder=all', 'optimizer.lr=0.01', ...overrides]);
    await finetune({
      cfg,
      task: taskFor(cfg),
      segmenter: seg,
      train: samples,
      validation: null,
      outDir,
      listener: { note: (m) => notes.push(m) },
    });
    const after = snapshot(seg.variables());
    seg.dispose();
    const changed = (names: string[]) => names.filter((n) => maxDiff(before[n], after[n]) > 0);
    const names = Object.keys(before);
    return {
      encoderChanged: changed(names.filter((n) => encoderNames.has(n))),
      decoderChanged: changed(names.filter((n) => !encoderNames.has(n))),
      decoderCount: names.length - encoderNames.size,
    };
  }

  it('keeps a frozen encoder (weights and BN statistics) fixed while the decoder trains', async () => {
    const { encoderChanged, decoderChanged, decoderCount } = await trainFrozen(['train.steps=3'], []);
    expect(encoderChanged).toEqual([]);
    expect(decoderChanged.length).toBe(decoderCount);
  });

  it('unfreezes the encoder after model.unfreezeAfter steps', async () => {
    const notes: string[] = [];
    const { encoderChanged } = await trainFrozen(['train.steps=3', 'model.unfreezeAfter=2'], notes);
    expect(encoderChanged).toContain('conv1/kernel');
    expect(encoderChanged).toContain('bn1/moving_mean');
    expect(notes).toEqual(['step 2: encoder unfrozen (model.unfreezeAfter = 2)']);
  });
});
