// Step 2b (with --gpu, or by itself when nvidia-smi reports a GPU): the GPU backend.
//
//   1. npm package @tensorflow/tfjs-node-gpu (the version of @tensorflow/tfjs-node), installed with
//      scripts off and --no-save: package.json and the lockfile stay as they are, so CPU machines
//      never fetch it. node_modules/.emseg-gpu remembers the choice, so a later plain setup keeps
//      it (a plain `npm install` prunes it; setup puts it back from the caches in seconds).
//   2. its addon compiled against the GPU build of TensorFlow from the PyPI `tensorflow` wheel
//      (native-tf.mjs, variant 'gpu'; cached in CACHE/libtensorflow/tensorflow-gpu-<v>/).
//   3. the CUDA 12 / cuDNN 9 runtime wheels that `tensorflow[and-cuda]==<v>` pins (its METADATA's
//      Requires-Dist, each at its lower bound: the versions TensorFlow was built and tested with),
//      unpacked in pip's layout into CACHE/cuda/and-cuda-tf<v>/ and linked as deps/nvidia, where
//      the libraries' RUNPATH ($ORIGIN/../nvidia/<lib>/lib) finds them. ~1.9 GB to download,
//      ~2.8 GB unpacked: fetched only when a GPU is visible, or with --cuda.
//   4. on a GPU machine, a check that TensorFlow really places ops on the GPU.
//
// EMSEG_CUDA_WHEELS=0 skips step 3 (CUDA 12 and cuDNN 9 installed system-wide, on the loader path).
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { VARIANTS, WHEEL_VERSION, ensureNativeTensorFlow, libTensorFlowDir, loads, packageDir } from './native-tf.mjs';
import { CACHE_DIR, ROOT, SetupError, pipDownloadArgs, run, writeAtomic } from './util.mjs';

const GPU_PKG = VARIANTS.gpu.pkg;
export const GPU_MARKER = join(ROOT, 'node_modules', '.emseg-gpu');

/** GPUs `nvidia-smi -L` lists ([] without the driver or without a GPU). */
export function detectGpus() {
  const res = spawnSync(process.env.EMSEG_NVIDIA_SMI || 'nvidia-smi', ['-L'], { encoding: 'utf8', timeout: 30_000 });
  if (res.status !== 0 || typeof res.stdout !== 'string') return [];
  return res.stdout.split('\n').filter((l) => /^GPU \d+:/.test(l));
}

/** Step 1: the npm package, same version as @tensorflow/tfjs-node, scripts off, not saved. */
export async function ensureGpuPackage() {
  const cpuDir = packageDir(VARIANTS.cpu.pkg);
  const want = cpuDir ? JSON.parse(readFileSync(join(cpuDir, 'package.json'), 'utf8')).version : '4.22.0';
  const dir = packageDir(GPU_PKG);
  const have = dir ? JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).version : null;
  writeAtomic(GPU_MARKER, `${GPU_PKG}@${want}\n`);
  if (have === want) return `${GPU_PKG}@${have} installed`;
  run('npm', ['install', '--no-save', '--ignore-scripts', '--no-audit', '--no-fund', `${GPU_PKG}@${want}`], {
    fix: `check that the npm registry is reachable (\`npm view ${GPU_PKG}@${want} version\`)`,
  });
  return `${GPU_PKG}@${want} installed (scripts off, not saved to package.json)`;
}

/** Step 2. */
export const ensureGpuAddon = () => ensureNativeTensorFlow('gpu');

/** What tensorflow 2.21.0's METADATA gives (Requires-Dist, extra == "and-cuda", lower bounds). */
const KNOWN_PINS = {
  '2.21.0': {
    'nvidia-cublas-cu12': '12.5.3.2',
    'nvidia-cuda-cupti-cu12': '12.5.82',
    'nvidia-cuda-nvcc-cu12': '12.5.82',
    'nvidia-cuda-nvrtc-cu12': '12.5.82',
    'nvidia-cuda-runtime-cu12': '12.5.82',
    'nvidia-cudnn-cu12': '9.3.0.75',
    'nvidia-cufft-cu12': '11.2.3.61',
    'nvidia-curand-cu12': '10.3.6.82',
    'nvidia-cusolver-cu12': '11.6.3.83',
    'nvidia-cusparse-cu12': '12.5.1.3',
    'nvidia-nccl-cu12': '2.27.7',
    'nvidia-nvjitlink-cu12': '12.5.82',
  },
};

/** `nvidia-*` requirements of the and-cuda extra, each pinned to its lower bound. */
export function cudaPins() {
  const meta = join(libTensorFlowDir('gpu'), 'METADATA');
  if (!existsSync(meta)) {
    // the addon was built from another cache (EMSEG_CACHE_DIR changed): the pins of the known version
    if (KNOWN_PINS[WHEEL_VERSION]) return KNOWN_PINS[WHEEL_VERSION];
    throw new SetupError(
      `${meta} is missing (the TensorFlow GPU library was cached by an older setup)`,
      `remove ${libTensorFlowDir('gpu')} and node_modules/${GPU_PKG}, then rerun \`npm run setup -- --gpu\``,
    );
  }
  const pins = {};
  for (const line of readFileSync(meta, 'utf8').split('\n')) {
    const m = /^Requires-Dist: (nvidia-[a-z0-9-]+)\s*\(?([^;]*?)\)?\s*;\s*extra == "and-cuda"/.exec(line);
    if (!m) continue;
    const exact = /==\s*([\w.]+)/.exec(m[2])?.[1];
    const lower = /(?:^|,)\s*>=\s*([\w.]+)/.exec(m[2])?.[1];
    const version = exact ?? lower;
    if (!version) throw new SetupError(`cannot pin ${m[1]} ${m[2]} from tensorflow's metadata`, 'set EMSEG_TF_WHEEL_VERSION=2.21.0 (known to work)');
    pins[m[1]] = version;
  }
  if (!pins['nvidia-cudnn-cu12'] && !Object.keys(pins).some((k) => k.startsWith('nvidia-cudnn'))) {
    throw new SetupError(`tensorflow ${WHEEL_VERSION}'s metadata lists no and-cuda wheels`, 'set EMSEG_TF_WHEEL_VERSION=2.21.0 (known to work)');
  }
  return pins;
}

// Unpacks every wheel in TMP/wheels into TMP in pip's site-packages layout, keeping exec bits.
const UNPACK = `
import glob, os, sys, zipfile
tmp = sys.argv[1]
for wheel in sorted(glob.glob(os.path.join(tmp, 'wheels', '*.whl'))):
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            path = z.extract(info, tmp)
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                os.chmod(path, mode)
`;

export function cudaDir() {
  return join(CACHE_DIR, 'cuda', `and-cuda-tf${WHEEL_VERSION}`);
}

/** Step 3: download + unpack the pinned CUDA wheels (once), then link them into deps/. */
export async function ensureCudaWheels() {
  if (process.env.EMSEG_CUDA_WHEELS === '0') return 'skipped (EMSEG_CUDA_WHEELS=0: CUDA 12 / cuDNN 9 from the system loader path)';
  const dir = cudaDir();
  let how = 'from the cache';
  if (!existsSync(join(dir, 'emseg-cuda.json'))) {
    const pins = cudaPins();
    const tmp = `${dir}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(join(tmp, 'wheels'), { recursive: true });
    try {
      const python = process.env.PYTHON || 'python3';
      const specs = Object.entries(pins).map(([n, v]) => `${n}==${v}`);
      console.error(`[setup] fetching ${specs.length} CUDA wheels from PyPI (one time, ~1.9 GB; ~2.8 GB unpacked in ${dir}): ${specs.join(' ')}`);
      const t0 = Date.now();
      run(python, ['-m', 'pip', 'download', ...pipDownloadArgs(), '-d', join(tmp, 'wheels'), ...specs], {
        fix: `check that PyPI is reachable and the disk has ~6 GB free (\`${python} -m pip download --no-deps ${specs[0]}\`), or set EMSEG_WHEELHOUSE to a folder holding these wheels, or EMSEG_CUDA_WHEELS=0 to use a system CUDA 12 / cuDNN 9`,
      });
      const downloadSeconds = (Date.now() - t0) / 1000;
      const downloadBytes = readdirSync(join(tmp, 'wheels')).reduce((s, f) => s + statSync(join(tmp, 'wheels', f)).size, 0);
      run(python, ['-c', UNPACK, tmp], {
        fix: `the disk may be full (the CUDA wheels need ~2.8 GB in ${dir}); free space and rerun \`npm run setup -- --gpu\``,
      });
      rmSync(join(tmp, 'wheels'), { recursive: true, force: true });
      writeAtomic(join(tmp, 'emseg-cuda.json'), `${JSON.stringify({ tensorflow: WHEEL_VERSION, wheels: pins, downloadBytes, downloadSeconds }, null, 2)}\n`);
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(join(dir, '..'), { recursive: true });
      renameSync(tmp, dir);
      how = `downloaded ${(downloadBytes / 2 ** 30).toFixed(2)} GiB in ${downloadSeconds.toFixed(0)} s`;
    } catch (err) {
      rmSync(tmp, { recursive: true, force: true }); // never leave GBs of partial wheels behind
      throw err;
    }
  }
  linkCuda(dir);
  const m = JSON.parse(readFileSync(join(dir, 'emseg-cuda.json'), 'utf8'));
  return `${how}: CUDA runtime ${m.wheels['nvidia-cuda-runtime-cu12']}, cuDNN ${m.wheels['nvidia-cudnn-cu12']} -> node_modules/${GPU_PKG}/deps/nvidia`;
}

/** Links the CUDA wheels if an earlier setup cached them (cheap; no download): null otherwise. */
export async function linkCachedCuda() {
  if (process.env.EMSEG_CUDA_WHEELS === '0' || !existsSync(join(cudaDir(), 'emseg-cuda.json'))) return null;
  linkCuda(cudaDir());
  return `linked from the cache (${cudaDir()})`;
}

/** deps/nvidia (and, for a loader that resolves $ORIGIN through symlinks, the cached lib's ../nvidia). */
function linkCuda(dir) {
  const missing = ['cuda_runtime/lib/libcudart.so.12', 'cudnn/lib/libcudnn.so.9', 'cublas/lib/libcublas.so.12'].filter(
    (f) => !existsSync(join(dir, 'nvidia', f)),
  );
  if (missing.length) throw new SetupError(`the cached CUDA wheels in ${dir} lack ${missing.join(', ')}`, `remove ${dir} and rerun \`npm run setup -- --gpu\``);
  const pkgDir = packageDir(GPU_PKG);
  for (const link of [join(pkgDir, 'deps', 'nvidia'), join(libTensorFlowDir('gpu'), 'nvidia')]) {
    if (!existsSync(join(link, '..'))) continue; // the library came from another cache
    try {
      lstatSync(link);
      rmSync(link, { recursive: true, force: true });
    } catch {}
    symlinkSync(join(dir, 'nvidia'), link);
  }
}

/** Step 4 (GPU machines): TensorFlow must place an op on the GPU, else say why. */
export async function checkGpuPlacement() {
  const script = `
const tf = require(${JSON.stringify(GPU_PKG)});
const y = tf.matMul(tf.ones([64, 64]), tf.ones([64, 64])).dataSync()[0];
console.log(JSON.stringify({ gpu: tf.backend().binding.isUsingGpuDevice(), y }));`;
  const res = spawnSync(process.execPath, ['-e', script], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 300_000,
    env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '0' },
  });
  const out = (res.stdout || '').trim().split('\n').pop();
  let r = null;
  try {
    r = JSON.parse(out);
  } catch {}
  if (res.status !== 0 || !r) {
    throw new SetupError(
      `${GPU_PKG} failed on this GPU machine:\n${(res.stderr || '').slice(-3000)}`,
      `see TensorFlow's log above; rerun with a clean cache: remove ${cudaDir()} and rerun \`npm run setup -- --gpu\``,
    );
  }
  if (!r.gpu) {
    const why = (res.stderr || '')
      .split('\n')
      .filter((l) => /dlopen|Could not|Cannot|cuda|CUDA|cudnn|driver/i.test(l))
      .slice(-12)
      .join('\n');
    throw new SetupError(
      `TensorFlow sees no GPU although nvidia-smi lists one:\n${why || (res.stderr || '').slice(-2000)}`,
      'check the driver supports CUDA 12.5 (`nvidia-smi` shows "CUDA Version: 12.x", driver >= 525), that CUDA_VISIBLE_DEVICES does not hide it, and that the CUDA wheels were linked (rerun `npm run setup -- --gpu`)',
    );
  }
  return 'TensorFlow places ops on the GPU';
}

export { loads };
