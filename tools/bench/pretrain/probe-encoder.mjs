#!/usr/bin/env node
/**
 * Frozen-feature probes of one encoder bundle on the membrane task, the same for every encoder
 * (emseg's MoCo bundle or a PyTorch one imported by tools/import-torch), for bench:quality's
 * `pretrain` task:
 *
 *   - linear: apps/pretrain's own probe (probe.ts `loadProbeData` + `runProbe`, the probe that
 *     `pretrain moco --probe` logs): stride-2/4/8 features upsampled and concatenated, a per-pixel
 *     logistic regression (1x1 conv, Adam, positive-weighted BCE) fitted on the train patches,
 *     best-threshold F1 on the val patches;
 *   - kNN: the same pixel features (computed as probe.ts computes them, standardised by the train
 *     patches' statistics, then L2-normalised); `--knn-train` train pixels and `--knn-val` val
 *     pixels drawn at random (libs/data Rng, seed 0); each val pixel's score is the fraction of its k
 *     nearest train pixels (cosine) that are membrane; best-threshold F1 (emseg's
 *     `bestThresholdF1`, thresholds 0.05..0.95) over the val pixels.
 *
 * `--encoder random:resnet18:SEED` probes emseg's random initialisation instead (the reference).
 *
 *   node tools/bench/pretrain/probe-encoder.mjs --encoder BUNDLE --probe URISC_ROOT [--json OUT]
 *     [--patch 128] [--patches 8] [--steps 60] [--k 20] [--knn-train 8192] [--knn-val 16384]
 *
 * Prints one JSON object: { linear: {f1, threshold, precision, recall}, knn: {...}, seconds }.
 * Needs `tsc -b` (imports the dist/ of libs/models, libs/data, libs/evaluation and apps/pretrain).
 */
import { writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const { values: o } = parseArgs({
  options: {
    encoder: { type: 'string' },
    probe: { type: 'string' },
    json: { type: 'string' },
    patch: { type: 'string', default: '128' },
    patches: { type: 'string', default: '8' },
    steps: { type: 'string', default: '60' },
    k: { type: 'string', default: '20' },
    'knn-train': { type: 'string', default: '8192' },
    'knn-val': { type: 'string', default: '16384' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (o.help || !o.encoder || !o.probe) {
  process.stdout.write(
    'usage: node tools/bench/pretrain/probe-encoder.mjs --encoder BUNDLE --probe URISC_ROOT [--json OUT] [--patch 128] [--patches 8] [--steps 60] [--k 20] [--knn-train 8192] [--knn-val 16384]\n',
  );
  process.exit(o.help ? 0 : 2);
}

const dist = (...p) => import(join(root, ...p, 'dist', 'index.js'));
const { tf } = await dist('libs', 'tf');
const { createEncoder, loadEncoder } = await dist('libs', 'models');
const { Rng } = await dist('libs', 'data');
const { bestThresholdF1 } = await dist('libs', 'evaluation');
const { loadProbeData, runProbe, disposeProbeData } = await import(join(root, 'apps', 'pretrain', 'dist', 'probe.js'));

/** probe.ts `pixelFeatures`: stride-2/4/8 feature maps, bilinearly upsampled to the patch, concatenated. */
function pixelFeatures(encoder, x) {
  return tf.tidy(() => {
    const [, h, w] = x.shape;
    const maps = encoder.features(x, { training: false }).slice(0, 3);
    return tf.concat(
      maps.map((m) => tf.image.resizeBilinear(m, [h, w])),
      3,
    );
  });
}

/** `n` distinct indices of 0..total-1 (a seeded permutation's head), ascending. */
function sampleIndices(total, n, seed) {
  const p = new Rng(seed).permutation(total);
  return Int32Array.from(p.subarray(0, Math.min(n, total))).sort();
}

function knnProbe(encoder, data, { k, trainPixels, valPixels }) {
  const trainX = pixelFeatures(encoder, data.train.images);
  const valX = pixelFeatures(encoder, data.val.images);
  const c = trainX.shape[3];
  const { mean, variance } = tf.moments(trainX, [0, 1, 2]);
  const std = tf.tidy(() => variance.sqrt().add(1e-6));
  const rows = (x, m, idx) =>
    tf.tidy(() => {
      const flat = x.sub(mean).div(std).reshape([-1, c]);
      const picked = tf.gather(flat, tf.tensor1d(idx, 'int32'));
      return picked.div(picked.norm('euclidean', 1, true).maximum(1e-12));
    });
  const trainIdx = sampleIndices(trainX.size / c, trainPixels, 1);
  const valIdx = sampleIndices(valX.size / c, valPixels, 2);
  const trainMask = data.train.masks.dataSync();
  const valMask = data.val.masks.dataSync();
  const trainF = rows(trainX, data.train.masks, trainIdx);
  const valF = rows(valX, data.val.masks, valIdx);
  tf.dispose([trainX, valX, mean, variance, std]);
  const labels = tf.tensor1d(Float32Array.from(trainIdx, (i) => trainMask[i]));
  const scores = new Float32Array(valIdx.length);
  const chunk = 2048;
  try {
    for (let s = 0; s < valIdx.length; s += chunk) {
      const n = Math.min(chunk, valIdx.length - s);
      const part = tf.tidy(() => {
        const sims = tf.matMul(valF.slice([s, 0], [n, c]), trainF, false, true);
        const { indices } = tf.topk(sims, k);
        return tf
          .gather(labels, indices.reshape([-1]))
          .reshape([n, k])
          .mean(1);
      });
      scores.set(part.dataSync(), s);
      part.dispose();
    }
  } finally {
    tf.dispose([trainF, valF, labels]);
  }
  const truth = Uint8Array.from(valIdx, (i) => valMask[i]);
  const sweep = bestThresholdF1({ width: scores.length, height: 1, data: scores }, { width: truth.length, height: 1, data: truth });
  return {
    f1: sweep.best.f1,
    threshold: sweep.best.threshold,
    precision: sweep.best.precision,
    recall: sweep.best.recall,
    k,
    trainPixels: trainIdx.length,
    valPixels: valIdx.length,
    trainMembraneFraction: Array.from(trainIdx).reduce((a, i) => a + trainMask[i], 0) / trainIdx.length,
    valMembraneFraction: truth.reduce((a, v) => a + v, 0) / truth.length,
  };
}

const t0 = performance.now();
const { encoder, meta, dir } = await openEncoder(o.encoder);
const first = (v) => (Array.isArray(v) ? v[0] : v);
const norm = { mean: first(meta.normalization.mean), std: first(meta.normalization.std) };
const data = await loadProbeData(resolve(o.probe), { patchSize: Number(o.patch), mean: norm.mean, std: norm.std, maxPatches: Number(o.patches) });
let result;
try {
  const t1 = performance.now();
  const linear = runProbe(encoder, data, { steps: Number(o.steps) });
  const t2 = performance.now();
  const knn = knnProbe(encoder, data, { k: Number(o.k), trainPixels: Number(o['knn-train']), valPixels: Number(o['knn-val']) });
  const t3 = performance.now();
  result = {
    encoder: dir,
    architecture: meta.architecture,
    training: meta.training?.method ?? null,
    normalization: norm,
    probe: { patchSize: Number(o.patch), patches: Number(o.patches), linearSteps: Number(o.steps) },
    linear,
    knn,
    seconds: { load: round((t1 - t0) / 1000), linear: round((t2 - t1) / 1000), knn: round((t3 - t2) / 1000) },
  };
} finally {
  disposeProbeData(data);
  encoder.dispose();
}
const text = `${JSON.stringify(result)}\n`;
if (o.json) writeFileSync(o.json, text);
process.stdout.write(text);

/** A bundle, or `random:<architecture>:<seed>`: emseg's random initialisation (the reference), CEM500K normalisation. */
async function openEncoder(ref) {
  const random = /^random:([\w-]+):(\d+)$/.exec(ref);
  if (!random) return loadEncoder(resolve(ref));
  const encoder = createEncoder(random[1], { inChannels: 1, seed: Number(random[2]) });
  return { encoder, dir: ref, meta: { architecture: random[1], training: { method: 'random-init' }, normalization: { mean: 0.573, std: 0.127 } } };
}

function round(v) {
  return Math.round(v * 100) / 100;
}
