#!/usr/bin/env node
// Where a MoCo v2 step's time goes (issue 13): the step of apps/pretrain's MocoV2, cut into its
// phases (momentum update of the key network, shuffle-BN key forward, query forward + backward,
// SGD, enqueue), each timed to a backend sync, with the number of kernels each phase dispatches
// and the cost of one tiny kernel on this backend, so fixed overhead and compute can be told apart.
// JSON output. Data loading is excluded (see tools/bench/data).
//
// Usage: node tools/bench/pretrain/profile-moco.mjs [--case 18:64:32] [--steps 5] [--queue 4096] [--top 8]
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import os from 'node:os';
import { backendInfo, tf } from '@emseg/tf';
import { loadConfig } from '@emseg/config';
import { globalAveragePool } from '@emseg/models';
import { Sgd } from '@emseg/training';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const { mocoSchema } = await import(join(root, 'apps/pretrain/dist/config.js'));
const { createMethod } = await import(join(root, 'apps/pretrain/dist/methods.js'));
const { updateMomentum } = await import(join(root, 'apps/pretrain/dist/method.js'));
const { infoNceLogits, infoNceLoss, normalizeRows, shuffledKeyForward } = await import(join(root, 'apps/pretrain/dist/moco.js'));

const { values: o } = parseArgs({
  options: {
    case: { type: 'string', default: '18:64:32' },
    steps: { type: 'string', default: '5' },
    queue: { type: 'string', default: '4096' },
    top: { type: 'string', default: '8' },
  },
});
const [depth, size, batch] = o.case.split(':').map(Number);
const steps = Number(o.steps);
const top = Number(o.top); // kernels / ops listed per phase
const cfg = loadConfig(mocoSchema, {
  file: join(root, 'configs/pretrain/quick.json'),
  overrides: [`encoder.architecture="resnet${depth}"`, `data.cropSize=${size}`, `train.batchSize=${batch}`, `moco.queueSize=${o.queue}`],
});
const opt = new Sgd(cfg.optimizer.momentum, cfg.optimizer.weightDecay);
const method = createMethod('mocov2', { cfg, optimizer: opt, totalSteps: steps + 1 });
const viewQ = tf.randomNormal([batch, size, size, 1], 0, 1, 'float32', 1);
const viewK = tf.randomNormal([batch, size, size, 1], 0, 1, 'float32', 2);

const embed = (branch, x, bnSubBatches) =>
  tf.tidy(() => {
    const maps = branch.encoder.features(x, { training: true, bnSubBatches });
    return normalizeRows(branch.head.apply(globalAveragePool(maps[maps.length - 1])));
  });
const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const round = (x) => Number(x.toFixed(2));
const sync = (t) => (Array.isArray(t) ? t : t ? [t] : []).forEach((x) => x.dataSync());
const names = Object.keys(method.trainable);
const vars = names.map((n) => method.trainable[n]);

/** The phases of one step, as MocoV2.step runs them; each leaves in `s` what the next needs. */
const phases = {
  momentum: () => {
    updateMomentum(method.momentumPairs, cfg.moco.momentum);
    sync(Object.values(method.momentumPairs[0].target).slice(-1));
  },
  keyForward: (s) => {
    s.k = shuffledKeyForward((x) => embed(method.key, x, cfg.moco.shuffleGroups), viewK, s.step);
    sync(s.k);
  },
  queryForwardBackward: (s) => {
    const { value, grads } = tf.variableGrads(
      () => infoNceLoss(infoNceLogits(embed(method.query, viewQ, 1), s.k, method.queue.keys, cfg.moco.temperature)),
      vars,
    );
    s.value = value;
    s.grads = Object.fromEntries(names.map((n, i) => [n, grads[vars[i].name]]));
    sync(Object.values(s.grads));
  },
  sgd: (s) => {
    opt.apply(method.trainable, s.grads, 0.01);
    sync(vars.slice(-1));
    tf.dispose([s.value, ...Object.values(s.grads)]);
  },
  enqueue: (s) => {
    method.queue.enqueue(s.k);
    sync(method.queue.keys);
    s.k.dispose();
  },
};

// every TensorFlow op the backend executes, timed by name: also the native kernels that emseg calls
// directly (fused BatchNorm, ReluGrad), which tf.profile does not see
const native = {};
const backend = tf.backend();
for (const method of ['executeSingleOutput', 'executeMultipleOutputs']) {
  const original = backend[method].bind(backend);
  backend[method] = (name, ...rest) => {
    const t0 = performance.now();
    const out = original(name, ...rest);
    const e = (native[name] ??= { n: 0, ms: 0 });
    e.n++;
    e.ms += performance.now() - t0;
    return out;
  };
}
const nativeByPhase = {};

/** `{name: {n, ms}}` as the `top` entries by time. */
const topByTime = (byName, key) =>
  Object.entries(byName)
    .sort((a, b) => b[1].ms - a[1].ms)
    .slice(0, top)
    .map(([name, e]) => ({ [key]: name, n: e.n, ms: round(e.ms) }));

const ms = Object.fromEntries(Object.keys(phases).map((p) => [p, []]));
const kernels = {};
for (let i = 0; i <= steps + 1; i++) {
  const state = { step: i + 1 };
  for (const [name, run] of Object.entries(phases)) {
    if (i === 0) {
      run(state); // warm-up
    } else if (i === 1) {
      // the kernels each phase dispatches, with their time (tf.profile times each one to its end)
      const profile = await tf.profile(() => run(state));
      const byName = {};
      for (const k of profile.kernels) {
        const e = (byName[k.name] ??= { n: 0, ms: 0 });
        e.n++;
        e.ms += k.kernelTimeMs;
      }
      kernels[name] = { total: profile.kernels.length, top: topByTime(byName, 'kernel') };
    } else {
      for (const k of Object.keys(native)) delete native[k];
      const t0 = performance.now();
      run(state);
      ms[name].push(performance.now() - t0);
      if (i === 2) nativeByPhase[name] = topByTime(native, 'op');
    }
  }
}

// one tiny kernel's cost here: the fixed price of every dispatched op
const a = tf.ones([4]);
const tiny = [];
for (let r = 0; r < 5; r++) {
  const t0 = performance.now();
  for (let i = 0; i < 1000; i++) tf.add(a, a).dispose();
  tiny.push((performance.now() - t0) / 1000);
}
a.dispose();

const phaseMs = Object.fromEntries(Object.entries(ms).map(([p, xs]) => [p, round(median(xs))]));
const total = Object.values(phaseMs).reduce((x, y) => x + y, 0);
const usPerKernel = median(tiny) * 1000;
console.log(
  JSON.stringify(
    {
      benchmark: 'pretrain profile: one MoCo v2 step by phase, median ms after a warm-up step, each phase synced',
      case: { arch: `resnet${depth}`, size, batch, queue: Number(o.queue), shuffleGroups: cfg.moco.shuffleGroups, steps },
      backend: backendInfo(),
      loadavg: os.loadavg().map(round),
      phaseMs,
      totalMs: round(total),
      kernels,
      tensorflowOps: nativeByPhase,
      usPerTinyKernel: round(usPerKernel),
      dispatchEstimateMs: Object.fromEntries(Object.entries(kernels).map(([p, k]) => [p, round((k.total * usPerKernel) / 1000)])),
      trainableVariables: names.length,
    },
    null,
    2,
  ),
);
tf.dispose([viewQ, viewK]);
method.dispose();
opt.dispose();
