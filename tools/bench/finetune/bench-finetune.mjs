#!/usr/bin/env node
/**
 * Fine-tuning benchmark (issue 7), printing one JSON object:
 *  - training step ms of the ResNet-18 / ResNet-50 U-Net (focal + dice, Adam) at 256 and 512 px
 *    patches, exactly as the finetune loop runs it;
 *  - full-image inference of a 9958 x 9959 image (blended tiles): seconds and peak RSS, measured in
 *    a fresh child process so the peak is inference's own; plus writing the two outputs;
 * each with the same model in PyTorch (torch_finetune.py, the project's .venv) and the ratio
 * emseg / PyTorch (> 1: we are slower).
 *
 *   node tools/bench/finetune/bench-finetune.mjs [--archs resnet18,resnet50] [--sizes 256,512]
 *     [--batch 4] [--steps 3] [--warmup 1] [--image 9958x9959] [--infer-arch resnet18]
 *     [--tile 1024] [--overlap 128] [--skip-train] [--skip-infer] [--skip-torch]
 *     [--torch-device cpu|cuda] [--torch-python .venv/bin/python]
 *
 * Needs `tsc -b` (imports the built dist/ of the libs and of apps/finetune).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..', '..');
const dist = (p) => join(root, p);

const { values: o } = parseArgs({
  options: {
    archs: { type: 'string', default: 'resnet18,resnet50' },
    sizes: { type: 'string', default: '256,512' },
    batch: { type: 'string', default: '4' },
    steps: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '1' },
    image: { type: 'string', default: '9958x9959' },
    'infer-arch': { type: 'string', default: 'resnet18' },
    tile: { type: 'string', default: '1024' },
    overlap: { type: 'string', default: '128' },
    'skip-train': { type: 'boolean', default: false },
    'skip-infer': { type: 'boolean', default: false },
    'skip-torch': { type: 'boolean', default: false },
    'infer-child': { type: 'boolean', default: false },
    'torch-device': { type: 'string', default: 'cpu' },
    'torch-python': { type: 'string', default: '' },
  },
});
const [width, height] = o.image.split('x').map(Number);
const python = o['torch-python'] || join(root, '.venv', 'bin', 'python');

async function load() {
  const { tf, backendInfo } = await import(dist('libs/tf/dist/index.js'));
  const models = await import(dist('libs/models/dist/index.js'));
  const training = await import(dist('libs/training/dist/index.js'));
  const segmentation = await import(dist('libs/segmentation/dist/index.js'));
  const { toSubmission } = await import(dist('apps/finetune/dist/tasks/urisc.js'));
  return { tf, backendInfo, models, training, Segmenter: segmentation.Segmenter, inference: { ...segmentation, toSubmission } };
}

function segmenter(m, arch, seed) {
  const depth = arch === 'resnet50' ? 50 : arch === 'resnet34' ? 34 : 18;
  return m.Segmenter.create(
    m.models.resnetEncoder({ depth, seed }),
    { mean: [0.573], std: [0.127] },
    { encoderSource: 'random', encoderRunId: null },
    { seed: seed + 1 },
  );
}

/** ms per training step (median), as finetune.ts's trainOnBatch runs it. */
async function trainStepMs(m, arch, size, batch, steps, warmup) {
  const { tf } = m;
  const seg = segmenter(m, arch, 1);
  const adam = new m.training.Adam();
  const loss = m.models.segmentationLoss({ kind: 'focal-dice', gamma: 2, lambda: 1 });
  const x = tf.randomUniform([batch, size, size, 1], 0, 1, 'float32', 1);
  const y = tf.tidy(() => tf.randomUniform([batch, size, size, 1], 0, 1, 'float32', 2).less(0.08).toFloat());
  const times = [];
  for (let i = 0; i < warmup + steps; i++) {
    const t0 = performance.now();
    m.training.trainStep(m.models.trainableVariables(seg.net.model), () => loss(seg.forward(x, true), y), adam, 1e-3);
    if (i >= warmup) times.push(performance.now() - t0);
  }
  tf.dispose([x, y]);
  adam.dispose();
  seg.dispose();
  times.sort((a, b) => a - b);
  return { median: times[Math.floor(times.length / 2)], stepsMs: times.map((t) => Math.round(t)) };
}

function torch(args) {
  if (o['skip-torch']) return { skipped: true };
  if (!existsSync(python)) return { error: `no ${python}: run \`npm run setup\`` };
  const res = spawnSync(python, [join(here, 'torch_finetune.py'), ...args, '--device', o['torch-device']], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (res.status !== 0) return { error: `torch_finetune.py exited with ${res.status}: ${res.stderr.slice(-800)}` };
  return JSON.parse(res.stdout.trim().split('\n').pop());
}

/**
 * Peak resident set size of this process in MB (VmHWM). Not `resourceUsage().maxRSS`: on Linux a
 * child inherits its parent's maxrss at fork, so a child of a big process would report the parent.
 */
function peakRssMB() {
  const status = readFileSync('/proc/self/status', 'utf8');
  const kb = Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1]);
  return Number.isFinite(kb) ? kb / 1024 : process.resourceUsage().maxRSS / 1024;
}

/** The inference measurement, run in this (fresh) process: predict, then write the outputs. */
async function inferChild() {
  const m = await load();
  const seg = segmenter(m, o['infer-arch'], 3);
  const data = new Uint8Array(width * height);
  let s = 12345;
  for (let i = 0; i < data.length; i++) data[i] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24; // noise, like the torch side
  const image = { width, height, bitDepth: 8, data };
  const options = { tileSize: Number(o.tile), overlap: Number(o.overlap), window: 'gaussian', batchSize: 1, flipTta: false };
  const t0 = performance.now();
  const p = await m.inference.predictImage(seg, image, options, 'noise');
  const seconds = (performance.now() - t0) / 1000;
  const peakAfterPredict = peakRssMB();
  const { writeImage } = await import(dist('libs/data/dist/index.js'));
  const dir = mkdtempSync(join(tmpdir(), 'emseg-bench-finetune-'));
  const t1 = performance.now();
  await writeImage(join(dir, 'prob.png'), m.inference.toProbability16(p, width, height), { compressionLevel: 3 });
  await writeImage(join(dir, 'sub.png'), m.inference.toSubmission(p, width, height, 0.5));
  const writeSeconds = (performance.now() - t1) / 1000;
  rmSync(dir, { recursive: true, force: true });
  seg.dispose();
  process.stdout.write(
    `${JSON.stringify({ tiles: m.inference.tileCount(width, height, options), seconds, peakRssMB: peakAfterPredict, writeSeconds, peakRssWithWriteMB: peakRssMB() })}\n`,
  );
}

async function main() {
  if (o['infer-child']) return inferChild();
  const m = await load();
  const out = {
    benchmark: 'finetune',
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryGB: Math.round(totalmem() / 2 ** 30) },
    backend: m.backendInfo(),
    train: [],
    inference: null,
  };
  const batch = Number(o.batch);
  if (!o['skip-train']) {
    for (const arch of o.archs.split(',')) {
      for (const size of o.sizes.split(',').map(Number)) {
        const ours = await trainStepMs(m, arch, size, batch, Number(o.steps), Number(o.warmup));
        const ref = torch(['train', '--arch', arch, '--size', String(size), '--batch', String(batch), '--steps', o.steps, '--warmup', o.warmup]);
        out.train.push({
          arch,
          size,
          batch,
          emsegMs: Math.round(ours.median),
          emsegStepsMs: ours.stepsMs,
          torchMs: ref.msPerStep ? Math.round(ref.msPerStep) : null,
          ratio: ref.msPerStep ? +(ours.median / ref.msPerStep).toFixed(2) : null,
          torch: ref.msPerStep ? undefined : ref,
        });
        process.stderr.write(
          `train ${arch} ${size}px x${batch}: emseg ${Math.round(ours.median)} ms, torch ${ref.msPerStep ? Math.round(ref.msPerStep) : '-'} ms\n`,
        );
      }
    }
  }
  if (!o['skip-infer']) {
    const child = spawnSync(
      process.execPath,
      [fileURLToPath(import.meta.url), '--infer-child', '--image', o.image, '--infer-arch', o['infer-arch'], '--tile', o.tile, '--overlap', o.overlap],
      { encoding: 'utf8', maxBuffer: 1 << 24 },
    );
    if (child.status !== 0) throw new Error(`inference child failed (${child.status}): ${child.stderr.slice(-2000)}`);
    const ours = JSON.parse(child.stdout.trim().split('\n').pop());
    const ref = torch(['infer', '--arch', o['infer-arch'], '--width', String(width), '--height', String(height), '--tile', o.tile, '--overlap', o.overlap]);
    out.inference = {
      arch: o['infer-arch'],
      width,
      height,
      tile: Number(o.tile),
      overlap: Number(o.overlap),
      emseg: ours,
      torch: ref,
      timeRatio: ref.seconds ? +(ours.seconds / ref.seconds).toFixed(2) : null,
      peakRssRatio: ref.peakRssMB ? +(ours.peakRssMB / ref.peakRssMB).toFixed(2) : null,
    };
  }
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}

main().catch((err) => {
  process.stderr.write(`error: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
