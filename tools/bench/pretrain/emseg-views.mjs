#!/usr/bin/env node
/**
 * emseg's MoCo view batches on stdout, for the PyTorch MoCo twin (torch_moco_train.py).
 *
 *   node tools/bench/pretrain/emseg-views.mjs --config CFG.json --data CROPS --steps N
 *
 * CFG.json is a resolved pretraining config (apps/pretrain's MocoConfig, as emseg's `pretrain moco`
 * writes it to its run folder). The batches are exactly the ones emseg's pretraining loop trains on
 * (apps/pretrain/src/pretrain.ts): libs/data's `UnlabeledCrops.stream` with the run seed, epoch after
 * epoch, `data.cropSize` views of `train.batchSize` crops, two views per crop, `cfg.augmentation`,
 * normalised by `normalise` ((x - mean) / std, as `imageBatchToTensor` does). Step s is batch
 * s - e * stepsPerEpoch of epoch e = floor(s / stepsPerEpoch), stepsPerEpoch = floor(crops / batch).
 *
 * Output: for each step, view 0 (the query) then view 1 (the key), each batch x size x size
 * little-endian float32 (image-major, row-major). Writes wait for the reader (back-pressure).
 */
import { once } from 'node:events';
import { join, resolve } from 'node:path';
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const { UnlabeledCrops, normalise } = await import(join(root, 'libs', 'data', 'dist', 'index.js'));

const { values: a } = parseArgs({ options: { config: { type: 'string' }, data: { type: 'string' }, steps: { type: 'string' } } });
if (!a.config || !a.data || !a.steps) {
  process.stderr.write('usage: emseg-views.mjs --config CFG.json --data CROPS --steps N\n');
  process.exit(2);
}
const cfg = JSON.parse(readFileSync(a.config, 'utf8'));
const steps = Number(a.steps);
const crops = await UnlabeledCrops.open(a.data, { badCrops: cfg.data.badCrops ?? 'fail', minSize: cfg.data.cropSize });
const batchSize = cfg.train.batchSize;
const stepsPerEpoch = Math.floor(crops.size / batchSize);
const norm = { mean: cfg.data.mean, std: cfg.data.std };
process.stderr.write(`emseg-views: ${crops.size} crops, ${stepsPerEpoch} batches per epoch, ${steps} steps\n`);

const out = process.stdout;
let step = 0;
for (let epoch = 0; step < steps; epoch++) {
  let position = 0;
  for await (const batch of crops.stream({
    seed: cfg.train.seed,
    epoch,
    batchSize,
    size: cfg.data.cropSize,
    views: 2,
    augmentation: cfg.augmentation,
    prefetch: cfg.data.prefetch,
  })) {
    if (position++ >= stepsPerEpoch || step >= steps) break;
    for (const view of batch.views) {
      const values = normalise(view.data, norm);
      if (!out.write(Buffer.from(values.buffer, values.byteOffset, values.byteLength))) await once(out, 'drain');
    }
    step++;
  }
}
out.end();
