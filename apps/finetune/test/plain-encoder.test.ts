/**
 * Fine-tuning is not tied to ResNet: a plain conv encoder (no BN) named in the config is built
 * through the registry, trains under the U-Net (loss falls, tensor count flat), freezes with
 * `all-but-bn` like `all`, and `Segmenter.load` rebuilds it by architecture with identical outputs.
 */
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tf } from '@emseg/tf';
import { LabeledImages, type LabeledSample } from '@emseg/data';
import { modelVariables } from '@emseg/models';
import type { FinetuneConfig } from '../src/config.js';
import { resolveEncoder } from '../src/encoder-source.js';
import { finetune } from '@emseg/segmentation';
import { Segmenter } from '@emseg/segmentation';
import { loadTrainingSamples } from '../src/tasks/urisc.js';
import { taskFor, tempDir, tinyConfig, tinyUrisc } from './helpers.js';

const tmp = tempDir('plain-encoder');
let samples: LabeledSample[];

beforeAll(async () => {
  const ds = await tinyUrisc(join(tmp.dir, 'data'), { count: { train: 1, val: 0, test: 0 } });
  samples = await loadTrainingSamples(await LabeledImages.open(ds.splits.train), 64, 0.5);
});

afterAll(() => tmp.cleanup());

/** A random plain-conv-small segmenter built from the config, as `finetune urisc` builds it. */
async function segmenterFor(cfg: FinetuneConfig): Promise<Segmenter> {
  const choice = await resolveEncoder('random', { architecture: cfg.model.architecture, normalization: cfg.model.normalization, seed: cfg.model.seed });
  expect(choice.encoder.architecture).toBe('plain-conv-small');
  return Segmenter.create(
    choice.encoder,
    choice.normalization,
    { encoderSource: choice.source, encoderRunId: choice.runId },
    { decoderChannels: cfg.model.decoderChannels, seed: 2 },
  );
}

const PLAIN = 'model.architecture=plain-conv-small';

describe('fine-tuning a U-Net over the plain conv encoder', () => {
  it('the config accepts every registered architecture and names them for an unknown one', () => {
    expect(tinyConfig([PLAIN]).model.architecture).toBe('plain-conv-small');
    expect(() => tinyConfig(['model.architecture=vgg16'])).toThrow(
      /model\.architecture must be one of "resnet18", "resnet34", "resnet50", "plain-conv", "plain-conv-small"/,
    );
  });

  it('trains (loss falls, no tensor growth), and Segmenter.load rebuilds it by architecture with identical outputs', async () => {
    // grid patches: the 128 px image is 4 patches of 64, 2 batches per epoch, the same every epoch
    const cfg = tinyConfig([PLAIN, 'train.steps=16', 'optimizer.lr=0.003', 'patches.sampling=grid']);
    const segmenter = await segmenterFor(cfg);
    const losses: number[] = [];
    const tensors: number[] = [];
    try {
      const t0 = performance.now();
      const result = await finetune({
        cfg,
        task: taskFor(cfg),
        segmenter,
        train: samples,
        validation: null,
        outDir: join(tmp.dir, 'run'),
        listener: { step: (_s, m) => void (losses.push(m.loss), tensors.push(tf.memory().numTensors)) },
      });
      process.stderr.write(
        `plain-conv-small fine-tuning: ${result.steps} steps in ${((performance.now() - t0) / 1000).toFixed(1)} s; loss ${losses[0].toFixed(3)} -> ${losses[losses.length - 1].toFixed(3)}\n`,
      );
      expect(result.status).toBe('FINISHED');
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      expect(mean(losses.slice(-4))).toBeLessThan(mean(losses.slice(0, 4)) * 0.8);
      expect(new Set(tensors.slice(1)).size).toBe(1); // optimizer slots appear at step 1 only

      const loaded = Segmenter.load(result.finalModelDir);
      try {
        expect(loaded.architecture).toBe('plain-conv-small');
        expect(loaded.loadedInfo?.architecture).toBe('plain-conv-small');
        const tile = Float32Array.from({ length: 64 * 64 }, (_, i) => ((i * 7919) % 256) / 255);
        const a = segmenter.probabilities(tile, 1, 64, false);
        const b = loaded.probabilities(tile, 1, 64, false);
        expect(a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0)).toBe(0);
      } finally {
        loaded.dispose();
      }
      // a model of an architecture this emseg does not know is refused, naming the known ones
      const unknown = join(tmp.dir, 'unknown-model');
      cpSync(result.finalModelDir, unknown, { recursive: true });
      const manifest = JSON.parse(readFileSync(join(unknown, 'manifest.json'), 'utf8')) as { state: { architecture: string } };
      manifest.state.architecture = 'vgg16';
      writeFileSync(join(unknown, 'manifest.json'), JSON.stringify(manifest));
      const before = tf.memory().numTensors;
      expect(() => Segmenter.load(unknown)).toThrow(
        `model ${unknown}: unknown architecture "vgg16": expected one of resnet18, resnet34, resnet50, plain-conv, plain-conv-small`,
      );
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      segmenter.dispose();
    }
  });

  it('freezeEncoder all-but-bn leaves the BN-less encoder unchanged while the decoder trains', async () => {
    const cfg = tinyConfig([PLAIN, 'train.steps=2', 'model.freezeEncoder=all-but-bn']);
    const segmenter = await segmenterFor(cfg);
    const encoderWeights = () =>
      Object.fromEntries(Object.entries(modelVariables(segmenter.net.encoder.model)).map(([n, v]) => [n, Float32Array.from(v.dataSync())]));
    try {
      const before = encoderWeights();
      const head = Float32Array.from(segmenter.variables()['segmentation_head/kernel'].dataSync());
      await finetune({ cfg, task: taskFor(cfg), segmenter, train: samples, validation: null, outDir: join(tmp.dir, 'frozen') });
      const after = encoderWeights();
      expect(Object.keys(after).filter((n) => after[n].some((v, i) => v !== before[n][i]))).toEqual([]);
      expect(
        segmenter
          .variables()
          ['segmentation_head/kernel'].dataSync()
          .some((v, i) => v !== head[i]),
      ).toBe(true);
    } finally {
      segmenter.dispose();
    }
  });
});
