/**
 * Loads TensorFlow.js once, preferring native TensorFlow:
 *   1. `@tensorflow/tfjs-node-gpu` (CUDA) if installed and loadable,
 *   2. `@tensorflow/tfjs-node` (native CPU, what `npm run setup` provisions),
 *   3. pure-JS `@tensorflow/tfjs`, with a loud warning: training is ~400x slower.
 * `EMSEG_TF_PACKAGE` forces one of the three package names.
 */
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import type * as TF from '@tensorflow/tfjs';
import { withNativeStderrSilenced } from './quiet-load.js';

export type TfNamespace = typeof TF;

export const PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node', '@tensorflow/tfjs'] as const;
export type TfPackage = (typeof PACKAGES)[number];

// INFO lines from the TensorFlow C library are noise for users; warnings and errors still show.
// Load-time lines are silenced by withNativeStderrSilenced; EMSEG_VERBOSE=1 shows everything.
process.env.TF_CPP_MIN_LOG_LEVEL ??= process.env.EMSEG_VERBOSE === '1' ? '0' : '1';

const require = createRequire(import.meta.url);

interface Loaded {
  tf: TfNamespace;
  pkg: TfPackage;
  failures: string[];
}

function load(): Loaded {
  const forced = process.env.EMSEG_TF_PACKAGE;
  if (forced !== undefined && !(PACKAGES as readonly string[]).includes(forced)) {
    throw new Error(`EMSEG_TF_PACKAGE=${forced} is not one of ${PACKAGES.join(', ')}`);
  }
  const order = forced ? [forced as TfPackage] : PACKAGES;
  const failures: string[] = [];
  for (const pkg of order) {
    try {
      const tf = (pkg === '@tensorflow/tfjs' ? require(pkg) : withNativeStderrSilenced(() => require(pkg))) as TfNamespace;
      if (pkg === '@tensorflow/tfjs') warnPureJs(failures);
      return { tf, pkg, failures };
    } catch (err) {
      const message = (err as Error).message.split('\n')[0];
      if (!(pkg === '@tensorflow/tfjs-node-gpu' && message.includes('Cannot find module'))) {
        failures.push(`${pkg}: ${message}`);
      }
    }
  }
  throw new Error(`no TensorFlow.js package could be loaded:\n  ${failures.join('\n  ')}\nRun \`npm run setup\`.`);
}

function warnPureJs(failures: string[]): void {
  const bar = '!'.repeat(78);
  console.warn(
    [
      bar,
      'emseg: native TensorFlow is NOT available; using pure-JavaScript TensorFlow.js.',
      'Training will be roughly 400x slower. Run `npm run setup` to provision native TensorFlow.',
      ...failures.map((f) => `  ${f}`),
      bar,
    ].join('\n'),
  );
}

const loaded = load();

/** The TensorFlow.js namespace, backed by the best backend found. */
export const tf: TfNamespace = loaded.tf;

export interface BackendInfo {
  /** npm package that provides the backend. */
  package: TfPackage;
  /** tfjs backend name: 'tensorflow' (native) or 'cpu' (pure JS). */
  backend: string;
  native: boolean;
  gpu: boolean;
  /** Version of the TensorFlow C library behind the native backend, or null for pure JS. */
  tensorflowVersion: string | null;
  tfjsVersion: string;
  /** TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS as set, or 'auto'. */
  intraOpThreads: string;
  interOpThreads: string;
  /** oneDNN kernels (TF_ENABLE_ONEDNN_OPTS); on by default on x86 CPUs. */
  oneDnn: boolean;
  cpuCores: number;
}

interface NativeBinding {
  TF_Version: string;
  isUsingGpuDevice(): boolean;
}

/** What runs log as tags: which backend, which TensorFlow, GPU or not, thread settings. */
export function backendInfo(): BackendInfo {
  const binding = (tf.backend() as unknown as { binding?: NativeBinding }).binding;
  const native = binding !== undefined && typeof binding.TF_Version === 'string';
  return {
    package: loaded.pkg,
    backend: tf.getBackend(),
    native,
    gpu: native ? binding.isUsingGpuDevice() : false,
    tensorflowVersion: native ? binding.TF_Version : null,
    tfjsVersion: tf.version_core,
    intraOpThreads: process.env.TF_NUM_INTRAOP_THREADS ?? 'auto',
    interOpThreads: process.env.TF_NUM_INTEROP_THREADS ?? 'auto',
    oneDnn: process.env.TF_ENABLE_ONEDNN_OPTS !== '0',
    cpuCores: cpus().length,
  };
}

/** backendInfo() flattened to `emseg.backend.*` string tags for MLflow. */
export function backendTags(): Record<string, string> {
  return Object.fromEntries(Object.entries(backendInfo()).map(([k, v]) => [`emseg.backend.${k}`, String(v)]));
}
