// Step 2: native TensorFlow for @tensorflow/tfjs-node (DESIGN.md section 3).
//
// tfjs-node's install script downloads libtensorflow 2.9.1 and a prebuilt addon from a storage
// bucket. Where that works, we let it. Where it does not (offline machines with only the package
// registries), we take the TensorFlow C library from the PyPI `tensorflow-cpu` wheel, cache it
// outside node_modules, and compile the addon from source against it:
//   deps/include  <- wheel's tensorflow/include/{tensorflow/c, tensorflow/core/platform, tsl, xla/tsl}
//   deps/lib      <- symlinks to the cached libtensorflow_cc.so.2 / libtensorflow_framework.so.2
// The compiled addon is cached too, so a fresh clone on the same machine needs no compiler.
//
// Environment: EMSEG_TF_SOURCE=wheel skips the attempt to use tfjs-node's own download;
//              EMSEG_TF_WHEEL_VERSION overrides the tensorflow-cpu version (default 2.21.0).
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, cpSync, renameSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { CACHE_DIR, ROOT, SetupError, run, writeAtomic } from './util.mjs';

const WHEEL_VERSION = process.env.EMSEG_TF_WHEEL_VERSION || '2.21.0';
const HEADER_DIRS = ['tensorflow/c/', 'tensorflow/core/platform/', 'tsl/', 'xla/tsl/c/', 'xla/tsl/platform/'];
const LIBS = ['libtensorflow_cc.so.2', 'libtensorflow_framework.so.2'];

const require = createRequire(join(ROOT, 'package.json'));

/** True when `pkg` loads in a fresh Node process (the addon and its libraries resolve). */
function loads(pkg) {
  const res = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(pkg)})`], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '3' },
  });
  return { ok: res.status === 0, stderr: res.stderr };
}

function packageDir(pkg) {
  try {
    return dirname(require.resolve(`${pkg}/package.json`));
  } catch {
    return null;
  }
}

export async function ensureNativeTensorFlow() {
  if (packageDir('@tensorflow/tfjs-node-gpu') && loads('@tensorflow/tfjs-node-gpu').ok) {
    return '@tensorflow/tfjs-node-gpu loads';
  }
  const pkgDir = packageDir('@tensorflow/tfjs-node');
  if (!pkgDir) {
    throw new SetupError('@tensorflow/tfjs-node is not installed', 'run `npm install --ignore-scripts` first');
  }
  if (loads('@tensorflow/tfjs-node').ok) return 'already built';

  const version = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')).version;
  const napi = process.versions.napi >= 8 ? 8 : Number(process.versions.napi);
  const addonDest = join(pkgDir, 'lib', `napi-v${napi}`, 'tfjs_binding.node');

  if (process.env.EMSEG_TF_SOURCE !== 'wheel' && tryUpstreamInstall(pkgDir)) return "tfjs-node's own download";

  const libDir = ensureLibTensorFlow();
  stageDeps(pkgDir, libDir);
  const addonCache = join(CACHE_DIR, 'tfjs-node-addon', `${version}-tf${WHEEL_VERSION}-napi${napi}-${process.platform}-${process.arch}`, 'tfjs_binding.node');
  if (existsSync(addonCache)) {
    mkdirSync(dirname(addonDest), { recursive: true });
    copyFileSync(addonCache, addonDest);
    if (loads('@tensorflow/tfjs-node').ok) return `addon from cache, TensorFlow ${WHEEL_VERSION} from the wheel`;
  }
  buildAddon(pkgDir);
  const check = loads('@tensorflow/tfjs-node');
  if (!check.ok) {
    throw new SetupError(
      `the addon was built but @tensorflow/tfjs-node still fails to load:\n${check.stderr.slice(-2000)}`,
      `remove ${join(CACHE_DIR, 'libtensorflow')} and node_modules/@tensorflow/tfjs-node, then rerun \`npm run setup\``,
    );
  }
  mkdirSync(dirname(addonCache), { recursive: true });
  copyFileSync(addonDest, `${addonCache}.tmp`);
  renameSync(`${addonCache}.tmp`, addonCache);
  return `addon compiled against TensorFlow ${WHEEL_VERSION} from the PyPI wheel`;
}

/** Runs tfjs-node's own install script; false (and a clean deps/) if its download fails. */
function tryUpstreamInstall(pkgDir) {
  if (existsSync(join(pkgDir, 'deps', 'lib', 'libtensorflow.so.2.9.1'))) return false; // ours, staged earlier
  const res = spawnSync(process.execPath, ['scripts/install.js'], {
    cwd: pkgDir,
    encoding: 'utf8',
    timeout: 600_000,
    env: { ...process.env, npm_config_node_gyp: nodeGyp() },
  });
  if (res.status === 0 && loads('@tensorflow/tfjs-node').ok) return true;
  console.error('[setup] tfjs-node could not download libtensorflow (expected offline); using the PyPI wheel instead');
  rmSync(join(pkgDir, 'deps'), { recursive: true, force: true });
  return false;
}

/** Extracts the C library and headers from the tensorflow-cpu wheel into the cache (once). */
function ensureLibTensorFlow() {
  const dir = join(CACHE_DIR, 'libtensorflow', `tensorflow-cpu-${WHEEL_VERSION}`);
  if (existsSync(join(dir, '.complete'))) return dir;
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const python = process.env.PYTHON || 'python3';
  console.error(`[setup] fetching tensorflow-cpu==${WHEEL_VERSION} from PyPI (one time, ~250 MB)`);
  run(python, ['-m', 'pip', 'download', '--no-deps', '--only-binary=:all:', '-d', join(tmp, 'wheel'), `tensorflow-cpu==${WHEEL_VERSION}`], {
    fix: `check that PyPI is reachable (\`${python} -m pip download --no-deps tensorflow-cpu==${WHEEL_VERSION}\`) and that ${python} is Python 3.9-3.13 on x86_64 Linux`,
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
`;
  mkdirSync(join(tmp, 'lib'), { recursive: true });
  run(python, ['-c', extract, tmp, HEADER_DIRS.join(','), LIBS.join(',')], {
    fix: 'the wheel layout may have changed; set EMSEG_TF_WHEEL_VERSION=2.21.0 (known to work)',
  });
  rmSync(join(tmp, 'wheel'), { recursive: true, force: true });
  writeAtomic(join(tmp, '.complete'), `tensorflow-cpu ${WHEEL_VERSION}\n`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dirname(dir), { recursive: true });
  renameSync(tmp, dir);
  return dir;
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
