/**
 * The GPU build (@tensorflow/tfjs-node-gpu against TensorFlow from the PyPI `tensorflow` wheel,
 * `npm run setup -- --gpu`) loads and trains. In a child process, so this fork keeps whichever
 * package libs/tf picked for it. On a CPU-only machine the GPU build must run on CPU (`gpu: false`,
 * no GPU fields); where a GPU is visible it must run on it, with the GPU's name and the CUDA and
 * cuDNN versions in backendInfo(). Skipped, with the reason, where the GPU build is not provisioned
 * (a fresh clone: plain `npm test` downloads nothing for it). tools/device/gpu-check.sh runs it with
 * EMSEG_REQUIRE_GPU=1, which also fails it when the build is missing or falls back to CPU.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const GPU_PKG = '@tensorflow/tfjs-node-gpu';
const requireGpu = process.env.EMSEG_REQUIRE_GPU === '1';

function gpuAddon(): string | null {
  try {
    const dir = dirname(createRequire(import.meta.url).resolve(`${GPU_PKG}/package.json`));
    const napi = Number(process.versions.napi) >= 8 ? 8 : Number(process.versions.napi);
    const addon = join(dir, 'lib', `napi-v${napi}`, 'tfjs_binding.node');
    return existsSync(addon) ? addon : null;
  } catch {
    return null;
  }
}
const addon = gpuAddon();
const notProvisioned = `${GPU_PKG} is not provisioned here (no compiled addon): run \`npm run setup -- --gpu\` to build it (~575 MB download)`;
if (!addon && !requireGpu) console.info(`gpu-build.test.ts skipped: ${notProvisioned}`);

// Trains the tiny conv net of backend.test.ts for 30 Adam steps through libs/tf's dist.
const CHILD = `
import { tf, backendInfo, cudaLibraryVersions, visibleGpus } from ${JSON.stringify(join(ROOT, 'libs/tf/dist/index.js'))};
const model = tf.sequential({ layers: [
  tf.layers.conv2d({ inputShape: [8, 8, 1], filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }) }),
  tf.layers.conv2d({ filters: 1, kernelSize: 1, kernelInitializer: tf.initializers.glorotUniform({ seed: 4 }) }),
] });
const x = tf.randomUniform([8, 8, 8, 1], 0, 1, 'float32', 5);
const y = tf.tidy(() => x.greater(0.5).toFloat());
const opt = tf.train.adam(0.05);
const losses = [];
for (let i = 0; i < 30; i++) losses.push(tf.tidy(() => opt.minimize(() => tf.losses.sigmoidCrossEntropy(y, model.apply(x)), true).dataSync()[0]));
console.log(JSON.stringify({ info: backendInfo(), gpusVisible: visibleGpus().length, cudaLibs: cudaLibraryVersions(), losses }));
`;

describe('GPU build (@tensorflow/tfjs-node-gpu)', () => {
  beforeAll(() => {
    if (!addon) return;
    // the child imports the built dist/, as the apps do
    execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-b', 'libs/tf'], { cwd: ROOT });
  });

  it('loads and trains a tiny model; on CPU without a GPU, on the GPU where one is visible', (ctx) => {
    if (!addon) {
      if (requireGpu) throw new Error(notProvisioned);
      ctx.skip(notProvisioned);
    }
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', CHILD], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 170_000,
      env: { ...process.env, EMSEG_TF_PACKAGE: GPU_PKG },
    });
    expect(r.status, r.stderr).toBe(0);
    const { info, gpusVisible, cudaLibs, losses } = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(info.package).toBe(GPU_PKG);
    expect(info.backend).toBe('tensorflow');
    expect(info.native).toBe(true);
    expect(info.tensorflowVersion).toMatch(/^2\.\d+\.\d+/);
    // libs/tf says which device it runs on
    expect(r.stderr).toContain(`(${GPU_PKG}) on ${info.device}`);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses[losses.length - 1]).toBeLessThan(0.7 * losses[0]);
    // with the CUDA wheels linked (setup on a GPU machine, or --cuda), their versions are found
    // (from the mapped libcudart, or deps/nvidia), GPU or not
    if (existsSync(join(dirname(dirname(dirname(addon!))), 'deps', 'nvidia'))) {
      expect(cudaLibs.cuda).toMatch(/^12\./);
      expect(cudaLibs.cudnn).toMatch(/^9\./);
    }
    if (gpusVisible > 0 || requireGpu) {
      expect(info.gpu, `a GPU is visible but TensorFlow runs on CPU:\n${r.stderr.slice(-3000)}`).toBe(true);
      expect(info.gpuName).toEqual(expect.any(String));
      expect(info.cudaVersion).toMatch(/^\d+/);
      expect(info.cudnnVersion).toMatch(/^\d+/);
      expect(info.device).toMatch(/^GPU /);
    } else {
      expect(info.gpu).toBe(false);
      expect([info.gpuName, info.gpuDriverVersion, info.cudaVersion, info.cudnnVersion]).toEqual([null, null, null, null]);
      expect(info.device).toMatch(/^CPU/);
    }
  });
});
