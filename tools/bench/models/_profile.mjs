import { tf } from '@emseg/tf';
import { focalDiceLoss, resnetEncoder, trainableVariables, unet } from '@emseg/models';
import { Adam, trainStep } from '@emseg/training';
const size = Number(process.argv[2] ?? 128),
  batch = 4;
const net = unet({ encoder: resnetEncoder({ depth: 18, seed: 0 }), seed: 1 });
const vars = trainableVariables(net.model);
const opt = new Adam();
const x = tf.randomNormal([batch, size, size, 1], 0, 1, 'float32', 2);
const y = tf.tidy(() => tf.randomUniform([batch, size, size, 1], 0, 1, 'float32', 3).less(0.1).toFloat());
for (let i = 0; i < 2; i++) trainStep(vars, () => focalDiceLoss(net.forward(x, { training: true }), y), opt, 1e-3);
let t0 = performance.now();
const prof = await tf.profile(() => {
  trainStep(vars, () => focalDiceLoss(net.forward(x, { training: true }), y), opt, 1e-3);
});
const wall = performance.now() - t0;
const by = {};
for (const k of prof.kernels) {
  const e = (by[k.name] ??= { n: 0, ms: 0 });
  e.n++;
  e.ms += k.kernelTimeMs;
}
const total = prof.kernels.reduce((a, k) => a + k.kernelTimeMs, 0);
console.log('wall(profiled)', wall.toFixed(0), 'kernels', prof.kernels.length, 'kernel ms', total.toFixed(0));
console.log(
  Object.entries(by)
    .sort((a, b) => b[1].ms - a[1].ms)
    .slice(0, 25)
    .map(([k, v]) => `${k} n=${v.n} ${v.ms.toFixed(1)}ms`)
    .join('\n'),
);
t0 = performance.now();
for (let i = 0; i < 3; i++) trainStep(vars, () => focalDiceLoss(net.forward(x, { training: true }), y), opt, 1e-3);
console.log('unprofiled ms/step', ((performance.now() - t0) / 3).toFixed(0));
