#!/usr/bin/env node
/**
 * Dumps the training batches emseg's fine-tuning draws at a few steps, so the PyTorch twin's port
 * of the data pipeline (torch_quality.py `parity`) can be checked against them. The batches come
 * from libs/data's `patchBatches` with the options apps/finetune/src/finetune.ts passes it (random
 * sampling, foreground oversampling, URISC augmentation, seeded by train.seed, epoch and position).
 *
 *   node tools/bench/quality/emseg-batches.mjs --config resolved.json --data ROOT --out DIR [--steps 0,1,63,64,149]
 *
 * Writes DIR/manifest.json and one raw file per batch (images float32 little-endian [b, h, w],
 * masks uint8 [b, h, w]). Needs `tsc -b` (imports libs/data/dist).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const { values: o } = parseArgs({
  options: {
    config: { type: 'string' },
    data: { type: 'string' },
    out: { type: 'string' },
    steps: { type: 'string', default: '0,1,63,64,149' },
    help: { type: 'boolean', default: false },
  },
});
if (o.help || !o.config || !o.data || !o.out) {
  process.stdout.write('usage: node tools/bench/quality/emseg-batches.mjs --config resolved.json --data ROOT --out DIR [--steps 0,1,63,64,149]\n');
  process.exit(o.help ? 0 : 2);
}
const data = await import(join(root, 'libs', 'data', 'dist', 'index.js'));
const cfg = JSON.parse(readFileSync(o.config, 'utf8'));
const { patches: p, train: t } = cfg;
if (p.sampling !== 'random') throw new Error(`emseg-batches: patches.sampling ${p.sampling} is not supported (random only)`);
const images = await data.LabeledImages.open({
  ...data.uriscDirectories(resolve(o.data), 'train', cfg.data.track),
  polarity: cfg.data.polarity,
  threshold: cfg.data.labelThreshold,
});
const samples = await images.loadAll();
// finetune.ts batchesPerEpoch for random sampling with perEpoch set
const perEpoch = Math.floor(p.perEpoch / t.batchSize);
mkdirSync(o.out, { recursive: true });
const wanted = [...new Set(o.steps.split(',').map(Number))].filter((s) => s < t.steps).sort((a, b) => a - b);
const manifest = { batchesPerEpoch: perEpoch, names: samples.map((s) => s.name), batches: [] };
for (const step of wanted) {
  const epoch = Math.floor(step / perEpoch);
  const position = step - epoch * perEpoch;
  let k = 0;
  for (const batch of data.patchBatches(samples, {
    mode: 'random',
    size: p.size,
    stride: p.stride,
    batchSize: t.batchSize,
    seed: t.seed,
    epoch,
    patchesPerEpoch: perEpoch * t.batchSize,
    foregroundProbability: p.foregroundProbability,
    augmentation: p.augmentation === 'urisc' ? data.URISC_AUGMENTATION : undefined,
  })) {
    if (k++ !== position) continue;
    const img = `step-${step}-images.f32`;
    const mask = `step-${step}-masks.u8`;
    writeFileSync(join(o.out, img), Buffer.from(batch.images.data.buffer, batch.images.data.byteOffset, batch.images.data.byteLength));
    writeFileSync(join(o.out, mask), Buffer.from(batch.masks.data.buffer, batch.masks.data.byteOffset, batch.masks.data.byteLength));
    manifest.batches.push({ step, epoch, position, images: img, masks: mask, sources: batch.sources });
    break;
  }
}
writeFileSync(join(o.out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
process.stdout.write(`${JSON.stringify({ dir: o.out, steps: manifest.batches.map((b) => b.step) })}\n`);
