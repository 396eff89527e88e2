#!/usr/bin/env node
/**
 * Step parity of emseg's MoCo v2 with the PyTorch twin: emseg's own method (apps/pretrain
 * `createMethod('mocov2')`, `trainMethodStep`, libs/training's Sgd and schedule) started from the
 * twin's initial weights and queue, trained on the same view batches, prints its per-step losses and
 * similarities, to compare with the twin's (`torch_moco_train.py --max-steps N --save-init`).
 * Equal numbers at step 0 say both compute the same loss from the same weights; close numbers over
 * the next steps say both update them the same way (SGD, momentum update, shuffle-BN, queue).
 *
 *   node tools/bench/pretrain/moco-parity.mjs --config CFG.json --init EXPORT_DIR --views FILE --crops N --steps N
 *
 * CFG.json: the resolved pretraining config both sides ran; EXPORT_DIR: the twin's --save-init
 * checkpoint exported by tools/import-torch/export_state_dict.py; FILE: the twin's kept views
 * (float32 [steps, 2, batch, 1, size, size], normalised). Prints one JSON object.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const { values: o } = parseArgs({
  options: { config: { type: 'string' }, init: { type: 'string' }, views: { type: 'string' }, crops: { type: 'string' }, steps: { type: 'string' } },
});
if (!o.config || !o.init || !o.views || !o.crops || !o.steps) {
  process.stderr.write('usage: moco-parity.mjs --config CFG.json --init EXPORT_DIR --views FILE --crops N --steps N\n');
  process.exit(2);
}
const dist = (...p) => import(join(root, ...p, 'dist', 'index.js'));
const { tf } = await dist('libs', 'tf');
const { encoderFromTorchStateDict, modelVariables, readTorchExport } = await dist('libs', 'models');
const { Sgd, cosineSchedule, stepSchedule } = await dist('libs', 'training');
const { createMethod } = await import(join(root, 'apps', 'pretrain', 'dist', 'methods.js'));
const { trainMethodStep, copyVariables } = await import(join(root, 'apps', 'pretrain', 'dist', 'method.js'));

const cfg = JSON.parse(readFileSync(o.config, 'utf8'));
const steps = Number(o.steps);
const bs = cfg.train.batchSize;
const size = cfg.data.cropSize;
const perEpoch = Math.floor(Number(o.crops) / bs);
const epochSteps = Math.ceil(cfg.train.epochs * perEpoch);
const totalSteps = cfg.train.maxSteps === null ? epochSteps : Math.min(cfg.train.maxSteps, epochSteps);
// apps/pretrain/src/pretrain.ts `schedule`
const warmupSteps = Math.round(cfg.optimizer.warmupEpochs * perEpoch);
const lrAt =
  cfg.optimizer.schedule === 'cosine'
    ? cosineSchedule(cfg.optimizer.lr, totalSteps, { warmupSteps })
    : stepSchedule(
        cfg.optimizer.lr,
        cfg.optimizer.milestones.map((e) => Math.round(e * perEpoch)),
        cfg.optimizer.gamma,
        { warmupSteps },
      );

const optimizer = new Sgd(cfg.optimizer.momentum, cfg.optimizer.weightDecay);
const method = createMethod('mocov2', { cfg, optimizer, totalSteps });
const exported = await readTorchExport(resolve(o.init));
const sd = exported.stateDict;
// the twin's initial weights into the query network, then the key network = a copy, as MocoV2's constructor does
const { encoder: imported } = encoderFromTorchStateDict(sd, { prefix: 'module.encoder_q.', inChannels: 1 });
const from = modelVariables(imported.model);
for (const [name, v] of Object.entries(modelVariables(method.query.encoder.model))) v.assign(from[name]);
imported.dispose();
const head = modelVariables(method.query.head);
const linear = (key, rows, cols) => tf.tensor2d(sd.get(key).data, [rows, cols]).transpose(); // torch [out, in] -> [in, out]
for (const [layer, idx] of [
  ['head_fc1', 0],
  ['head_fc2', 2],
]) {
  const w = sd.get(`head.${idx}.weight`);
  const k = linear(`head.${idx}.weight`, w.shape[0], w.shape[1]);
  head[`${layer}/kernel`].assign(k);
  head[`${layer}/bias`].assign(tf.tensor1d(sd.get(`head.${idx}.bias`).data));
  k.dispose();
}
copyVariables(method.allVariables(method.key), method.allVariables(method.query));
const q = sd.get('queue');
method.queue.load(tf.tensor2d(q.data, q.shape), 0);

const buf = readFileSync(o.views);
const all = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
const per = bs * size * size;
if (all.length < steps * 2 * per) throw new Error(`${o.views} holds ${all.length / (2 * per)} steps, fewer than ${steps}`);
const losses = [];
const posSims = [];
const negSims = [];
const lrs = [];
for (let step = 0; step < steps; step++) {
  const views = [0, 1].map((v) => tf.tensor4d(all.subarray((2 * step + v) * per, (2 * step + v + 1) * per), [bs, size, size, 1]));
  const lr = lrAt(step);
  const r = trainMethodStep(method, views, lr, step);
  tf.dispose(views);
  losses.push(r.loss);
  posSims.push(r.metrics.pos_sim);
  negSims.push(r.metrics.neg_sim);
  lrs.push(lr);
}
method.dispose();
optimizer.dispose();
process.stdout.write(`${JSON.stringify({ framework: 'emseg', steps, totalSteps, losses, posSims, negSims, lrs })}\n`);
