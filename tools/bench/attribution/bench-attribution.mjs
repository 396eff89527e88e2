#!/usr/bin/env node
// Benchmark of `finetune attribute`'s integrated gradients; prints one JSON object.
//
//   node tools/bench/attribution/bench-attribution.mjs [--archs resnet18,resnet50] [--window 1024]
//        [--steps 50] [--batch 2] [--pixels 1]
//
// For each encoder, in its own child process (so peak RSS is that model's): a U-Net with the default
// decoder (256/128/64/32/16, random init) attributes `--pixels` pixels at the centre of a
// `--window` x `--window` EM-like window with `--steps` trapezoid steps, `--batch` interpolated
// images per forward/backward pass. Reports seconds per pixel attribution, seconds per gradient
// evaluation (a pixel costs steps + 1 of them, plus 2 forwards), peak RSS, and how far from the pixel
// the attribution is non-zero (the receptive field actually reached: the window must hold it).
// The machine's load average is recorded before and after: on a shared machine it says how much to
// trust the timings.
import { spawnSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const { values } = parseArgs({
  options: {
    archs: { type: 'string', default: 'resnet18,resnet50' },
    window: { type: 'string', default: '1024' },
    steps: { type: 'string', default: '50' },
    batch: { type: 'string', default: '2' },
    pixels: { type: 'string', default: '1' },
    child: { type: 'string' },
  },
});
const WINDOW = Number(values.window);
const STEPS = Number(values.steps);
const BATCH = Number(values.batch);
const PIXELS = Number(values.pixels);

async function measure(arch) {
  const imp = (p) => import(pathToFileURL(join(ROOT, p)).href);
  const { createEncoder } = await imp('libs/models/dist/index.js');
  const { backendInfo } = await imp('libs/tf/dist/index.js');
  const { Rng, renderEmScene } = await imp('libs/data/dist/index.js');
  const { Segmenter } = await imp('libs/segmentation/dist/index.js');
  const { integratedGradients, makeBaseline, normalizeField, pixelTarget, attributionAreas } = await imp('apps/finetune/dist/attribution.js');
  const seg = Segmenter.create(createEncoder(arch, { seed: 1 }), { mean: [0.5], std: [0.2] }, { encoderSource: 'random', encoderRunId: null }, { seed: 2 });
  const scene = renderEmScene(new Rng(3), { width: WINDOW, height: WINDOW });
  const window = Float32Array.from(scene.image, (v) => v / 255);
  const baseline = makeBaseline(window, WINDOW, WINDOW, 'mean', { mean: 0.5 });
  const c = WINDOW / 2;
  const times = [];
  let ig;
  for (let i = 0; i < PIXELS; i++) {
    const t0 = performance.now();
    ig = await integratedGradients(pixelTarget(seg, c + i, c), window, baseline, WINDOW, WINDOW, { steps: STEPS, batch: BATCH });
    times.push((performance.now() - t0) / 1000);
  }
  let reach = 0;
  for (let i = 0; i < ig.attribution.length; i++)
    if (ig.attribution[i] !== 0) reach = Math.max(reach, Math.abs((i % WINDOW) - c), Math.abs(Math.floor(i / WINDOW) - c));
  const field = normalizeField(ig.attribution).field;
  const diff = ig.target - ig.baselineTarget;
  return {
    arch,
    backend: backendInfo().package,
    secondsPerPixel: Math.min(...times),
    secondsPerPixelAll: times,
    secondsPerGradientEvaluation: Math.min(...times) / (STEPS + 1),
    extrapolatedSecondsPerPixelAt50Steps: (Math.min(...times) / (STEPS + 1)) * 51,
    peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
    attributionReachPx: reach,
    completenessError: Math.abs(ig.sum - diff) / Math.abs(diff),
    sk: attributionAreas(field, [0.01, 0.05], 2.18),
  };
}

if (values.child) {
  process.stdout.write(`${JSON.stringify(await measure(values.child))}\n`);
  process.exit(0);
}

const before = loadavg();
const results = [];
for (const arch of values.archs.split(',')) {
  const r = spawnSync(
    process.execPath,
    [
      fileURLToPath(import.meta.url),
      '--child',
      arch,
      '--window',
      String(WINDOW),
      '--steps',
      String(STEPS),
      '--batch',
      String(BATCH),
      '--pixels',
      String(PIXELS),
    ],
    { cwd: ROOT, encoding: 'utf8', maxBuffer: 1 << 26 },
  );
  if (r.status !== 0) {
    results.push({
      arch,
      error: `exit ${r.status ?? r.signal}${r.signal === 'SIGKILL' ? ' (killed: out of memory?)' : ''}: ${(r.stderr || '').trim().split('\n').slice(-3).join(' ')}`,
    });
    continue;
  }
  results.push(JSON.parse(r.stdout.trim().split('\n').pop()));
}
console.log(
  JSON.stringify(
    {
      benchmark: 'attribution',
      settings: { window: WINDOW, steps: STEPS, batch: BATCH, pixels: PIXELS, baseline: 'mean', target: 'logit' },
      machine: {
        cpus: cpus().length,
        model: cpus()[0]?.model,
        loadAverageBefore: before,
        loadAverageAfter: loadavg(),
        intraOpThreads: process.env.TF_NUM_INTRAOP_THREADS ?? null,
      },
      results,
    },
    null,
    2,
  ),
);
