/**
 * BYOL through the method seam (method.ts, byol.ts), on synthetic EM crops: the loss falls on two
 * seeds without growing the tensor count, the target follows the online network by exactly the
 * EMA of the paper, a resumed run equals an uninterrupted one, and the exported online encoder
 * loads in fine-tuning.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tf, tensorCountGuard, type Tensor, type Tensor4D } from '@emseg/tf';
import { loadConfig } from '@emseg/config';
import { generateSyntheticCrops } from '@emseg/data';
import { loadEncoder, unet } from '@emseg/models';
import { Sgd, latestCheckpoint, loadCheckpoint, type GracefulStop } from '@emseg/training';
import { Byol, byolLoss, projectionStd } from '../src/byol.js';
import { checkMocoConfig, mocoSchema, type MocoConfig } from '../src/config.js';
import { cosineMomentum, trainMethodStep } from '../src/method.js';
import { pretrain } from '../src/pretrain.js';

const CONFIGS = join(__dirname, '..', '..', '..', 'configs', 'pretrain');
const QUICK = join(CONFIGS, 'quick.json');

/** A tiny BYOL setup: ResNet-18 on 32 px views, batch 8, 64 -> 32 MLPs, constant lr. */
function tinyByol(extra: string[] = []): MocoConfig {
  return loadConfig(mocoSchema, {
    file: QUICK,
    overrides: [
      'method=byol',
      'data.cropSize=32',
      'train.batchSize=8',
      'byol.projectorHidden=64',
      'byol.dim=32',
      'byol.predictorHidden=64',
      'byol.tauBase=0.99',
      'train.checkpointEvery=1000',
      'optimizer.lr=0.03',
      'optimizer.schedule="step"',
      'optimizer.warmupEpochs=0',
      ...extra,
    ],
  });
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

const WORK = mkdtempSync(join(tmpdir(), 'emseg-byol-test-'));
afterAll(() => rmSync(WORK, { recursive: true, force: true }));

let crops: string;
beforeAll(async () => {
  crops = join(WORK, 'crops');
  await generateSyntheticCrops({ dir: crops, seed: 5, count: 96, size: 48 });
});

describe('BYOL configuration', () => {
  it('--set method=byol works on any config, with the paper defaults; byol-quick.json loads', () => {
    const cfg = loadConfig(mocoSchema, { file: QUICK, overrides: ['method=byol'] });
    expect(cfg.method).toBe('byol');
    expect(cfg.byol).toEqual({ projectorHidden: 4096, dim: 256, predictorHidden: 4096, tauBase: 0.996 });
    // MoCo's queue constraint does not apply to BYOL.
    expect(() => checkMocoConfig(loadConfig(mocoSchema, { file: QUICK, overrides: ['method=byol', 'train.batchSize=6'] }), 'quick.json')).not.toThrow();
    expect(loadConfig(mocoSchema, { file: QUICK }).method).toBe('mocov2');
    const quick = loadConfig(mocoSchema, { file: join(CONFIGS, 'byol-quick.json') });
    expect(quick).toMatchObject({ method: 'byol', byol: { tauBase: 0.99 }, encoder: { architecture: 'resnet18' } });
    expect(() => loadConfig(mocoSchema, { file: QUICK, overrides: ['method=simclr'] })).toThrow(/method must be one of "mocov2", "byol"/);
  });
});

describe('BYOL pieces', () => {
  it('loss is 2 - 2 cos per direction; the collapse indicator is 0 for collapsed projections', () => {
    const p = tf.tensor2d([
      [1, 0],
      [0, 2],
    ]);
    const z = tf.tensor2d([
      [1, 1],
      [0, -1],
    ]);
    // cos = [1/sqrt 2, -1] -> mean(2 - 2 cos) = 2 - (1/sqrt 2 - 1)
    expect(byolLoss(p, z).dataSync()[0]).toBeCloseTo(2 - (Math.SQRT1_2 - 1), 5);
    const same = tf.tensor2d([
      [3, 4],
      [3, 4],
      [6, 8],
    ]);
    expect(projectionStd([same, same]).dataSync()[0]).toBeCloseTo(0, 6);
    // Rows e1, -e1: per-dim std over the batch (unbiased) = [sqrt 2, 0] -> mean sqrt(2) / 2.
    const spread = tf.tensor2d([
      [1, 0],
      [-1, 0],
    ]);
    expect(projectionStd([spread]).dataSync()[0]).toBeCloseTo(Math.SQRT2 / 2, 5);
    tf.dispose([p, z, same, spread]);
  });

  it('tau rises from its base to 1 on a cosine, as the paper', () => {
    const tau = cosineMomentum(0.996, 100);
    expect(tau(0)).toBeCloseTo(0.996, 12);
    expect(tau(50)).toBeCloseTo(0.998, 12);
    expect(tau(100)).toBeCloseTo(1, 12);
    expect(tau(25)).toBeCloseTo(1 - (0.004 * (Math.cos(Math.PI / 4) + 1)) / 2, 12);
  });

  it('after a step, the target is tau * target + (1 - tau) * online, weight by weight (hand computation)', () => {
    const cfg = tinyByol(['encoder.architecture="plain-conv-small"', 'byol.projectorHidden=16', 'byol.dim=8', 'byol.predictorHidden=16']);
    const optimizer = new Sgd(0.9, 0);
    const byol = new Byol({ cfg, optimizer, totalSteps: 10 });
    const views = [1, 2].map((s) => tf.randomNormal([4, 32, 32, 1], 0, 1, 'float32', s) as Tensor4D);
    // Two steps, so the online and target weights differ before the checked one.
    trainMethodStep(byol, views, 0.1, 0);
    const [{ online, target }] = byol.momentumPairs;
    expect(Object.keys(online).some((n) => n.startsWith('predictor/'))).toBe(false);
    expect(Object.keys(online).some((n) => /moving_/.test(n))).toBe(false);
    expect(Object.keys(target).sort()).toEqual(Object.keys(online).sort());
    const snapshot = (vars: Record<string, Tensor>) => Object.fromEntries(Object.entries(vars).map(([n, v]) => [n, Array.from(v.dataSync())]));
    const target0 = snapshot(target);
    const online0 = snapshot(online);
    const { momentum } = trainMethodStep(byol, views, 0.1, 3);
    const tau = 1 - (0.01 * (Math.cos((Math.PI * 3) / 10) + 1)) / 2;
    expect(momentum).toBeCloseTo(tau, 12);
    const online1 = snapshot(online);
    const target1 = snapshot(target);
    let worst = 0;
    let moved = 0;
    for (const name of Object.keys(target0)) {
      target1[name].forEach((t, i) => {
        worst = Math.max(worst, Math.abs(t - (tau * target0[name][i] + (1 - tau) * online1[name][i])));
        moved = Math.max(moved, Math.abs(online1[name][i] - online0[name][i]));
      });
    }
    expect(moved).toBeGreaterThan(1e-4); // the optimizer did move the online weights
    expect(worst).toBeLessThan(1e-6);
    tf.dispose(views);
    byol.dispose();
    optimizer.dispose();
  });
});

describe('BYOL pretraining loop', () => {
  const bundles: string[] = [];

  it('lowers the loss on synthetic crops on two seeds, without growing the tensor count', async () => {
    const mild = [
      'augmentation.rotation.p=0',
      'augmentation.resizedCrop.scale=[0.7,1]',
      'augmentation.blur.p=0',
      'augmentation.noise.p=0',
      'augmentation.brightness=0.1',
      'augmentation.contrast=0.1',
    ];
    for (const seed of [1, 2]) {
      const cfg = tinyByol(['train.epochs=10', 'train.maxSteps=12', `train.seed=${seed}`, ...mild]);
      const losses: number[] = [];
      const zStd: number[] = [];
      const leaks: number[] = [];
      const out = mkdtempSync(join(WORK, `run-${seed}-`));
      const guard = tensorCountGuard();
      const result = await pretrain({
        cfg,
        dataDir: crops,
        outDir: out,
        listener: {
          step: (_s, m) => {
            losses.push(m.loss);
            zStd.push(m.metrics.z_std);
            leaks.push(guard.leaked());
          },
        },
      });
      expect(result.status).toBe('FINISHED');
      expect(result.steps).toBe(12);
      const [first, last] = [mean(losses.slice(0, 5)), mean(losses.slice(-5))];
      console.log(
        `byol seed ${seed}: loss first 5 ${first.toFixed(4)}, last 5 ${last.toFixed(4)}; z_std ${zStd[0].toFixed(4)} -> ${zStd[zStd.length - 1].toFixed(4)}`,
      );
      // Seeds 1 and 2 measured at 30 steps: 2.83 -> 1.55 and 2.90 -> 1.20 (of 0 .. 8); at 12 steps the
      // loss has already fallen as far: 2.84 -> 1.57 and 2.91 -> 1.27 (seeds 1-6: a fall of 1.18 to 1.64),
      // while at a negligible lr (1e-6) it does not fall (0.15 and -0.06).
      expect(last).toBeLessThan(first - 0.5);
      // Not collapsed: the projections still spread over the batch (1/sqrt(32) ~ 0.18 when spread evenly).
      expect(mean(zStd.slice(-5))).toBeGreaterThan(0.02);
      expect(new Set(leaks.slice(1)).size).toBe(1);
      bundles.push(out);
    }
  });

  it('the exported online encoder loads as a byol bundle and runs under a U-Net', async () => {
    expect(bundles.length).toBeGreaterThan(0);
    const out = bundles[0];
    const { encoder, meta } = await loadEncoder(join(out, 'encoder'), { inChannels: 1 });
    expect(meta).toMatchObject({ architecture: 'resnet18', training: { method: 'byol', steps: 12 }, normalization: { mean: [0.573], std: [0.127] } });
    // It is the online encoder of the last checkpoint.
    const ck = loadCheckpoint(latestCheckpoint(join(out, 'checkpoints'))!);
    const name = 'layer1_0_conv1/kernel';
    const weight = encoder.model.weights.find((w) => w.originalName === name)!.read();
    expect(tf.tidy(() => weight.sub(ck.tensors[`online/encoder/${name}`]).abs().max().dataSync()[0])).toBe(0);
    tf.dispose(Object.values(ck.tensors));
    // What fine-tuning builds on it (apps/finetune's Segmenter is a U-Net over the loaded encoder).
    const net = unet({ encoder, seed: 3 });
    const x = tf.zeros([1, 32, 32, 1]) as Tensor4D;
    const y = net.forward(x, { training: false });
    expect(y.shape).toEqual([1, 32, 32, 1]);
    tf.dispose([x, y]);
    net.dispose();
  });

  it('resumes from a checkpoint to the same tensors as an uninterrupted run', async () => {
    // Stopped at step 3, after the periodic checkpoint at 2: the resume must take the stop's checkpoint.
    const cfg = tinyByol(['train.maxSteps=4', 'train.checkpointEvery=2']);
    const straight = mkdtempSync(join(WORK, 'a-'));
    await pretrain({ cfg, dataDir: crops, outDir: straight });

    const interrupted = mkdtempSync(join(WORK, 'b-'));
    let steps = 0;
    const stop: GracefulStop = {
      get requested() {
        return steps >= 3;
      },
      signal: null,
      dispose() {},
    };
    const first = await pretrain({ cfg, dataDir: crops, outDir: interrupted, stop, listener: { step: () => void steps++ } });
    expect(first.status).toBe('KILLED');
    expect(first.steps).toBe(3);
    const resumed = await pretrain({ cfg, dataDir: crops, outDir: interrupted, resume: true });
    expect(resumed.status).toBe('FINISHED');
    expect(resumed.steps).toBe(4);

    const a = loadCheckpoint(latestCheckpoint(join(straight, 'checkpoints'))!);
    const b = loadCheckpoint(latestCheckpoint(join(interrupted, 'checkpoints'))!);
    const names = Object.keys(a.tensors).sort();
    expect(Object.keys(b.tensors).sort()).toEqual(names);
    for (const prefix of ['online/encoder/', 'online/projector/', 'online/predictor/', 'target/encoder/', 'target/projector/', 'optimizer/']) {
      expect(
        names.some((n) => n.startsWith(prefix)),
        prefix,
      ).toBe(true);
    }
    let worst = 0;
    for (const [name, t] of Object.entries(a.tensors))
      worst = Math.max(
        worst,
        tf.tidy(() => t.sub(b.tensors[name]).abs().max().dataSync()[0]),
      );
    expect(worst).toBeLessThan(1e-5);
    expect(b.state).toEqual(a.state);
    expect(a.state).toMatchObject({ step: 4, method: 'byol' });
    tf.dispose([...Object.values(a.tensors), ...Object.values(b.tensors)]);

    // A MoCo config cannot resume a BYOL run.
    const moco = loadConfig(mocoSchema, { file: QUICK, overrides: ['data.cropSize=32', 'train.batchSize=8', 'moco.queueSize=32', 'train.maxSteps=6'] });
    await expect(pretrain({ cfg: moco, dataDir: crops, outDir: interrupted, resume: true })).rejects.toThrow(
      /is a byol run, but the config asks for method mocov2/,
    );
  });
});
