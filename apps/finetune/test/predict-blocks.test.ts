/**
 * Issue 15 part 2, through the built CLI: `predict <volume.zarr>` predicts chunk-aligned blocks
 * into an OME-Zarr output, chunk for chunk the same with 1 worker, 2 worker processes and two
 * concurrent shards (--shard 0/2 and Slurm's array variables for 1/2); a rerun skips every done
 * block; bad input is refused naming the path, before anything is written; a block that fails is
 * reported by id and the job ends non-zero while the other blocks are written. Each planning
 * process logs one MLflow run (a real server): params, blocks_done up to the total on a timer,
 * FINISHED; shards tagged with the job id and their index; FAILED for a failed block; KILLED on
 * SIGTERM.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as zarr from 'zarrita';
import FileSystemStore from '@zarrita/storage/fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openZarrVolume } from '@emseg/data';
import { probabilityLevel } from '@emseg/segmentation';
import { MlflowClient, startMlflowServer, type MlflowServer, type Run } from '@emseg/tracking';
import { DEFAULT_PREDICT_EXPERIMENT, jobId, parseShard, predictZarr, readJob, type ZarrPredictArgs } from '../src/predict-blocks.js';
import { WORKSPACE } from '../src/workspace.js';
import { buildFinetune, chunkFiles, metric, runCli, saveTinyModel, startCli, tempDir, wholeVolumeInstances, writeTestVolume } from './helpers.js';

const tmp = tempDir('predict-blocks');
const [D, H, W] = [4, 96, 160];
let model: string;
let volume: string;
let server: MlflowServer;
let client: MlflowClient;

/** The runs of the default experiment whose tag emseg.predict.output is `out`, oldest first. */
async function runsOf(out: string): Promise<Run[]> {
  const experiment = await client.getExperimentByName(DEFAULT_PREDICT_EXPERIMENT);
  if (!experiment) return [];
  const runs = await client.searchRuns({ experimentIds: [experiment.experimentId], filter: `tags."emseg.predict.output" = '${out}'` });
  return runs.sort((a, b) => Number(a.info.startTime) - Number(b.info.startTime));
}

/** predictZarr's arguments for the test volume and model (no MLflow run). */
const zarrArgs = (out: string, extra: Partial<ZarrPredictArgs> = {}): ZarrPredictArgs => ({
  input: volume,
  out,
  model,
  inference: {},
  dtype: 'uint8',
  format: 3,
  ome: true,
  workers: 1,
  tracking: false,
  ...extra,
});

const predictArgs = (out: string, ...extra: string[]) => ['predict', volume, '--model', model, '--out', out, '--tracking-uri', server.uri, ...extra];

beforeAll(async () => {
  buildFinetune();
  server = await startMlflowServer({ storeDir: join(tmp.dir, 'mlflow') });
  client = new MlflowClient({ trackingUri: server.uri });
  model = await saveTinyModel(join(tmp.dir, 'model'));
  // the input, written by plain zarrita (v3, uncompressed), chunks of 2 x 32 x 32
  volume = join(tmp.dir, 'em.zarr');
  await writeTestVolume(volume, [D, H, W]);
}, 180_000);

afterAll(async () => {
  await server?.stop();
  tmp.cleanup();
});

describe('predict of a Zarr volume, block by block', () => {
  let single: Map<string, Buffer>;

  it('one worker: 12 blocks of 2 x 64 x 64 into an OME-Zarr uint8 array; a rerun skips them all', async () => {
    const out = join(tmp.dir, 'single.zarr');
    const t0 = Date.now();
    const r = await runCli(predictArgs(out));
    const seconds = (Date.now() - t0) / 1000;
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

    // one MLflow run per job process: the job's settings as params, progress up to the total, FINISHED
    const [run, rerun] = await runsOf(out);
    expect(r.stderr).toContain(`MLflow run ${run.info.runId} at ${server.uri} (job ${jobId(await readJob(out))})`);
    expect(run.info.status).toBe('FINISHED');
    expect(run.params).toMatchObject({
      input: volume,
      model,
      tile: '64',
      overlap: '16',
      halo: '16',
      chunks: '2,32,32',
      block_shape: '2,64,64',
      block_chunks: '1,2,2',
      shape: `${D},${H},${W}`,
      scale: '0',
      dtype: 'uint8',
      engine: 'local',
      workers: '1',
      shard: 'none',
      'blocks.total': '12',
      'blocks.already_done': '0',
    });
    expect(run.tags).toMatchObject({ 'emseg.predict.job': jobId(await readJob(out)), 'emseg.predict.output': out, 'emseg.predict.engine': 'local' });
    expect([metric(run, 'blocks_done'), metric(run, 'blocks_total'), metric(run, 'failures')]).toEqual([12, 12, 0]);
    expect(metric(run, 'blocks_per_second')).toBeGreaterThan(0);
    // on a timer (every 5 s, plus the first and the last), not per block
    const history = await client.getMetricHistory(run.info.runId, 'blocks_done');
    expect(history.length).toBeLessThanOrEqual(Math.ceil(seconds / 5) + 2);
    expect(history.map((p) => p.value)).toEqual([...history.map((p) => p.value)].sort((a, b) => a - b));
    // the rerun: a run of its own, every block already done
    expect(rerun.info.status).toBe('FINISHED');
    expect([rerun.params['blocks.already_done'], metric(rerun, 'blocks_done'), metric(rerun, 'blocks_predicted')]).toEqual(['12', 12, 0]);
    expect(rerun.tags['emseg.predict.job']).toBe(run.tags['emseg.predict.job']);
  });

  it('two worker processes write the same chunks', async () => {
    const out = join(tmp.dir, 'pool.zarr');
    const r = await runCli(predictArgs(out, '--workers', '2'));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain('12 to predict with 2 worker(s)');
    expect(chunkFiles(out)).toEqual(single);
    const [run] = await runsOf(out);
    expect([run.info.status, run.params.engine, run.params.workers, metric(run, 'blocks_done')]).toEqual(['FINISHED', 'local-pool', '2', 12]);
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
    // one run per shard, grouped by the job id, told apart by the shard index
    const runs = await runsOf(out);
    expect(runs.map((x) => x.tags['emseg.predict.shard']).sort()).toEqual(['0', '1']);
    for (const run of runs) {
      expect(run.info.status).toBe('FINISHED');
      expect(run.tags['emseg.predict.job']).toBe(jobId(await readJob(out)));
      expect(run.tags['emseg.predict.shardCount']).toBe('2');
      expect([run.params.engine, run.params.shard, run.params['blocks.total'], metric(run, 'blocks_done')]).toEqual([
        'shard',
        `${run.tags['emseg.predict.shard']}/2`,
        '6',
        6,
      ]);
    }
    expect(runs.map((x) => x.params['shard.source']).sort()).toEqual(['--shard', 'SLURM_ARRAY_TASK_ID']);
  });

  it('deploy/slurm/predict.sbatch as two array tasks writes the same chunks; the Kubernetes Job shards by its completions', async () => {
    const out = join(tmp.dir, 'slurm.zarr');
    const task = (id: number) =>
      new Promise<{ status: number | null; stderr: string }>((done, fail) => {
        const child = spawn('bash', [join(WORKSPACE, 'deploy', 'slurm', 'predict.sbatch'), volume, out, model], {
          cwd: tmp.dir,
          env: {
            ...process.env,
            MLFLOW_TRACKING_URI: server.uri,
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
    const brokenArgs = ['predict', broken, '--model', model, '--out', out, '--halo', '0', '--no-ome', '--tracking-uri', server.uri];
    const r = await runCli(brokenArgs);
    expect(r.status).toBe(1);
    // chunk z 2-3, y 0-31, x 0-31 is read by block 1-0-0 only (halo 0, a tile of 64 from x 0)
    expect(r.stdout).toMatch(/11 block\(s\) predicted, 0 already done, 1 failed/);
    expect(r.stdout).toMatch(/failed: block 1-0-0 \(index 6\): /);
    expect(existsSync(join(out, '.emseg-job', 'done', '1-0-0.json'))).toBe(false);
    // its run is FAILED, naming the block
    const [failedRun] = await runsOf(out);
    expect(failedRun.info.status).toBe('FAILED');
    expect([metric(failedRun, 'failures'), metric(failedRun, 'blocks_done'), metric(failedRun, 'blocks_total')]).toEqual([1, 11, 12]);
    expect(failedRun.tags['emseg.predict.failedBlocks']).toBe('1-0-0');
    expect(failedRun.tags['emseg.error']).toMatch(/^1 block\(s\) failed: 1-0-0/);
    writeFileSync(chunk, good);
    const again = await runCli(brokenArgs);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).toContain('1 block(s) predicted, 11 already done, 0 failed');
    expect((await runsOf(out)).map((x) => x.info.status)).toEqual(['FAILED', 'FINISHED']);
  });

  it('SIGTERM stops after the blocks in progress: exit 130, the run KILLED; a rerun resumes', async () => {
    const out = join(tmp.dir, 'stopped.zarr');
    const p = startCli(predictArgs(out));
    while (!/MLflow run \w+ at/.test(p.stderr())) await new Promise((ok) => setTimeout(ok, 50));
    p.child.kill('SIGTERM');
    const r = await p.done;
    expect(r.status, r.stderr).toBe(130);
    expect(r.stderr).toContain('SIGTERM received: stopping after the blocks in progress');
    const [run] = await runsOf(out);
    expect(run.info.status).toBe('KILLED');
    expect(run.tags['emseg.error']).toMatch(/^stopped by SIGTERM \(\d+ block\(s\) not run; a rerun resumes\)/);
    const again = await runCli(predictArgs(out));
    expect(again.status, again.stderr).toBe(0);
    expect(chunkFiles(out)).toEqual(single);
  });
});

describe('the thresholded mask (--mask-out), block by block', () => {
  it('probabilityLevel: the stored value from which a voxel is foreground', () => {
    expect([probabilityLevel(0.5, 255), probabilityLevel(0.5, 65535), probabilityLevel(0, 255), probabilityLevel(1, 255), probabilityLevel(0.3, 255)]).toEqual([
      128, 32768, 0, 255, 77,
    ]);
    // round(p * 255) >= 128 exactly when p >= 0.5
    for (const p of [0.4980392, 0.4999, 0.5, 0.5001]) expect(Math.round(p * 255) >= probabilityLevel(0.5, 255)).toBe(p >= 0.5);
  });

  it('one process, then two shards: probabilities as without a mask, a uint8 OME-Zarr mask 255 where p >= the threshold, identical across engines; reruns skip', async () => {
    const out = join(tmp.dir, 'masked.zarr');
    const maskOut = join(tmp.dir, 'masked-mask.zarr');
    expect(await predictZarr(zarrArgs(out, { maskOut, threshold: 0.5 }))).toBe(0);
    expect(chunkFiles(out)).toEqual(chunkFiles(join(tmp.dir, 'single.zarr')));
    const mask = await openZarrVolume(maskOut);
    expect([mask.path, mask.shape, mask.chunks, mask.dtype]).toEqual([join(maskOut, '0'), [D, H, W], [2, 32, 32], 'uint8']);
    const [m, q] = [await mask.read([0, 0, 0], [D, H, W]), await (await openZarrVolume(out)).read([0, 0, 0], [D, H, W])];
    const expected = Uint8Array.from(q, (v) => (v >= 128 ? 255 : 0));
    expect(Buffer.from(m as Uint8Array).equals(Buffer.from(expected))).toBe(true);
    const foreground = expected.reduce((n, v) => n + (v === 255 ? 1 : 0), 0);
    expect(foreground).toBeGreaterThan(0);
    expect(foreground).toBeLessThan(expected.length);
    expect(mask.attributes).toMatchObject({ emseg: { kind: 'foreground mask', foreground: 255, threshold: 0.5, probability: out } });
    expect((await readJob(out)).mask).toEqual({ path: maskOut, threshold: 0.5 });
    // a rerun skips every block: no chunk of either store is written again
    const written = join(maskOut, '0', 'c', '0', '0', '0');
    const before = [statSync(written).mtimeMs, statSync(join(out, '0', 'c', '0', '0', '0')).mtimeMs];
    expect(await predictZarr(zarrArgs(out, { maskOut, threshold: 0.5 }))).toBe(0);
    expect([statSync(written).mtimeMs, statSync(join(out, '0', 'c', '0', '0', '0')).mtimeMs]).toEqual(before);

    const shardsOut = join(tmp.dir, 'masked-shards.zarr');
    const shardsMask = join(tmp.dir, 'masked-shards-mask.zarr');
    for (const shard of ['0/2', '1/2']) expect(await predictZarr(zarrArgs(shardsOut, { maskOut: shardsMask, threshold: 0.5, shard }))).toBe(0);
    expect(chunkFiles(shardsOut)).toEqual(chunkFiles(out));
    // chunk for chunk (the metadata name each mask's own probability store)
    const chunksOf = (dir: string) => new Map([...chunkFiles(dir)].filter(([k]) => k.startsWith('0/c/')));
    const [a, b] = [chunksOf(maskOut), chunksOf(shardsMask)];
    expect(a.size).toBe(2 * 3 * 5);
    expect(b).toEqual(a);
    // the same output without the mask is another job
    await expect(predictZarr(zarrArgs(out))).rejects.toThrow(/holds a block job with other settings \(mask: /);
  });

  it('a mask store that overlaps the output or sits in the input is refused before writing', async () => {
    const out = join(tmp.dir, 'm-out.zarr');
    await expect(predictZarr(zarrArgs(out, { maskOut: out }))).rejects.toThrow(/--mask-out .* and --out .* overlap/);
    await expect(predictZarr(zarrArgs(out, { maskOut: join(volume, 'mask') }))).rejects.toThrow(/--mask-out .* is inside the input/);
    await expect(predictZarr(zarrArgs(out, { maskOut: join(tmp.dir, 'm.zarr'), threshold: 2 }))).rejects.toThrow(
      /--threshold must be a probability in \[0, 1\], got 2/,
    );
    expect(existsSync(out)).toBe(false);
  });
});

describe('instance labels (--instances-out), block by block', () => {
  // (the tiny model's probabilities: 44% of the voxels >= 0.55, in 13 instances, most across blocks)
  const instanceArgs = (out: string, extra: Partial<ZarrPredictArgs> = {}) => zarrArgs(out, { threshold: 0.55, connectivity: 26, minSize: 3, ...extra });
  const labelChunks = (dir: string) => new Map([...chunkFiles(dir)].filter(([k]) => k.startsWith('0/c/')));

  it('equal, id for id, to one labelling of the whole thresholded volume; two shards give the same labels, written by the last to finish; reruns skip', async () => {
    const out = join(tmp.dir, 'inst.zarr');
    const instancesOut = join(tmp.dir, 'inst-labels.zarr');
    expect(await predictZarr(instanceArgs(out, { instancesOut }))).toBe(0);
    const labels = await openZarrVolume(instancesOut, { labels: true });
    expect([labels.path, labels.shape, labels.chunks, labels.dtype]).toEqual([join(instancesOut, '0'), [D, H, W], [2, 32, 32], 'uint16']);
    const whole = await wholeVolumeInstances(out, { threshold: 0.55, connectivity: 26, minSize: 3 });
    const got = await labels.read([0, 0, 0], [D, H, W]);
    // instances that cross the faces, edges and corners of the 2 x 64 x 64 blocks
    const blocksOf = new Map<number, Set<number>>();
    got.forEach((id, i) => {
      const [z, y, x] = [Math.floor(i / (H * W)), Math.floor(i / W) % H, i % W];
      if (id > 0) blocksOf.set(id, (blocksOf.get(id) ?? new Set()).add(((z >> 1) * 2 + (y >> 6)) * 3 + (x >> 6)));
    });
    expect(whole.count).toBeGreaterThan(5);
    expect([...blocksOf.values()].filter((b) => b.size > 1).length).toBeGreaterThan(2);
    expect(Array.from(got)).toEqual(Array.from(whole.data));
    expect(labels.attributes).toMatchObject({ emseg: { kind: 'instance labels', count: whole.count, threshold: 0.55, connectivity: 26, minSize: 3 } });
    expect((await readJob(out)).instances).toEqual({ path: instancesOut, threshold: 0.55, connectivity: 26, minSize: 3 });
    const written = join(instancesOut, '0', 'c', '0', '0', '0');
    const before = statSync(written).mtimeMs;
    expect(await predictZarr(instanceArgs(out, { instancesOut }))).toBe(0);
    expect(statSync(written).mtimeMs).toBe(before);

    const shardsOut = join(tmp.dir, 'inst-shards.zarr');
    const shardsLabels = join(tmp.dir, 'inst-shards-labels.zarr');
    expect(await predictZarr(instanceArgs(shardsOut, { instancesOut: shardsLabels, shard: '1/2' }))).toBe(0);
    // shard 1 finished first: the labels wait for shard 0
    expect(existsSync(join(shardsLabels, '0'))).toBe(false);
    expect(await predictZarr(instanceArgs(shardsOut, { instancesOut: shardsLabels, shard: '0/2' }))).toBe(0);
    expect(labelChunks(shardsLabels)).toEqual(labelChunks(instancesOut));
    expect(labelChunks(instancesOut).size).toBe(2 * 3 * 5);
  });

  it('through the CLI: the summary names the instances, and bad settings are refused naming the flag before writing', async () => {
    const out = join(tmp.dir, 'inst-cli.zarr');
    const labelsOut = join(tmp.dir, 'inst-cli-labels.zarr');
    const r = await runCli([
      ...predictArgs(out, '--instances-out', labelsOut, '--threshold', '0.55', '--min-size', '3', '--connectivity', '6', '--no-tracking'),
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`\\d+ instance\\(s\\) \\(\\d+ block components merged, uint16\\) in [\\d.]+ s -> ${labelsOut}`));
    const bad = join(tmp.dir, 'inst-bad.zarr');
    await expect(predictZarr(instanceArgs(bad, { instancesOut: bad }))).rejects.toThrow(/--instances-out .* and --out .* overlap/);
    await expect(predictZarr(instanceArgs(bad, { instancesOut: join(volume, 'labels') }))).rejects.toThrow(/--instances-out .* is inside the input/);
    await expect(predictZarr(instanceArgs(bad, { instancesOut: join(tmp.dir, 'l.zarr'), connectivity: 4 }))).rejects.toThrow(
      /--connectivity 4: a 3D volume's instances take 6, 18, 26 neighbours/,
    );
    await expect(predictZarr(instanceArgs(bad, { instancesOut: join(tmp.dir, 'l.zarr'), minSize: 0 }))).rejects.toThrow(
      /--min-size must be a positive whole number/,
    );
    expect(existsSync(bad)).toBe(false);
    // the labels store of another labelling job is refused
    await expect(predictZarr(instanceArgs(join(tmp.dir, 'inst-other.zarr'), { instancesOut: labelsOut, minSize: 9 }))).rejects.toThrow(
      /holds a labelling job with other parameters/,
    );
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
