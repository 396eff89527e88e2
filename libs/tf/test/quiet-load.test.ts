/**
 * TensorFlow's load-time log lines (absl's InitializeLog warning, oneDNN's INFO line) stay off a
 * user's terminal or pipe, EMSEG_VERBOSE=1 brings them back, and Node's own stderr keeps working.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SCRIPT = `
  const { tf } = await import(${JSON.stringify(join(ROOT, 'libs', 'tf', 'dist', 'index.js'))});
  tf.tidy(() => tf.add(tf.ones([2]), 1).dataSync());
  process.stderr.write('node stderr works\\n');
`;
const NOISE = /absl::InitializeLog|oneDNN custom operations/;

/**
 * Runs SCRIPT with stderr into a shell pipe (`2>&1 | cat`, a FIFO), Node's child-process pipe (a
 * socket, as under `nx`), its own file, or a file shared with stdout (`> log 2>&1`); returns stderr.
 */
function load(env: Record<string, string> = {}, stderr: 'pipe' | 'socket' | 'file' | 'shared-file' = 'pipe'): string {
  const base: NodeJS.ProcessEnv = { ...process.env, ...env, SCRIPT };
  if (env.EMSEG_VERBOSE === undefined) delete base.EMSEG_VERBOSE;
  const node = `"${process.execPath}" --input-type=module -e "$SCRIPT"`;
  if (stderr === 'socket') {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', SCRIPT], { env: base, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    return r.stderr;
  }
  if (stderr === 'shared-file') {
    const dir = mkdtempSync(join(tmpdir(), 'emseg-quiet-'));
    try {
      const r = spawnSync('sh', ['-c', `${node} > "${join(dir, 'log')}" 2>&1`], { env: base, encoding: 'utf8' });
      expect(r.status).toBe(0);
      return readFileSync(join(dir, 'log'), 'utf8');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  if (stderr === 'pipe') {
    const r = spawnSync('sh', ['-c', `${node} 2>&1 >/dev/null | cat`], { env: base, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    return r.stdout;
  }
  const dir = mkdtempSync(join(tmpdir(), 'emseg-quiet-'));
  try {
    const r = spawnSync('sh', ['-c', `${node} 2> "${join(dir, 'err')}"`], { env: base, encoding: 'utf8' });
    expect(r.status).toBe(0);
    return readFileSync(join(dir, 'err'), 'utf8');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

beforeAll(() => {
  expect(spawnSync(join(ROOT, 'node_modules', '.bin', 'tsc'), ['-b', join(ROOT, 'libs', 'tf')]).status).toBe(0);
});

describe('quiet native load', () => {
  it('keeps the load-time log lines off a piped stderr', () => {
    const err = load();
    expect(err).not.toMatch(NOISE);
    expect(err).toContain('node stderr works');
  });

  it('keeps them off stderr redirected to its own file', () => {
    const err = load({}, 'file');
    expect(err).not.toMatch(NOISE);
    expect(err).toContain('node stderr works');
  });

  it('keeps them off a socket and a log shared with stdout, with the stderr addon setup builds', () => {
    expect(existsSync(join(ROOT, 'libs', 'tf', 'native', 'build', 'stderr.node')), 'npm run setup builds libs/tf/native/build/stderr.node').toBe(true);
    for (const mode of ['socket', 'shared-file'] as const) {
      const err = load({}, mode);
      expect(err, mode).not.toMatch(NOISE);
      expect(err, mode).toContain('node stderr works');
    }
  });

  it('shows them with EMSEG_VERBOSE=1', () => {
    const err = load({ EMSEG_VERBOSE: '1' });
    expect(err).toMatch(NOISE);
    expect(err).toContain('node stderr works');
  });
});
