#!/usr/bin/env node
// Sets up everything emseg needs on a fresh clone, idempotently:
//   1. npm packages (install scripts off: tfjs-node's would try to download libtensorflow),
//   2. native TensorFlow for @tensorflow/tfjs-node (see native-tf.mjs), and the small addon that
//      keeps its load-time log lines off stderr (stderr-addon.mjs),
//   3. the Python environment (.venv: MLflow server, PyTorch for reference benchmarks/tests).
// A second run takes seconds. Uses only Node built-ins, because it runs before `npm install`.
//
// Usage: node tools/setup/setup.mjs [--skip-python] [--skip-tf] [--bench]
import { ensureNpmPackages } from './npm-packages.mjs';
import { ensureNativeTensorFlow } from './native-tf.mjs';
import { ensureStderrAddon } from './stderr-addon.mjs';
import { ensurePythonEnv } from './python-env.mjs';
import { SetupError, step } from './util.mjs';

const args = new Set(process.argv.slice(2));

try {
  const started = Date.now();
  await step('npm packages', ensureNpmPackages);
  if (!args.has('--skip-tf')) await step('native TensorFlow', ensureNativeTensorFlow);
  if (!args.has('--skip-tf')) await step('quiet TensorFlow load (stderr addon)', ensureStderrAddon);
  if (!args.has('--skip-python')) await step('Python environment (.venv)', () => ensurePythonEnv({ bench: args.has('--bench') }));
  console.error(`[setup] ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
} catch (err) {
  if (err instanceof SetupError) {
    console.error(`\n[setup] FAILED at step "${err.step}": ${err.message}`);
    if (err.fix) console.error(`[setup] how to fix: ${err.fix}`);
    process.exit(1);
  }
  throw err;
}
