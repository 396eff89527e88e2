// Step 2: native TensorFlow for @tensorflow/tfjs-node, and with --gpu for @tensorflow/tfjs-node-gpu
// (DESIGN.md section 3).
//
// tfjs-node's install script downloads libtensorflow 2.9.1 and a prebuilt addon from a storage
// bucket. Where that works, we let it (CPU only). Where it does not (offline machines with only the
// package registries), we take the TensorFlow C library from a PyPI wheel, cache it outside
// node_modules, and compile the addon from source against it:
//   deps/include  <- wheel's tensorflow/include/{tensorflow/c, tensorflow/core/platform, tsl, xla/tsl}
//   deps/lib      <- symlinks to the cached libtensorflow_cc.so.2 / libtensorflow_framework.so.2
// The compiled addon is cached too, so a fresh clone on the same machine needs no compiler.
//
// Two variants, one code path (VARIANTS below):
//   cpu: @tensorflow/tfjs-node      <- PyPI `tensorflow-cpu`  -> CACHE/libtensorflow/tensorflow-cpu-<v>/
//   gpu: @tensorflow/tfjs-node-gpu  <- PyPI `tensorflow`      -> CACHE/libtensorflow/tensorflow-gpu-<v>/
// The GPU wheel's libraries have no NEEDED entry on any CUDA library: TensorFlow dlopens CUDA, cuDNN,
// cuBLAS... when it initialises a GPU, so the GPU build loads and runs on a CPU-only machine.
// Their RUNPATH holds `$ORIGIN/../nvidia/<lib>/lib` (pip's site-packages layout), and $ORIGIN is
// deps/lib (the path the addon's rpath found them by), so the CUDA 12 / cuDNN 9 runtime wheels that
// `tensorflow[and-cuda]` pins (cuda.mjs) are found through one symlink, deps/nvidia -> the cached
// wheels: no LD_LIBRARY_PATH needed.
//
// Environment: EMSEG_TF_SOURCE=wheel skips the attempt to use tfjs-node's own download;
//              EMSEG_TF_WHEEL_VERSION overrides the TensorFlow version (default 2.21.0);
//              EMSEG_WHEELHOUSE=DIR takes wheels from DIR instead of PyPI (pip --no-index --find-links).
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, cpSync, renameSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { CACHE_DIR, ROOT, SetupError, pipDownloadArgs, run, writeAtomic } from './util.mjs';

export const WHEEL_VERSION = process.env.EMSEG_TF_WHEEL_VERSION || '2.21.0';
const HEADER_DIRS = ['tensorflow/c/', 'tensorflow/core/platform/', 'tsl/', 'xla/tsl/c/', 'xla/tsl/platform/'];
const LIBS = ['libtensorflow_cc.so.2', 'libtensorflow_framework.so.2'];

export const VARIANTS = {
  cpu: { pkg: '@tensorflow/tfjs-node', wheel: 'tensorflow-cpu', cacheName: 'tensorflow-cpu', addonCache: 'tfjs-node-addon', wheelMB: 250, upstream: true },
  // tfjs-node-gpu's own download is libtensorflow-gpu 2.9.1 for CUDA 11.2: never what we want.
  gpu: { pkg: '@tensorflow/tfjs-node-gpu', wheel: 'tensorflow', cacheName: 'tensorflow-gpu', addonCache: 'tfjs-node-gpu-addon', wheelMB: 575, upstream: false },
};

const require = createRequire(join(ROOT, 'package.json'));

/** True when `pkg` loads in a fresh Node process (the addon and its libraries resolve). */
export function loads(pkg) {
  const res = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(pkg)})`], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '3' },
  });
  return { ok: res.status === 0, stderr: res.stderr };
}

export function packageDir(pkg) {
  try {
    return dirname(require.resolve(`${pkg}/package.json`));
  } catch {
    return null;
  }
}

/** Where the variant's TensorFlow C library is cached. */
export function libTensorFlowDir(variant) {
  return join(CACHE_DIR, 'libtensorflow', `${VARIANTS[variant].cacheName}-${WHEEL_VERSION}`);
}

/**
 * Makes `VARIANTS[variant].pkg` load: its addon compiled against the wheel's TensorFlow (or, CPU
 * only, tfjs-node's own download). The npm package must be installed already.
 */
export async function ensureNativeTensorFlow(variant = 'cpu') {
  const v = VARIANTS[variant];
  const pkgDir = packageDir(v.pkg);
  if (!pkgDir) {
    throw new SetupError(
      `${v.pkg} is not installed`,
      variant === 'cpu' ? 'run `npm install --ignore-scripts` first' : 'rerun `npm run setup -- --gpu` (it installs the package)',
    );
  }
  if (loads(v.pkg).ok) return 'already built';

  const version = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')).version;
  const napi = process.versions.napi >= 8 ? 8 : Number(process.versions.napi);
  const addonDest = join(pkgDir, 'lib', `napi-v${napi}`, 'tfjs_binding.node');

  if (v.upstream && process.env.EMSEG_TF_SOURCE !== 'wheel' && tryUpstreamInstall(pkgDir, v.pkg)) return "tfjs-node's own download";

  const libDir = ensureLibTensorFlow(variant);
  stageDeps(pkgDir, libDir);
  const addonCache = join(CACHE_DIR, v.addonCache, `${version}-tf${WHEEL_VERSION}-napi${napi}-${process.platform}-${process.arch}`, 'tfjs_binding.node');
  if (existsSync(addonCache)) {
    mkdirSync(dirname(addonDest), { recursive: true });
    copyFileSync(addonCache, addonDest);
    if (loads(v.pkg).ok) return `addon from cache, TensorFlow ${WHEEL_VERSION} from the ${v.wheel} wheel`;
  }
  buildAddon(pkgDir);
  const check = loads(v.pkg);
  if (!check.ok) {
    throw new SetupError(
      `the addon was built but ${v.pkg} still fails to load:\n${check.stderr.slice(-2000)}`,
      `remove ${libDir} and node_modules/${v.pkg}, then rerun \`npm run setup${variant === 'gpu' ? ' -- --gpu' : ''}\``,
    );
  }
  mkdirSync(dirname(addonCache), { recursive: true });
  copyFileSync(addonDest, `${addonCache}.tmp`);
  renameSync(`${addonCache}.tmp`, addonCache);
  return `addon compiled against TensorFlow ${WHEEL_VERSION} from the PyPI ${v.wheel} wheel`;
}

/** Runs tfjs-node's own install script; false (and a clean deps/) if its download fails. */
function tryUpstreamInstall(pkgDir, pkg) {
  if (existsSync(join(pkgDir, 'deps', 'lib', 'libtensorflow.so.2.9.1'))) return false; // ours, staged earlier
  const res = spawnSync(process.execPath, ['scripts/install.js'], {
    cwd: pkgDir,
    encoding: 'utf8',
    timeout: 600_000,
    env: { ...process.env, npm_config_node_gyp: nodeGyp() },
  });
  if (res.status === 0 && loads(pkg).ok) return true;
  console.error('[setup] tfjs-node could not download libtensorflow (expected offline); using the PyPI wheel instead');
  rmSync(join(pkgDir, 'deps'), { recursive: true, force: true });
  return false;
}

/** Extracts the C library and headers from the variant's TensorFlow wheel into the cache (once). */
function ensureLibTensorFlow(variant) {
  const v = VARIANTS[variant];
  const dir = libTensorFlowDir(variant);
  if (existsSync(join(dir, '.complete'))) return dir;
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    extractWheel(v, tmp);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true }); // no half-extracted library left behind
    throw err;
  }
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dirname(dir), { recursive: true });
  renameSync(tmp, dir);
  return dir;
}

function extractWheel(v, tmp) {
  const variant = v === VARIANTS.gpu ? 'gpu' : 'cpu';
  const python = process.env.PYTHON || 'python3';
  const spec = `${v.wheel}==${WHEEL_VERSION}`;
  console.error(`[setup] fetching ${spec} from PyPI (one time, ~${v.wheelMB} MB; cached in ${libTensorFlowDir(variant)})`);
  run(python, ['-m', 'pip', 'download', ...pipDownloadArgs(), '-d', join(tmp, 'wheel'), spec], {
    fix: `check that PyPI is reachable (\`${python} -m pip download --no-deps ${spec}\`) and that ${python} is Python 3.9-3.13 on x86_64 Linux (or set EMSEG_WHEELHOUSE to a folder holding the wheel)`,
  });
  const extract = `
import glob, os, sys, zipfile
tmp, header_dirs, libs = sys.argv[1], sys.argv[2].split(','), sys.argv[3].split(',')
wheel = glob.glob(os.path.join(tmp, 'wheel', '*.whl'))[0]
with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    for lib in libs:
        member = 'tensorflow/' + lib
        if member not in names:
            sys.exit('wheel has no ' + member)
        with z.open(member) as src, open(os.path.join(tmp, 'lib', lib), 'wb') as dst:
            while chunk := src.read(1 << 22):
                dst.write(chunk)
    for n in names:
        rel = n[len('tensorflow/include/'):]
        if n.startswith('tensorflow/include/') and any(rel.startswith(d) for d in header_dirs) and not n.endswith('/'):
            out = os.path.join(tmp, 'include', rel)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(n) as src, open(out, 'wb') as dst:
                dst.write(src.read())
    # the wheel's metadata: Requires-Dist of the and-cuda extra pins the CUDA wheels (cuda.mjs)
    meta = [n for n in names if n.endswith('.dist-info/METADATA')]
    if meta:
        with open(os.path.join(tmp, 'METADATA'), 'wb') as dst:
            dst.write(z.read(meta[0]))
`;
  mkdirSync(join(tmp, 'lib'), { recursive: true });
  run(python, ['-c', extract, tmp, HEADER_DIRS.join(','), LIBS.join(',')], {
    fix: `the wheel layout may have changed, or the disk is full (the ${variant.toUpperCase()} library needs ~${variant === 'gpu' ? '1.3' : '0.8'} GB); set EMSEG_TF_WHEEL_VERSION=2.21.0 (known to work)`,
  });
  rmSync(join(tmp, 'wheel'), { recursive: true, force: true });
  writeAtomic(join(tmp, '.complete'), `${v.wheel} ${WHEEL_VERSION}\n`);
}

/** Lays out deps/ the way tfjs-node's binding.gyp expects it. */
function stageDeps(pkgDir, libDir) {
  const deps = join(pkgDir, 'deps');
  rmSync(deps, { recursive: true, force: true });
  mkdirSync(join(deps, 'lib'), { recursive: true });
  cpSync(join(libDir, 'include'), join(deps, 'include'), { recursive: true });
  const link = (target, name) => symlinkSync(target, join(deps, 'lib', name));
  for (const lib of LIBS) link(join(libDir, 'lib', lib), lib);
  link('libtensorflow_cc.so.2', 'libtensorflow.so');
  link('libtensorflow_framework.so.2', 'libtensorflow_framework.so');
  // tfjs-node's install script skips its download when this file exists.
  link('libtensorflow_cc.so.2', 'libtensorflow.so.2.9.1');
}

function nodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ].filter(Boolean);
  try {
    candidates.push(require.resolve('node-gyp/bin/node-gyp.js'));
  } catch {}
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new SetupError('node-gyp was not found (it ships with npm)', 'install it with `npm install -g node-gyp`');
  }
  return found;
}

function nodeHeadersDir() {
  const prefix = join(dirname(process.execPath), '..');
  if (existsSync(join(prefix, 'include', 'node', 'node_api.h'))) return prefix;
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  throw new SetupError(
    `Node's C headers were not found under ${join(prefix, 'include', 'node')}`,
    'install the Node.js development headers (they ship with the official Node builds and the nodejs Debian package)',
  );
}

function buildAddon(pkgDir) {
  const pkgRequire = createRequire(join(pkgDir, 'package.json'));
  const nodePreGyp = join(dirname(pkgRequire.resolve('@mapbox/node-pre-gyp/package.json')), 'bin', 'node-pre-gyp');
  run(process.execPath, [nodePreGyp, 'install', '--build-from-source'], {
    cwd: pkgDir,
    quiet: true,
    env: { ...process.env, npm_config_node_gyp: nodeGyp(), npm_config_nodedir: nodeHeadersDir(), JOBS: 'max' },
    fix: 'the addon compiles with g++ and make: install them (`apt-get install -y build-essential`)',
  });
}
