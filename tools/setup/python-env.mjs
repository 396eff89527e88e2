// Step 3: the project-local Python environment (.venv) with pinned packages from
// requirements.txt: the MLflow tracking server and PyTorch (reference benchmarks, weight import);
// with --bench also requirements-bench.txt (reference implementations for benchmarks).
// Skipped when those files are unchanged since the last successful install.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, hashOf, readStamp, run, writeAtomic } from './util.mjs';

export const VENV = join(ROOT, '.venv');
export const VENV_PYTHON = join(VENV, 'bin', 'python');

/** Installs requirements.txt (and requirements-bench.txt with `bench`) into .venv. */
export async function ensurePythonEnv({ bench = false } = {}) {
  const files = [join(ROOT, 'tools', 'setup', 'requirements.txt')];
  if (bench) files.push(join(ROOT, 'tools', 'setup', 'requirements-bench.txt'));
  const stampPath = join(VENV, bench ? '.emseg-stamp-bench' : '.emseg-stamp');
  const want = hashOf(...files);
  if (existsSync(VENV_PYTHON) && readStamp(stampPath) === want) return 'up to date';
  const python = process.env.PYTHON || 'python3';
  if (!existsSync(VENV_PYTHON)) {
    run(python, ['-m', 'venv', VENV], {
      fix: `install Python 3.10+ with the venv module (Debian: \`apt-get install -y python3-venv\`), or set PYTHON=/path/to/python3`,
    });
  }
  run(VENV_PYTHON, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', ...files.flatMap((f) => ['-r', f])], {
    fix: 'check that PyPI is reachable (`.venv/bin/python -m pip download mlflow`); delete .venv to start over',
  });
  writeAtomic(stampPath, want);
  return 'installed';
}
