/**
 * Issue 15 part 2, through the built CLI: `predict <volume.zarr>` predicts chunk-aligned blocks
 * into an OME-Zarr output, chunk for chunk the same with 1 worker, 2 worker processes and two
 * concurrent shards (--shard 0/2 and Slurm's array variables for 1/2); a rerun skips every done
 * block; bad input is refused naming the path, before anything is written; a block that fails is
 * reported by id and the job ends non-zero while the other blocks are written.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import * as zarr from 'zarrita';
import FileSystemStore from '@zarrita/storage/fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openZarrVolume } from '@emseg/data';
import { resnetEncoder } from '@emseg/models';
import { Segmenter } from '@emseg/segmentation';
import { parseShard } from '../src/predict-blocks.js';
import { WORKSPACE } from '../src/workspace.js';
import { buildFinetune, runCli, startCli, tempDir } from './helpers.js';

const tmp = tempDir('predict-blocks');
const [D, H, W] = [4, 96, 160];
let model: string;
let volume: string;

/** Every file under `dir` (relative path -> bytes), hidden job state excluded. */
function chunkFiles(dir: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.name === '.emseg-job') continue;
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else files.set(relative(dir, p), readFileSync(p));
    }
  };
  walk(dir);
  return files;
}

const predictArgs = (out: string, ...extra: string[]) => ['predict', volume, '--model', model, '--out', out, ...extra];

beforeAll(async () => {
  buildFinetune();
  const segmenter = Segmenter.create(
    resnetEncoder({ depth: 18, seed: 1 }),
    { mean: [0.5], std: [0.2] },
    { encoderSource: 'random', encoderRunId: null },
    { decoderChannels: [32, 16, 16, 8, 8], seed: 2 },
  );
  try {
    model = await segmenter.save(
      join(tmp.dir, 'model'),
      segmenter.info({
        threshold: 0.5,
        inference: { tileSize: 64, overlap: 16, window: 'gaussian', batchSize: 2, flipTta: false },
        step: 0,
        valF1: null,
        mlflowRunId: null,
        task: 'iou',
        metric: 'iou',
        valScore: null,
      }),
    );
  } finally {
    segmenter.dispose();
  }
  // the input, written by plain zarrita (v3, uncompressed), chunks of 2 x 32 x 32
  volume = join(tmp.dir, 'em.zarr');
  const arr = await zarr.create(new FileSystemStore(volume), { shape: [D, H, W], chunkShape: [2, 32, 32], dtype: 'uint8' });
  const data = Uint8Array.from({ length: D * H * W }, (_, i) => (i * 7 + Math.floor(i / W) * 13 + ((i >> 4) ^ (i >> 9)) * 29) % 256);
  await zarr.set(arr, null, { data, shape: [D, H, W], stride: [H * W, W, 1] });
}, 180_000);

afterAll(() => tmp.cleanup());

describe('predict of a Zarr volume, block by block', () => {
  let single: Map<string, Buffer>;

  it('one worker: 12 blocks of 2 x 64 x 64 into an OME-Zarr uint8 array; a rerun skips them all', async () => {
    const out = join(tmp.dir, 'single.zarr');
    const r = await runCli(predictArgs(out));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain(
      `blocks: 12 of 2 x 64 x 64 (z, y, x; chunks 2 x 32 x 32, halo 16) over ${D} x ${H} x ${W}; 0 already done, 12 to predict with 1 worker(s)`,
    );
    expect(r.stdout).toContain(`12 block(s) predicted, 0 already done, 0 failed -> ${out}`);
    const vol = await openZarrVolume(out);
    expect([vol.path, vol.shape, vol.chunks, vol.dtype, vol.format]).toEqual([join(out, '0'), [D, H, W], [2, 32, 32], 'uint8', 3]);
    const values = await vol.read([0, 0, 0], [D, H, W]);
    expect(new Set(values).size).toBeGreaterThan(10);
    expect(readdirSync(join(out, '.emseg-job', 'done'))).toHaveLength(12);
    single = chunkFiles(out);
    expect([...single.keys()].filter((k) => k.startsWith('0/c/'))).toHaveLength(2 * 3 * 5);
    const again = await runCli(predictArgs(out));
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).toContain(`0 block(s) predicted, 12 already done, 0 failed`);
  });

  it('two worker processes write the same chunks', async () => {
    const out = join(tmp.dir, 'pool.zarr');
    const r = await runCli(predictArgs(out, '--workers', '2'));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain('12 to predict with 2 worker(s)');
    expect(chunkFiles(out)).toEqual(single);
  });

  it('shards 0/2 (--shard) and 1/2 (SLURM_ARRAY_TASK_ID, run at the same time) write the same chunks', async () => {
    const out = join(tmp.dir, 'shards.zarr');
    const a = startCli(predictArgs(out, '--shard', '0/2'));
    const b = startCli(predictArgs(out), { env: { SLURM_ARRAY_TASK_ID: '1', SLURM_ARRAY_TASK_COUNT: '2' } });
    const [ra, rb] = await Promise.all([a.done, b.done]);
    expect(ra.status, ra.stderr).toBe(0);
    expect(rb.status, rb.stderr).toBe(0);
    expect(ra.stderr).toContain('shard 0/2 (--shard): 6');
    expect(rb.stderr).toContain('shard 1/2 (SLURM_ARRAY_TASK_ID): 6');
    expect(ra.stdout + rb.stdout).toMatch(/6 block\(s\) predicted[^]*6 block\(s\) predicted/);
    expect(chunkFiles(out)).toEqual(single);
  });

  it('deploy/slurm/predict.sbatch as two array tasks writes the same chunks; the Kubernetes Job shards by its completions', async () => {
    const out = join(tmp.dir, 'slurm.zarr');
    const task = (id: number) =>
      new Promise<{ status: number | null; stderr: string }>((done, fail) => {
        const child = spawn('bash', [join(WORKSPACE, 'deploy', 'slurm', 'predict.sbatch'), volume, out, model], {
          cwd: tmp.dir,
          env: {
            ...process.env,
            MLFLOW_TRACKING_URI: '',
            SLURM_SUBMIT_DIR: WORKSPACE,
            SLURM_ARRAY_TASK_ID: String(id + 4),
            SLURM_ARRAY_TASK_MIN: '4',
            SLURM_ARRAY_TASK_COUNT: '2',
          },
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        let stderr = '';
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.on('error', fail);
        child.on('close', (status) => done({ status, stderr }));
      });
    const runs = await Promise.all([task(0), task(1)]);
    for (const [i, r] of runs.entries()) {
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toContain(`shard ${i}/2 (SLURM_ARRAY_TASK_ID): 6`);
    }
    expect(chunkFiles(out)).toEqual(single);
    const manifest = readFileSync(join(WORKSPACE, 'deploy', 'k8s', 'predict-job.yaml'), 'utf8');
    expect(manifest).toMatch(/completionMode: Indexed/);
    const completions = /\n {2}completions: (\d+)/.exec(manifest)?.[1];
    expect(/- name: EMSEG_SHARD_COUNT\n\s+value: "(\d+)"/.exec(manifest)?.[1]).toBe(completions);
    expect(manifest).toContain('command: ["node", "apps/finetune/dist/main.js", "predict"]');
  });

  it('a block that fails is reported by id, the others are written, the job ends non-zero; a rerun with the fix predicts only it', async () => {
    const broken = join(tmp.dir, 'broken.zarr');
    const arr = await zarr.create(new FileSystemStore(broken), {
      shape: [D, H, W],
      chunkShape: [2, 32, 32],
      dtype: 'uint8',
      codecs: [
        { name: 'bytes', configuration: {} },
        { name: 'gzip', configuration: { level: 1 } },
      ],
    });
    await zarr.set(arr, null, 100);
    const input = await openZarrVolume(broken);
    expect(input.dtype).toBe('uint8');
    const chunk = join(broken, 'c', '1', '0', '0');
    const good = readFileSync(chunk);
    writeFileSync(chunk, 'not gzip');
    const out = join(tmp.dir, 'partial.zarr');
    const r = await runCli(['predict', broken, '--model', model, '--out', out, '--halo', '0', '--no-ome']);
    expect(r.status).toBe(1);
    // chunk z 2-3, y 0-31, x 0-31 is read by block 1-0-0 only (halo 0, a tile of 64 from x 0)
    expect(r.stdout).toMatch(/11 block\(s\) predicted, 0 already done, 1 failed/);
    expect(r.stdout).toMatch(/failed: block 1-0-0 \(index 6\): /);
    expect(existsSync(join(out, '.emseg-job', 'done', '1-0-0.json'))).toBe(false);
    writeFileSync(chunk, good);
    const again = await runCli(['predict', broken, '--model', model, '--out', out, '--halo', '0', '--no-ome']);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).toContain('1 block(s) predicted, 11 already done, 0 failed');
  });
});

describe('predict of a Zarr volume refuses bad input, naming it, before writing', () => {
  it('a group that is no image, an unsupported dtype, a bad shard, Zarr flags on images, another job in the output', async () => {
    const group = join(tmp.dir, 'group.zarr');
    await zarr.create(new FileSystemStore(group));
    const g = await runCli(['predict', group, '--model', model, '--out', join(tmp.dir, 'g-out.zarr')]);
    expect(g.status).toBe(1);
    expect(g.stderr).toContain(`${group}: is a Zarr group, not an array, and has no OME-Zarr multiscales metadata`);
    expect(existsSync(join(tmp.dir, 'g-out.zarr'))).toBe(false);

    const ints = join(tmp.dir, 'ints.zarr');
    await zarr.create(new FileSystemStore(ints), { shape: [1, 64, 64], chunkShape: [1, 64, 64], dtype: 'int32' });
    const i = await runCli(['predict', ints, '--model', model, '--out', join(tmp.dir, 'i-out.zarr')]);
    expect(i.stderr).toContain(`${ints}: has dtype int32; expected an array of uint8, uint16, float32 grey values`);
    expect(existsSync(join(tmp.dir, 'i-out.zarr'))).toBe(false);

    const s = await runCli(predictArgs(join(tmp.dir, 's-out.zarr'), '--shard', '2/2'));
    expect(s.status).toBe(1);
    expect(s.stderr).toContain('--shard "2/2": a shard is i/n with whole numbers 0 <= i < n');

    const png = await runCli(['predict', join(tmp.dir, 'missing.png'), '--model', model, '--workers', '2']);
    expect(png.status).toBe(1);
    expect(png.stderr).toContain('--workers apply to a Zarr input');

    const out = join(tmp.dir, 'single.zarr');
    const before = statSync(join(out, '.emseg-job', 'job.json')).mtimeMs;
    const other = await runCli(predictArgs(out, '--halo', '8'));
    expect(other.status).toBe(1);
    expect(other.stderr).toContain(`${join(out, '.emseg-job', 'job.json')}: ${out} holds a block job with other settings (halo: 16 there, 8 now)`);
    expect(statSync(join(out, '.emseg-job', 'job.json')).mtimeMs).toBe(before);
  });

  it('parseShard reads --shard, Slurm arrays and Kubernetes Indexed Jobs', () => {
    expect(parseShard('1/3', {})).toEqual({ index: 1, count: 3, source: '--shard' });
    expect(parseShard(undefined, { SLURM_ARRAY_TASK_ID: '5', SLURM_ARRAY_TASK_MIN: '4', SLURM_ARRAY_TASK_COUNT: '2' })).toEqual({
      index: 1,
      count: 2,
      source: 'SLURM_ARRAY_TASK_ID',
    });
    expect(parseShard(undefined, { JOB_COMPLETION_INDEX: '0', EMSEG_SHARD_COUNT: '4' })).toEqual({ index: 0, count: 4, source: 'JOB_COMPLETION_INDEX' });
    expect(() => parseShard(undefined, { JOB_COMPLETION_INDEX: '0' })).toThrow(/EMSEG_SHARD_COUNT is not/);
    expect(parseShard(undefined, {})).toBeNull();
  });
});
