#!/usr/bin/env node
// Model benchmark for libs/models (prints one JSON object):
//   unet:    forward + backward (gradients, no optimizer step) of a U-Net in training mode with
//            focal + dice, ours with native kernels (fused BatchNorm, ReluGrad), ours with plain tfjs
//            ops (EMSEG_NATIVE_KERNELS=0), and PyTorch on the same model, in one invocation;
//   encoder: eval-mode encoder features (prediction), ours vs PyTorch;
//   bundle:  saveEncoderBundle / loadEncoder of a ResNet-50.
// Ratios are ours / PyTorch (below 1 = faster than PyTorch). Our two variants alternate step by
// step, so machine load affects both alike.
//
// Usage: npx tsc -b libs/models && node tools/bench/models/bench-models.mjs
//          [--unet 18:128:4,18:256:4] [--encoder 18:512:1,50:512:1] [--steps 5] [--warmup 2]
//          [--torch-threads N] [--no-torch]
// The JSON records the load average before and after: on a shared machine PyTorch's OpenMP threads
// slow down far more than TensorFlow's under contention (compare --torch-threads 1).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { backendInfo, tf } from '@emseg/tf';
import { focalDiceLoss, loadEncoder, nativeKernelsAvailable, parameterCount, resnetEncoder, saveEncoderBundle, trainableVariables, unet } from '@emseg/models';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..', '..');
const { values: opts } = parseArgs({
  options: {
    unet: { type: 'string', default: '18:128:4,18:256:4' },
    encoder: { type: 'string', default: '18:512:1,50:512:1' },
    steps: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '2' },
    'torch-threads': { type: 'string', default: '0' },
    'no-torch': { type: 'boolean', default: false },
  },
});
const loadBefore = loadavg().map((v) => Number(v.toFixed(2)));
const steps = Number(opts.steps);
const warmup = Number(opts.warmup);
const specs = (text) =>
  text
    .split(',')
    .filter(Boolean)
    .map((s) => s.split(':').map(Number));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const round = (v) => (v == null ? null : Number(v.toFixed(1)));

/** Runs each variant's step in turn, warmup + steps times; returns ms per variant. */
function interleaved(variants) {
  const times = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
  for (let i = 0; i < warmup + steps; i++) {
    for (const [name, { env, step }] of Object.entries(variants)) {
      process.env.EMSEG_NATIVE_KERNELS = env;
      const t0 = performance.now();
      step();
      if (i >= warmup) times[name].push(performance.now() - t0);
    }
  }
  delete process.env.EMSEG_NATIVE_KERNELS;
  return times;
}

function benchUnet([depth, size, batch]) {
  const net = unet({ encoder: resnetEncoder({ depth, seed: 0 }), seed: 1 });
  const vars = Object.values(trainableVariables(net.model));
  const x = tf.randomNormal([batch, size, size, 1], 0, 1, 'float32', 2);
  const y = tf.tidy(() => tf.randomUniform([batch, size, size, 1], 0, 1, 'float32', 3).less(0.1).toFloat());
  const step = () => {
    const { value, grads } = tf.variableGrads(() => focalDiceLoss(net.forward(x, { training: true }), y), vars);
    value.dataSync();
    tf.dispose([value, ...Object.values(grads)]);
  };
  const times = interleaved({ native: { env: '1', step }, plainTfjs: { env: '0', step } });
  const result = { depth, size, batch, params: parameterCount(net.model), nativeMs: times.native, plainTfjsMs: times.plainTfjs };
  tf.dispose([x, y]);
  net.dispose();
  return result;
}

function benchEncoder([depth, size, batch]) {
  const encoder = resnetEncoder({ depth, seed: 0 });
  const x = tf.randomNormal([batch, size, size, 1], 0, 1, 'float32', 2);
  const step = () => {
    const feats = encoder.features(x);
    feats[4].sum().dataSync();
    tf.dispose(feats);
  };
  const times = interleaved({ ours: { env: '1', step } });
  x.dispose();
  encoder.dispose();
  return { depth, size, batch, ms: times.ours };
}

async function benchBundle() {
  const dir = mkdtempSync(join(tmpdir(), 'emseg-bench-bundle-'));
  const encoder = resnetEncoder({ depth: 50, seed: 0 });
  const meta = { normalization: { mean: 0.5, std: 0.2 }, training: { method: 'random-init' } };
  let t0 = performance.now();
  await saveEncoderBundle(join(dir, 'encoder'), encoder, meta);
  const saveMs = performance.now() - t0;
  t0 = performance.now();
  const loaded = await loadEncoder(join(dir, 'encoder'));
  const loadMs = performance.now() - t0;
  loaded.encoder.dispose();
  encoder.dispose();
  rmSync(dir, { recursive: true, force: true });
  return { architecture: 'resnet50', saveMs: round(saveMs), loadMs: round(loadMs) };
}

function benchTorch() {
  const python = join(root, '.venv', 'bin', 'python');
  if (!existsSync(python)) return { error: 'no .venv/bin/python: run `npm run setup`' };
  const args = [
    join(here, 'torch_models.py'),
    '--unet',
    opts.unet,
    '--encoder',
    opts.encoder,
    '--steps',
    String(steps),
    '--warmup',
    String(warmup),
    '--threads',
    opts['torch-threads'],
  ];
  const res = spawnSync(python, args, { encoding: 'utf8', maxBuffer: 16 << 20 });
  if (res.status !== 0) return { error: `torch_models.py exited with ${res.status}: ${res.stderr.slice(-1000)}` };
  return JSON.parse(res.stdout);
}

const unetResults = specs(opts.unet).map(benchUnet);
const encoderResults = specs(opts.encoder).map(benchEncoder);
const bundle = await benchBundle();
const torch = opts['no-torch'] ? null : benchTorch();
const same = (a, b) => a.depth === b.depth && a.size === b.size && a.batch === b.batch;

console.log(
  JSON.stringify(
    {
      benchmark: 'models',
      backend: backendInfo(),
      nativeKernels: nativeKernelsAvailable(),
      loadAverage: { before: loadBefore, after: loadavg().map((v) => Number(v.toFixed(2))) },
      pytorch: torch && !torch.error ? { version: torch.version, threads: torch.threads } : torch,
      steps,
      warmup,
      unetForwardBackward: unetResults.map((o) => {
        const ref = torch?.unet?.find((r) => same(r, o));
        const native = median(o.nativeMs);
        return {
          architecture: `resnet${o.depth}-unet`,
          size: o.size,
          batch: o.batch,
          params: o.params,
          pytorchParams: ref?.params ?? null,
          nativeMs: round(native),
          plainTfjsMs: round(median(o.plainTfjsMs)),
          pytorchMs: round(ref?.msMedian),
          ratioNativeOverPytorch: ref ? Number((native / ref.msMedian).toFixed(3)) : null,
          speedupNativeOverPlainTfjs: Number((median(o.plainTfjsMs) / native).toFixed(3)),
          runsMs: { native: o.nativeMs.map(round), plainTfjs: o.plainTfjsMs.map(round), pytorch: ref?.ms?.map(round) ?? null },
        };
      }),
      encoderInference: encoderResults.map((o) => {
        const ref = torch?.encoder?.find((r) => same(r, o));
        return {
          architecture: `resnet${o.depth}`,
          size: o.size,
          batch: o.batch,
          oursMs: round(median(o.ms)),
          pytorchMs: round(ref?.msMedian),
          ratioOursOverPytorch: ref ? Number((median(o.ms) / ref.msMedian).toFixed(3)) : null,
        };
      }),
      bundle,
    },
    null,
    2,
  ),
);
