#!/usr/bin/env node
/**
 * Benchmark: UnlabeledCrops throughput (crops/s, two CEM500K-augmented 224 x 224 views per crop)
 * against the training step it feeds (a ResNet encoder from @emseg/models: forward + backward on
 * the query views, forward on the key views, as in a MoCo step), and the time a training loop
 * actually waits for data when the two run together.
 *
 *   npx tsc -b libs/data libs/models && node tools/bench/data/bench-crops.mjs [--crops 512] [--batch 32] [--size 224] [--depth 18] [--steps 5] [--workers 0,1,2]
 *
 * Crops are synthetic (generated once, cached under .emseg/bench/). Prints JSON.
 */
import { existsSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { CEM500K_AUGMENTATION, CEM500K_NORMALISATION, UnlabeledCrops, augmentedViews, generateSyntheticCrops, imageBatchToTensor } from '@emseg/data';
import { backendInfo, tf } from '@emseg/tf';

const { values: args } = parseArgs({
  options: {
    crops: { type: 'string', default: '512' },
    batch: { type: 'string', default: '32' },
    size: { type: 'string', default: '224' },
    depth: { type: 'string', default: '18' },
    steps: { type: 'string', default: '5' },
    workers: { type: 'string', default: '0,1,2' },
  },
});
const workerCounts = args.workers.split(',').map(Number);
const count = Number(args.crops);
const batchSize = Number(args.batch);
const size = Number(args.size);
const depth = Number(args.depth);
const steps = Number(args.steps);
const root = fileURLToPath(new URL('../../../', import.meta.url));
const round = (x, d = 1) => Number(x.toFixed(d));

/** CPU time stolen by the hypervisor since the start (Linux /proc/stat), to flag noisy numbers. */
const readStat = () => {
  try {
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    return { total: cpu.reduce((a, b) => a + b, 0), steal: cpu[7] ?? 0 };
  } catch {
    return null;
  }
};
const statAtStart = readStat();
const stealPercent = () => {
  const now = readStat();
  if (!now || !statAtStart) return null;
  return round((100 * (now.steal - statAtStart.steal)) / Math.max(1, now.total - statAtStart.total));
};

// 1. Data: `count` synthetic crops of size x size (CEM500K crops are 224 x 224 uint8).
const dir = join(root, '.emseg', 'bench', `crops-${count}x${size}`);
if (!existsSync(dir)) await generateSyntheticCrops({ dir, seed: 1, count, size });
const crops = await UnlabeledCrops.open(dir);

// 2. Where loading time goes: decode only, augmentation only (in memory), then the full stream.
let t0 = performance.now();
const decoded = [];
for (let i = 0; i < Math.min(128, crops.size); i++) decoded.push(await crops.read(i));
const decodeSerialMs = (performance.now() - t0) / decoded.length;
t0 = performance.now();
await Promise.all(Array.from({ length: Math.min(128, crops.size) }, (_, i) => crops.read(i)));
const decodeConcurrentMs = (performance.now() - t0) / decoded.length;
t0 = performance.now();
for (const [i, img] of decoded.entries()) augmentedViews(img, [2 * i, 2 * i + 1], CEM500K_AUGMENTATION, size);
const augmentMs = (performance.now() - t0) / decoded.length;

const loader = {};
for (const workers of workerCounts) {
  const stream = crops.stream({ seed: 1, epoch: 0, batchSize, size, workers });
  t0 = performance.now();
  for await (const batch of stream) if (batch.views.length !== 2) throw new Error('expected two views');
  const seconds = (performance.now() - t0) / 1000;
  loader[`workers=${workers}`] = { cropsPerSec: round(stream.stats.crops / seconds), msPerBatch: round((seconds * 1000) / stream.stats.batches) };
}
const loaderCropsPerSec = Math.max(...Object.values(loader).map((l) => l.cropsPerSec));

// 3. The training step it feeds: ResNet encoder, query views with gradients, key views forward only.
const { resnetEncoder } = await import('@emseg/models');
const encoder = resnetEncoder({ depth, seed: 1 });
const variables = encoder.model.trainableWeights.map((w) => w.read());
const first = (await crops.stream({ seed: 2, epoch: 0, batchSize, size })[Symbol.asyncIterator]().next()).value;
function trainStep(views) {
  const [q, k] = views.map((v) => imageBatchToTensor(v, CEM500K_NORMALISATION));
  tf.tidy(() => {
    const { grads } = tf.variableGrads(
      () => {
        const feats = encoder.model.apply(q, { training: true });
        const last = Array.isArray(feats) ? feats[feats.length - 1] : feats;
        return tf.mean(last);
      },
      variables.filter((v) => v instanceof tf.Variable),
    );
    const keyFeats = encoder.model.apply(k, { training: true });
    (Array.isArray(keyFeats) ? keyFeats : [keyFeats]).forEach((t) => t.dataSync());
    Object.values(grads).forEach((g) => g.dataSync());
  });
  q.dispose();
  k.dispose();
}
trainStep(first.views); // warm-up (kernel selection, allocations)
t0 = performance.now();
for (let s = 0; s < steps; s++) trainStep(first.views);
const stepMs = (performance.now() - t0) / steps;
const stepCropsPerSec = (batchSize * 1000) / stepMs;

// 4. Together: the loop trains on the stream; how long does it wait for each batch?
const pipeline = {};
for (const workers of workerCounts.slice(0, 2)) {
  const together = crops.stream({ seed: 3, epoch: 0, batchSize, size, prefetch: 2, workers });
  const iterator = together[Symbol.asyncIterator]();
  // The first batch cannot be prefetched behind a step: count it as start-up, not as starvation.
  t0 = performance.now();
  let batch = (await iterator.next()).value;
  const firstBatchMs = performance.now() - t0;
  const waitBefore = together.stats.waitMs;
  t0 = performance.now();
  for (let s = 0; s < steps; s++) {
    trainStep(batch.views);
    batch = (await iterator.next()).value;
  }
  const ms = performance.now() - t0;
  await iterator.return?.();
  const waited = together.stats.waitMs - waitBefore;
  pipeline[`workers=${workers}`] = {
    steps,
    firstBatchMs: round(firstBatchMs),
    msPerStep: round(ms / steps),
    waitMsPerStep: round(waited / steps),
    waitFraction: round(waited / ms, 3),
  };
}

console.log(
  JSON.stringify(
    {
      benchmark: 'data/crops-throughput',
      machine: { cpuCores: cpus().length, backend: backendInfo().backend, tensorflow: backendInfo().tensorflowVersion },
      crops: { count: crops.size, size, views: 2, augmentation: 'CEM500K', batchSize },
      perCrop: { decodeMsSerial: round(decodeSerialMs, 2), decodeMsConcurrent: round(decodeConcurrentMs, 2), augmentTwoViewsMs: round(augmentMs, 2) },
      loader,
      trainStep: { model: `ResNet-${depth} encoder (query fwd+bwd, key fwd)`, msPerStep: round(stepMs), cropsPerSec: round(stepCropsPerSec) },
      loaderOverStep: round(loaderCropsPerSec / stepCropsPerSec, 2),
      pipeline,
      cpuStealPercentDuringRun: stealPercent(),
    },
    null,
    2,
  ),
);
