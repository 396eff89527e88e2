/**
 * Resume and graceful stop: a run stopped after step 3 (as SIGINT does), then resumed from its
 * checkpoint into a freshly built model, takes the same steps with the same batches and ends with
 * the same weights and the same best model as an uninterrupted run.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LabeledImages, type LabeledSample } from '@emseg/data';
import { resnetEncoder } from '@emseg/models';
import type { FinetuneConfig } from '../src/config.js';
import { finetune, type FinetuneResult } from '@emseg/segmentation';
import { Segmenter } from '@emseg/segmentation';
import { loadTrainingSamples } from '../src/tasks/urisc.js';
import { taskFor, tempDir, tinyConfig, tinyUrisc } from './helpers.js';

const tmp = tempDir('resume');
let samples: LabeledSample[];
let validation: LabeledImages;
let cfg: FinetuneConfig;

beforeAll(async () => {
  const ds = await tinyUrisc(join(tmp.dir, 'data'), { count: { train: 2, val: 1, test: 0 } });
  samples = await loadTrainingSamples(await LabeledImages.open(ds.splits.train), 64, 0.5);
  validation = await LabeledImages.open(ds.splits.val);
  // random patches with membrane oversampling and augmentation: 2 batches per epoch, so the stop
  // at step 3 falls inside an epoch and resuming must skip into it
  cfg = tinyConfig([
    'train.steps=6',
    'train.checkpointEvery=100',
    'validation.every=3',
    'patches.augmentation=urisc',
    'patches.perEpoch=4',
    'optimizer.schedule=cosine',
  ]);
});

afterAll(() => tmp.cleanup());

function model(seed: number): Segmenter {
  return Segmenter.create(
    resnetEncoder({ depth: 18, seed }),
    { mean: [0.5], std: [0.2] },
    { encoderSource: 'random', encoderRunId: null },
    { decoderChannels: cfg.model.decoderChannels, seed: seed + 1 },
  );
}

async function run(seg: Segmenter, outDir: string, options: { stopAfter?: number; resume?: boolean } = {}) {
  const losses: number[] = [];
  let steps = 0;
  const stop = {
    get requested() {
      return options.stopAfter !== undefined && steps >= options.stopAfter;
    },
  };
  const result = await finetune({
    cfg,
    task: taskFor(cfg),
    segmenter: seg,
    train: samples,
    validation,
    outDir,
    resume: options.resume,
    stop,
    listener: { step: (_, m) => void (steps++, losses.push(m.loss)) },
  });
  const weights = Object.fromEntries(Object.entries(seg.variables()).map(([n, v]) => [n, Float32Array.from(v.dataSync())]));
  return { result, losses, weights };
}

describe('resume', () => {
  let straight: { result: FinetuneResult; losses: number[]; weights: Record<string, Float32Array> };
  let first: typeof straight;
  let second: typeof straight;

  beforeAll(async () => {
    const a = model(1);
    straight = await run(a, join(tmp.dir, 'straight'));
    a.dispose();
    const b = model(1);
    first = await run(b, join(tmp.dir, 'interrupted'), { stopAfter: 3 });
    b.dispose();
    const c = model(77); // different initial weights: everything must come from the checkpoint
    second = await run(c, join(tmp.dir, 'interrupted'), { resume: true });
    c.dispose();
  });

  it('stops after the step in progress, saves a checkpoint and reports KILLED', () => {
    expect(first.result.status).toBe('KILLED');
    expect(first.result.steps).toBe(3);
    expect(first.losses).toHaveLength(3);
    expect(first.result.best?.step).toBe(3);
  });

  it('continues at the saved step with the same batches and ends with the same weights', () => {
    expect(second.result.status).toBe('FINISHED');
    expect(second.result.steps).toBe(6);
    expect(second.losses).toHaveLength(3);
    const all = [...first.losses, ...second.losses];
    all.forEach((loss, i) => expect(loss, `loss of step ${i + 1}`).toBeCloseTo(straight.losses[i], 4));
    let worst = 0;
    for (const [name, w] of Object.entries(straight.weights)) {
      const v = second.weights[name];
      for (let i = 0; i < w.length; i++) worst = Math.max(worst, Math.abs(w[i] - v[i]) / (1e-3 + Math.abs(w[i])));
    }
    expect(worst).toBeLessThan(1e-3);
    expect(second.result.best?.step).toBe(straight.result.best?.step);
    expect(second.result.best?.bestF1).toBeCloseTo(straight.result.best!.bestF1, 3);
  });

  it('says when there is nothing to resume from', async () => {
    const seg = model(3);
    const { result } = await run(seg, join(tmp.dir, 'fresh'), { resume: true, stopAfter: 1 });
    seg.dispose();
    expect(result.steps).toBe(1);
  });
});
