/**
 * Loads TensorFlow.js once, preferring native TensorFlow:
 *   1. `@tensorflow/tfjs-node-gpu` (CUDA) when a GPU is visible (`npm run setup -- --gpu`
 *      provisions it; setup does so by itself when `nvidia-smi` reports a GPU),
 *   2. `@tensorflow/tfjs-node` (native CPU, what `npm run setup` provisions),
 *   3. `@tensorflow/tfjs-node-gpu` on CPU, when it is the only native build that loads,
 *   4. pure-JS `@tensorflow/tfjs`, with a loud warning: training is ~400x slower.
 * Without a visible GPU the CPU package comes first even when the GPU build is installed: it is
 * the same TensorFlow, a quarter of the size to map, and it keeps CPU machines on the build their
 * tests and benchmarks were measured with. `EMSEG_TF_PACKAGE` forces one of the three packages.
 *
 * "A GPU is visible" means: CUDA_VISIBLE_DEVICES does not hide every device, the NVIDIA driver is
 * present (/dev/nvidiactl or /proc/driver/nvidia/gpus) and `nvidia-smi` lists a GPU. On machines
 * without the driver nothing is spawned.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import type * as TF from '@tensorflow/tfjs';
import { withNativeStderrSilenced } from './quiet-load.js';

export type TfNamespace = typeof TF;

export const PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node', '@tensorflow/tfjs'] as const;
export type TfPackage = (typeof PACKAGES)[number];

const GPU_PACKAGE = '@tensorflow/tfjs-node-gpu';

// INFO lines from the TensorFlow C library are noise for users; warnings and errors still show.
// Load-time lines are silenced by withNativeStderrSilenced; EMSEG_VERBOSE=1 shows everything.
process.env.TF_CPP_MIN_LOG_LEVEL ??= process.env.EMSEG_VERBOSE === '1' ? '0' : '1';

const require = createRequire(import.meta.url);

/** A GPU as `nvidia-smi` lists it. */
export interface VisibleGpu {
  index: number;
  name: string;
  driverVersion: string | null;
}

/**
 * The GPUs this process could use, by the rule in the header comment; [] on machines without the
 * NVIDIA driver. Exported for tests and tools; cached.
 */
export function visibleGpus(): VisibleGpu[] {
  if (gpuCache) return gpuCache;
  gpuCache = probeGpus();
  return gpuCache;
}
let gpuCache: VisibleGpu[] | undefined;

function probeGpus(): VisibleGpu[] {
  const cvd = process.env.CUDA_VISIBLE_DEVICES;
  if (cvd !== undefined && (cvd.trim() === '' || cvd.trim() === '-1')) return [];
  if (process.env.EMSEG_NVIDIA_SMI === undefined && !existsSync('/dev/nvidiactl') && !existsSync('/proc/driver/nvidia/gpus')) return [];
  const smi = process.env.EMSEG_NVIDIA_SMI || 'nvidia-smi';
  const res = spawnSync(smi, ['--query-gpu=index,name,driver_version', '--format=csv,noheader'], { encoding: 'utf8', timeout: 20_000 });
  if (res.status !== 0 || typeof res.stdout !== 'string') return [];
  const all = res.stdout
    .split('\n')
    .map((line) => line.split(',').map((s) => s.trim()))
    .filter((f) => f.length >= 2 && /^\d+$/.test(f[0]))
    .map((f) => ({ index: Number(f[0]), name: f[1], driverVersion: f[2] || null }));
  if (cvd === undefined) return all;
  // CUDA_VISIBLE_DEVICES lists indices (or UUIDs, which nvidia-smi's index cannot match: keep all).
  const wanted = cvd.split(',').map((s) => s.trim());
  if (!wanted.every((w) => /^\d+$/.test(w))) return all;
  return wanted.map(Number).flatMap((i) => all.filter((g) => g.index === i));
}

interface Loaded {
  tf: TfNamespace;
  pkg: TfPackage;
  failures: string[];
}

/** The order packages are tried in (see the header comment). */
export function packageOrder(gpuVisible: boolean, forced = process.env.EMSEG_TF_PACKAGE): TfPackage[] {
  if (forced !== undefined && forced !== '') {
    if (!(PACKAGES as readonly string[]).includes(forced)) {
      throw new Error(`EMSEG_TF_PACKAGE=${forced} is not one of ${PACKAGES.join(', ')}`);
    }
    return [forced as TfPackage];
  }
  return gpuVisible ? [GPU_PACKAGE, '@tensorflow/tfjs-node', '@tensorflow/tfjs'] : ['@tensorflow/tfjs-node', GPU_PACKAGE, '@tensorflow/tfjs'];
}

function load(): Loaded {
  const forced = process.env.EMSEG_TF_PACKAGE;
  // Only probe for a GPU when the answer matters: a forced package needs none.
  const gpuVisible = forced ? false : visibleGpus().length > 0;
  const order = packageOrder(gpuVisible, forced);
  const failures: string[] = [];
  for (const pkg of order) {
    try {
      const tf = (pkg === '@tensorflow/tfjs' ? require(pkg) : withNativeStderrSilenced(() => require(pkg))) as TfNamespace;
      if (pkg === '@tensorflow/tfjs') warnPureJs(failures);
      if (gpuVisible && pkg !== GPU_PACKAGE) {
        console.warn(
          `emseg: a GPU is visible (${visibleGpus()[0].name}) but ${GPU_PACKAGE} did not load (${failures[0] ?? 'not installed'}); running on CPU. Run \`npm run setup -- --gpu\`.`,
        );
      }
      return { tf, pkg, failures };
    } catch (err) {
      const message = (err as Error).message.split('\n')[0];
      if (!(pkg === GPU_PACKAGE && message.includes('Cannot find module') && !gpuVisible && !forced)) {
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
  /** True when TensorFlow placed its ops on a GPU. */
  gpu: boolean;
  /** One line: 'GPU 0: NVIDIA H200 (CUDA 12.5.82, cuDNN 9.3.0.75)' or 'CPU (2 cores)'. */
  device: string;
  /** The GPU's name as nvidia-smi reports it; null on CPU. */
  gpuName: string | null;
  /** NVIDIA driver version; null on CPU. */
  gpuDriverVersion: string | null;
  /** CUDA runtime (libcudart) version TensorFlow uses; null on CPU. */
  cudaVersion: string | null;
  /** cuDNN version TensorFlow uses; null on CPU. */
  cudnnVersion: string | null;
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

/**
 * Version of a CUDA library the process uses: the one mapped now (/proc/self/maps; realpaths), or,
 * before the first GPU op has loaded it, the one the GPU package was provisioned with
 * (deps/nvidia -> the cached CUDA wheels). From the file name (`libcudnn.so.9.3.0`), else from the
 * pip layout the wheels were unpacked in (`emseg-cuda.json`, or `<name>-<version>.dist-info` next
 * to `nvidia/`).
 */
function cudaLibraryVersion(lib: 'libcudart' | 'libcudnn', wheel: 'cuda_runtime' | 'cudnn'): string | null {
  const pattern = new RegExp(`/${lib}\\.so(\\.[\\d.]+)?$`);
  const candidates: string[] = [];
  try {
    for (const line of readFileSync('/proc/self/maps', 'utf8').split('\n')) {
      const path = line.slice(line.indexOf('/'));
      if (line.includes('/') && pattern.test(path)) candidates.push(path);
    }
  } catch {
    // no /proc: fall through to the provisioned copy
  }
  try {
    const deps = join(dirname(require.resolve(`${GPU_PACKAGE}/package.json`)), 'deps', 'nvidia', wheel, 'lib');
    for (const f of existsSync(deps) ? readdirSync(deps) : []) if (pattern.test(`/${f}`)) candidates.push(realpathSync(join(deps, f)));
  } catch {
    // GPU package not installed
  }
  for (const path of candidates) {
    const full = /\.so\.(\d+\.\d+[\d.]*)$/.exec(realpathOr(path))?.[1];
    if (full) return full;
    // <site>/nvidia/<wheel>/lib/<file>: the wheels' metadata sit in <site>
    const site = dirname(dirname(dirname(dirname(path))));
    const fromManifest = manifestVersion(site, wheel);
    if (fromManifest) return fromManifest;
    const dist = safeList(site).find((f) => f.startsWith(`nvidia_${wheel}_cu`) && f.endsWith('.dist-info'));
    if (dist) return /-([\d.]+)\.dist-info$/.exec(dist)?.[1] ?? null;
    const major = /\.so\.(\d+)$/.exec(path)?.[1];
    if (major) return major;
  }
  return null;
}

function realpathOr(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function manifestVersion(site: string, wheel: string): string | null {
  try {
    const m = JSON.parse(readFileSync(join(site, 'emseg-cuda.json'), 'utf8')) as { wheels?: Record<string, string> };
    return m.wheels?.[`nvidia-${wheel.replace(/_/g, '-')}-cu12`] ?? null;
  } catch {
    return null;
  }
}

/**
 * CUDA runtime and cuDNN versions the GPU build uses (loaded, or provisioned next to it), whether
 * or not TensorFlow found a GPU; backendInfo() reports them only when it runs on one.
 */
export function cudaLibraryVersions(): { cuda: string | null; cudnn: string | null } {
  return { cuda: cudaLibraryVersion('libcudart', 'cuda_runtime'), cudnn: cudaLibraryVersion('libcudnn', 'cudnn') };
}

/** What runs log as tags: which backend, which TensorFlow, which device, thread settings. */
export function backendInfo(): BackendInfo {
  const binding = (tf.backend() as unknown as { binding?: NativeBinding }).binding;
  const native = binding !== undefined && typeof binding.TF_Version === 'string';
  const gpu = native ? binding.isUsingGpuDevice() : false;
  const card = gpu ? (visibleGpus()[0] ?? null) : null;
  const { cuda: cudaVersion, cudnn: cudnnVersion } = gpu ? cudaLibraryVersions() : { cuda: null, cudnn: null };
  const device = gpu
    ? `GPU ${card ? `${card.index}: ${card.name}` : '(name unknown)'} (CUDA ${cudaVersion ?? '?'}, cuDNN ${cudnnVersion ?? '?'})`
    : `CPU (${cpus().length} cores)`;
  return {
    package: loaded.pkg,
    backend: tf.getBackend(),
    native,
    gpu,
    device,
    gpuName: card?.name ?? (gpu ? 'unknown' : null),
    gpuDriverVersion: card?.driverVersion ?? null,
    cudaVersion,
    cudnnVersion,
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

// Say which device the GPU build runs on (once, on stderr): on a GPU machine that is the line to
// look for, and the GPU build on CPU is worth knowing about too. The CPU package stays quiet.
if (loaded.pkg === GPU_PACKAGE || process.env.EMSEG_VERBOSE === '1') {
  const info = backendInfo();
  console.error(`emseg: TensorFlow ${info.tensorflowVersion ?? 'pure JS'} (${info.package}) on ${info.device}`);
}
