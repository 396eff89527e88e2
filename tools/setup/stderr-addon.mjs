// Builds libs/tf/native/stderr.node (dup/dup2 for fd 2, see libs/tf/native/stderr.c), cached in
// CACHE_DIR by source hash and Node ABI, so a second setup only copies it. Optional: without it
// libs/tf falls back to reopening stderr through /proc, which cannot reach sockets.
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { CACHE_DIR, ROOT, SetupError, run } from './util.mjs';

const SOURCE = join(ROOT, 'libs', 'tf', 'native', 'stderr.c');
const TARGET = join(ROOT, 'libs', 'tf', 'native', 'build', 'stderr.node');

function nodeInclude() {
  for (const dir of [
    join(dirname(process.execPath), '..', 'include', 'node'),
    process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include', 'node'),
  ]) {
    if (dir && existsSync(join(dir, 'node_api.h'))) return dir;
  }
  throw new SetupError(
    "Node's C headers (node_api.h) were not found",
    'install the Node.js development headers (they ship with the official Node builds and the nodejs Debian package)',
  );
}

export async function ensureStderrAddon() {
  try {
    return build();
  } catch (err) {
    // Optional: a machine without a C compiler still runs everything, a little noisier.
    if (err instanceof SetupError) return `not built (${err.message.split('\n')[0]}); TensorFlow's load-time log lines may show`;
    throw err;
  }
}

function build() {
  const hash = createHash('sha256').update(readFileSync(SOURCE)).update(process.versions.modules).digest('hex').slice(0, 16);
  const cached = join(CACHE_DIR, 'stderr-addon', `${hash}.node`);
  let how = 'from the cache';
  if (!existsSync(cached)) {
    mkdirSync(dirname(cached), { recursive: true });
    const tmp = `${cached}.tmp-${process.pid}`;
    run(process.env.CC || 'cc', ['-O2', '-shared', '-fPIC', `-I${nodeInclude()}`, '-o', tmp, SOURCE], {
      quiet: true,
      fix: 'install a C compiler (`apt-get install -y build-essential`)',
    });
    renameSync(tmp, cached);
    how = 'built';
  }
  mkdirSync(dirname(TARGET), { recursive: true });
  copyFileSync(cached, `${TARGET}.tmp`);
  renameSync(`${TARGET}.tmp`, TARGET);
  return `${how} (${TARGET})`;
}
