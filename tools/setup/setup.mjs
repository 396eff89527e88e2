#!/usr/bin/env node
// Sets up everything emseg needs on a fresh clone, idempotently:
//   1. npm packages (install scripts off: tfjs-node's would try to download libtensorflow),
//   2. native TensorFlow for @tensorflow/tfjs-node (see native-tf.mjs), and the small addon that
//      keeps its load-time log lines off stderr (stderr-addon.mjs),
//      with --gpu, or by itself when nvidia-smi reports a GPU, also the GPU backend
//      @tensorflow/tfjs-node-gpu (gpu.mjs): the GPU build of TensorFlow, and on GPU machines
//      (or with --cuda) the CUDA 12 / cuDNN 9 runtime wheels (~1.9 GB download),
//   3. the Python environment (.venv: MLflow server, PyTorch for reference benchmarks/tests),
//   4. redis-server (Debian package) for the block-queue tests (see redis.mjs).
// A second run takes seconds. Uses only Node built-ins, because it runs before `npm install`.
//
// Usage: node tools/setup/setup.mjs [--skip-python] [--skip-tf] [--skip-redis] [--bench] [--gpu] [--cuda] [--no-gpu]
//   --gpu     provision the GPU backend even without a visible GPU (it then runs on CPU; the CUDA
//             wheels are skipped, since nothing could use them)
//   --cuda    like --gpu, and fetch the CUDA wheels even without a visible GPU
//   --no-gpu  no GPU backend even on a GPU machine: forget an earlier --gpu and remove the package
import { existsSync, rmSync } from 'node:fs';
import { ensureNpmPackages } from './npm-packages.mjs';
import { ensureNativeTensorFlow } from './native-tf.mjs';
import { GPU_MARKER, checkGpuPlacement, detectGpus, ensureCudaWheels, ensureGpuAddon, ensureGpuPackage, linkCachedCuda } from './gpu.mjs';
import { ensureStderrAddon } from './stderr-addon.mjs';
import { ensurePythonEnv } from './python-env.mjs';
import { ensureRedisServer } from './redis.mjs';
import { ROOT, SetupError, step } from './util.mjs';
import { join } from 'node:path';

const args = new Set(process.argv.slice(2));
const known = new Set(['--skip-python', '--skip-tf', '--skip-redis', '--bench', '--gpu', '--cuda', '--no-gpu']);
const unknown = [...args].filter((a) => !known.has(a));
if (unknown.length) {
  console.error(`[setup] unknown option ${unknown.join(' ')}; known: ${[...known].join(' ')}`);
  process.exit(2);
}

try {
  const started = Date.now();
  await step('npm packages', ensureNpmPackages);
  if (!args.has('--skip-tf')) {
    await step('native TensorFlow', () => ensureNativeTensorFlow('cpu'));
    await step('quiet TensorFlow load (stderr addon)', ensureStderrAddon);
    if (args.has('--no-gpu')) {
      // forget --gpu and remove the package (libs/tf would load it where a GPU is visible); caches stay
      rmSync(GPU_MARKER, { force: true });
      rmSync(join(ROOT, 'node_modules', '@tensorflow', 'tfjs-node-gpu'), { recursive: true, force: true });
    }
    const gpus = args.has('--no-gpu') ? [] : detectGpus();
    const wanted = !args.has('--no-gpu') && (args.has('--gpu') || args.has('--cuda') || gpus.length > 0 || existsSync(GPU_MARKER));
    if (wanted) {
      const why = gpus.length
        ? `nvidia-smi: ${gpus[0]}${gpus.length > 1 ? ` (+${gpus.length - 1})` : ''}`
        : args.has('--gpu') || args.has('--cuda')
          ? 'asked for, no GPU visible'
          : 'kept from an earlier --gpu, no GPU visible';
      console.error(`[setup] GPU backend: ${why}`);
      await step('GPU npm package', ensureGpuPackage);
      await step('native TensorFlow, GPU build', ensureGpuAddon);
      if (gpus.length || args.has('--cuda')) await step('CUDA 12 / cuDNN 9 runtime wheels', ensureCudaWheels);
      else if (!(await linkCachedCuda()))
        console.error('[setup] CUDA runtime wheels: skipped (no GPU visible; the GPU build runs on CPU without them). `--cuda` fetches them anyway (~1.9 GB).');
      else console.error('[setup] CUDA runtime wheels: linked from the cache (no GPU visible, nothing downloaded)');
      if (gpus.length) await step('GPU check', checkGpuPlacement);
    }
  }
  if (!args.has('--skip-python')) await step('Python environment (.venv)', () => ensurePythonEnv({ bench: args.has('--bench') }));
  if (!args.has('--skip-redis')) await step('redis-server', ensureRedisServer);
  console.error(`[setup] ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
} catch (err) {
  if (err instanceof SetupError) {
    console.error(`\n[setup] FAILED at step "${err.step}": ${err.message}`);
    if (err.fix) console.error(`[setup] how to fix: ${err.fix}`);
    process.exit(1);
  }
  throw err;
}
