#!/usr/bin/env node
// Pretraining benchmark (issue: encoders and MoCoV2): images/s of one MoCo v2 step (momentum
// update, shuffle-BN keys, query forward/backward, InfoNCE over a queue, SGD, enqueue) for
// ResNet-18 and ResNet-50 at 224 x 224 and at the quick config's 64 x 64, ours vs the same step in
// PyTorch (CPU) run by this command. Data loading is excluded (see tools/bench/data). JSON output.
//
// Usage: node tools/bench/pretrain/bench-moco.mjs [--cases 18:64:32,18:224:16,50:224:16] [--steps 3] [--warmup 1] [--no-torch]
//          [--queue 4096] [--torch-device cpu|cuda] [--torch-python .venv/bin/python]
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { backendInfo, tf } from '@emseg/tf';
import { loadConfig } from '@emseg/config';
import { Sgd } from '@emseg/training';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..', '..');
const { mocoSchema } = await import(join(root, 'apps/pretrain/dist/config.js'));
const { createMethod } = await import(join(root, 'apps/pretrain/dist/methods.js'));
const { trainMethodStep } = await import(join(root, 'apps/pretrain/dist/method.js'));

const { values: opts } = parseArgs({
  options: {
    cases: { type: 'string', default: '18:64:32,18:224:16,50:224:16' },
    steps: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '1' },
    'no-torch': { type: 'boolean', default: false },
    queue: { type: 'string', default: '4096' },
    'torch-device': { type: 'string', default: 'cpu' },
    'torch-python': { type: 'string', default: '' },
  },
});
const cases = opts.cases.split(',').map((c) => c.split(':').map(Number));
const steps = Number(opts.steps);
const warmup = Number(opts.warmup);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function benchOurs([depth, size, batch]) {
  const cfg = loadConfig(mocoSchema, {
    file: join(root, 'configs/pretrain/quick.json'),
    overrides: [
      `encoder.architecture="resnet${depth}"`,
      `data.cropSize=${size}`,
      `train.batchSize=${batch}`,
      `moco.queueSize=${opts.queue}`,
      'moco.shuffleGroups=2',
      'moco.mlpHidden=null',
    ],
  });
  const opt = new Sgd(0.9, 1e-4);
  const method = createMethod('mocov2', { cfg, optimizer: opt, totalSteps: warmup + steps });
  const q = tf.randomNormal([batch, size, size, 1], 0, 1, 'float32', 1);
  const k = tf.randomNormal([batch, size, size, 1], 0, 1, 'float32', 2);
  const times = [];
  for (let i = 0; i < warmup + steps; i++) {
    const t0 = performance.now();
    trainMethodStep(method, [q, k], 0.01, i + 1);
    if (i >= warmup) times.push(performance.now() - t0);
  }
  tf.dispose([q, k]);
  method.dispose();
  opt.dispose();
  const ms = median(times);
  return { arch: `resnet${depth}`, size, batch, msPerStep: ms, imagesPerSec: (batch * 1000) / ms, stepsMs: times };
}

function benchTorch() {
  const python = opts['torch-python'] || join(root, '.venv', 'bin', 'python');
  if (!existsSync(python)) return { error: `no ${python}: run \`npm run setup\`` };
  const res = spawnSync(
    python,
    [
      join(here, 'torch_moco.py'),
      '--cases',
      opts.cases,
      '--steps',
      String(steps),
      '--warmup',
      String(warmup),
      '--queue',
      opts.queue,
      '--device',
      opts['torch-device'],
    ],
    { encoding: 'utf8' },
  );
  if (res.status !== 0) return { error: `torch_moco.py exited with ${res.status}: ${res.stderr.slice(-1000)}` };
  return JSON.parse(res.stdout);
}

const ours = cases.map(benchOurs);
const torch = opts['no-torch'] ? null : benchTorch();
const round = (x) => (x == null ? null : Number(x.toFixed(2)));
console.log(
  JSON.stringify(
    {
      benchmark: `pretrain: one MoCo v2 step (queue ${opts.queue}, shuffle-BN 2 groups, SGD), images/s, median after warm-up; data loading excluded`,
      backend: backendInfo(),
      pytorch:
        torch && !torch.error
          ? {
              version: torch.version,
              threads: torch.threads,
              device: torch.device ?? 'cpu',
              gpu: torch.gpu ?? null,
              cuda: torch.cuda ?? null,
              cudnn: torch.cudnn ?? null,
            }
          : torch,
      results: ours.map((o) => {
        const ref = torch?.results?.find((r) => r.arch === o.arch && r.size === o.size && r.batch === o.batch);
        return {
          arch: o.arch,
          size: o.size,
          batch: o.batch,
          oursImagesPerSec: round(o.imagesPerSec),
          pytorchImagesPerSec: round(ref?.imagesPerSec),
          ratioOursOverPytorchTime: ref ? round(o.msPerStep / ref.msPerStep) : null,
          oursMsPerStep: round(o.msPerStep),
          pytorchMsPerStep: round(ref?.msPerStep),
        };
      }),
    },
    null,
    2,
  ),
);
