#!/usr/bin/env node
// Backend benchmark (DESIGN.md section 7): one training step of a ResNet-18 U-Net (1-channel input,
// decoder 256/128/64/32/16, focal + dice, Adam), batch 4, at 128x128 and 256x256, on our native
// backend and on PyTorch (CPU) in the same invocation. Prints one JSON object; ratio = ours / PyTorch.
//
// Usage: npm run bench:backend [-- --sizes 128,256 --batch 4 --steps 5 --warmup 2 --no-torch]
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { backendInfo, tf } from '@emseg/tf';
import { focalDiceLoss, parameterCount, resnetEncoder, trainableVariables, unet } from '@emseg/models';
import { Adam, trainStep } from '@emseg/training';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..', '..');
const { values: opts } = parseArgs({
  options: {
    sizes: { type: 'string', default: '128,256' },
    batch: { type: 'string', default: '4' },
    steps: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '2' },
    'no-torch': { type: 'boolean', default: false },
  },
});
const sizes = opts.sizes.split(',').map(Number);
const batch = Number(opts.batch);
const steps = Number(opts.steps);
const warmup = Number(opts.warmup);

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function benchOurs(size) {
  const net = unet({ encoder: resnetEncoder({ depth: 18, inChannels: 1, seed: 0 }), seed: 1 });
  const vars = trainableVariables(net.model);
  const opt = new Adam();
  const x = tf.randomNormal([batch, size, size, 1], 0, 1, 'float32', 2);
  const y = tf.tidy(() => tf.randomUniform([batch, size, size, 1], 0, 1, 'float32', 3).less(0.1).toFloat());
  const times = [];
  for (let i = 0; i < warmup + steps; i++) {
    const t0 = performance.now();
    trainStep(vars, () => focalDiceLoss(net.forward(x, { training: true }), y), opt, 1e-3);
    if (i >= warmup) times.push(performance.now() - t0);
  }
  const result = { size, batch, msPerStep: median(times), stepsMs: times, params: parameterCount(net.model) };
  tf.dispose([x, y]);
  opt.dispose();
  net.dispose();
  return result;
}

function benchTorch() {
  const python = join(root, '.venv', 'bin', 'python');
  if (!existsSync(python)) return { error: 'no .venv/bin/python: run `npm run setup`' };
  const res = spawnSync(
    python,
    [join(here, 'torch_unet.py'), '--sizes', sizes.join(','), '--batch', String(batch), '--steps', String(steps), '--warmup', String(warmup)],
    { encoding: 'utf8' },
  );
  if (res.status !== 0) return { error: `torch_unet.py exited with ${res.status}: ${res.stderr.slice(-1000)}` };
  return JSON.parse(res.stdout);
}

const ours = sizes.map(benchOurs);
const torch = opts['no-torch'] ? null : benchTorch();
const results = ours.map((o) => {
  const ref = torch?.results?.find((r) => r.size === o.size);
  return {
    size: o.size,
    batch,
    oursMsPerStep: Number(o.msPerStep.toFixed(1)),
    pytorchMsPerStep: ref ? Number(ref.msPerStep.toFixed(1)) : null,
    ratioOursOverPytorch: ref ? Number((o.msPerStep / ref.msPerStep).toFixed(3)) : null,
    oursParams: o.params,
    pytorchParams: ref?.params ?? null,
    oursStepsMs: o.stepsMs.map((t) => Number(t.toFixed(1))),
    pytorchStepsMs: ref?.stepsMs?.map((t) => Number(t.toFixed(1))) ?? null,
  };
});
console.log(
  JSON.stringify(
    {
      benchmark: 'backend: ResNet-18 U-Net training step (focal+dice, Adam), median of steps after warm-up',
      steps,
      warmup,
      backend: backendInfo(),
      pytorch: torch && !torch.error ? { version: torch.version, threads: torch.threads } : torch,
      results,
    },
    null,
    2,
  ),
);
