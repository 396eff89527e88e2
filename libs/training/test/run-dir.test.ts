/**
 * A run folder belongs to one run: a used folder is refused unless resumed or explicitly cleared,
 * a live run's lock keeps a second process out (real processes), and unusable paths get errors
 * that name the culprit before any work starts.
 */
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { claimRunDir, latestRecordPath, RUN_LOCK, RUN_RECORD, RunDirError, type RunDirClaim } from '@emseg/training';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
let tmp: string;
const claims: RunDirClaim[] = [];
const notes: string[] = [];
const claim = async (dir: string, mode: 'new' | 'resume' | 'overwrite', app = 'finetune') => {
  const c = await claimRunDir(dir, { app, runName: 'r', mode, onNote: (m) => notes.push(m) });
  claims.push(c);
  return c;
};

beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'emseg-rundir-'));
  notes.length = 0;
});
afterEach(() => {
  for (const c of claims.splice(0)) c.release();
  rmSync(tmp, { recursive: true, force: true });
});

describe('claimRunDir', () => {
  it('creates a new folder with run.json and a lock, and records MLflow runs', async () => {
    const dir = join(tmp, 'a', 'b');
    const c = await claim(dir, 'new');
    expect(existsSync(join(dir, RUN_LOCK))).toBe(true);
    await c.recordRun({ runId: 'abc', trackingUri: 'http://x' });
    const record = JSON.parse(readFileSync(join(dir, RUN_RECORD), 'utf8'));
    expect(record).toMatchObject({ format: 'emseg-run/1', app: 'finetune', runName: 'r', runs: [{ runId: 'abc', trackingUri: 'http://x' }] });
    c.release();
    expect(existsSync(join(dir, RUN_LOCK))).toBe(false);
  });

  it('refuses a used folder without --resume or --overwrite, naming the run that owns it', async () => {
    const dir = join(tmp, 'run');
    const first = await claim(dir, 'new');
    await first.recordRun({ runId: 'r-old', trackingUri: 'http://x' });
    writeFileSync(join(dir, 'best.txt'), 'old model');
    first.release();
    await expect(claim(dir, 'new')).rejects.toThrow(/already holds the finetune run "r" \(MLflow run r-old\).*--resume.*--overwrite/);
    expect(readFileSync(join(dir, 'best.txt'), 'utf8')).toBe('old model');
    expect(existsSync(join(dir, RUN_LOCK))).toBe(false); // a refused claim leaves no lock behind
  });

  it('reuses a folder whose claim never started a run (only run.json and config.json)', async () => {
    const dir = join(tmp, 'run');
    (await claim(dir, 'new')).release();
    writeFileSync(join(dir, 'config.json'), '{}');
    const again = await claim(dir, 'new');
    expect(again.previous).toBeNull();
  });

  it('resumes a used folder and returns its record; refuses another app or a folder that is not a run', async () => {
    const dir = join(tmp, 'run');
    const first = await claim(dir, 'new');
    await first.recordRun({ runId: 'r-old', trackingUri: 'http://x' });
    first.release();
    await expect(claim(dir, 'resume', 'pretrain')).rejects.toThrow(/holds a finetune run, not a pretrain run/);
    const again = await claim(dir, 'resume');
    expect(again.previous?.runs.map((r) => r.runId)).toEqual(['r-old']);
    await again.recordRun({ runId: 'r-new', trackingUri: 'http://x' });
    expect(again.previous?.runs.map((r) => r.runId)).toEqual(['r-old']); // previous is what was found
    expect(JSON.parse(readFileSync(join(dir, RUN_RECORD), 'utf8')).runs.map((r: { runId: string }) => r.runId)).toEqual(['r-old', 'r-new']);
    await expect(claim(join(tmp, 'typo'), 'resume')).rejects.toThrow(/typo does not exist/);
    mkdirSync(join(tmp, 'plain'));
    writeFileSync(join(tmp, 'plain', 'x.png'), '');
    await expect(claim(join(tmp, 'plain'), 'resume')).rejects.toThrow(/is not a run folder/);
  });

  it('resumes a folder written before run.json existed (checkpoints/ and mlflow-run.json)', async () => {
    const dir = join(tmp, 'legacy');
    mkdirSync(join(dir, 'checkpoints'), { recursive: true });
    writeFileSync(join(dir, 'mlflow-run.json'), JSON.stringify({ runId: 'legacy-run', trackingUri: 'http://x' }));
    const c = await claim(dir, 'resume', 'pretrain');
    expect(c.previous?.runs[0]?.runId).toBe('legacy-run');
  });

  it('--overwrite clears an emseg run folder but never a folder of other files', async () => {
    const dir = join(tmp, 'run');
    (await claim(dir, 'new')).release();
    writeFileSync(join(dir, 'stale.bin'), 'x');
    await claim(dir, 'overwrite');
    expect(existsSync(join(dir, 'stale.bin'))).toBe(false);
    expect(notes.some((n) => n.includes('cleared'))).toBe(true);
    const precious = join(tmp, 'images');
    mkdirSync(precious);
    writeFileSync(join(precious, 'slice.png'), 'data');
    await expect(claim(precious, 'overwrite')).rejects.toThrow(/not an emseg run folder.*not clearing it/);
    expect(existsSync(join(precious, 'slice.png'))).toBe(true);
  });

  it('names the file in the way when --out lies under a regular file, and the folder without permission', async () => {
    writeFileSync(join(tmp, 'file'), '');
    await expect(claim(join(tmp, 'file', 'run'), 'new')).rejects.toThrow(new RegExp(`${join(tmp, 'file')} is a file, not a folder`));
    if (process.getuid?.() !== 0) {
      mkdirSync(join(tmp, 'ro'));
      chmodSync(join(tmp, 'ro'), 0o555);
      await expect(claim(join(tmp, 'ro', 'run'), 'new')).rejects.toThrow(RunDirError);
      chmodSync(join(tmp, 'ro'), 0o755);
    }
  });

  it('keeps a second live process out of a locked folder, and takes over the lock of a dead one', async () => {
    const dir = join(tmp, 'shared');
    const script = `
      const { claimRunDir } = await import(${JSON.stringify(join(ROOT, 'libs', 'training', 'dist', 'index.js'))});
      await claimRunDir(${JSON.stringify(dir)}, { app: 'finetune', runName: 'holder', mode: 'new' });
      process.stdout.write('claimed\\n');
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => d.toString().includes('claimed') && resolve());
        child.on('exit', (code) => reject(new Error(`holder exited ${code}`)));
      });
      await expect(claim(dir, 'resume')).rejects.toThrow(new RegExp(`in use by finetune process ${child.pid}`));
      await expect(claim(dir, 'overwrite')).rejects.toThrow(/in use by/);
    } finally {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
    }
    // SIGKILL left the lock file behind; its process is gone, so the next run takes it over.
    expect(existsSync(join(dir, RUN_LOCK))).toBe(true);
    await claim(dir, 'resume');
    expect(notes.some((n) => n.includes(`process ${child.pid}, which is no longer running`))).toBe(true);
  });

  it('puts latest.json beside the run folders', () => {
    expect(latestRecordPath('/x/runs/finetune/r1')).toBe('/x/runs/finetune/latest.json');
  });
});
