/**
 * Issue 15 part 3: block prediction on a BullMQ queue in a real redis-server. `predict --queue`
 * enqueues the blocks and waits; two `worker --queue` processes predict them, one SIGKILLed in
 * the middle of a block, whose block another worker picks up once its lock expires: the output
 * equals a single-process run chunk for chunk; a rerun has nothing to do; an unreachable Redis is
 * refused before anything is written; a block that fails three times is named, exit 1. The
 * `predict --queue` process logs the job's MLflow run (a real server): FINISHED with every block
 * done, FAILED with the failed block. With --no-wait and --instances-out, the worker that
 * finishes the last block merges and writes the instance labels.
 */
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as zarr from 'zarrita';
import FileSystemStore from '@zarrita/storage/fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openZarrVolume } from '@emseg/data';
import { MlflowClient, startMlflowServer, type MlflowServer, type Run } from '@emseg/tracking';
import { DEFAULT_PREDICT_EXPERIMENT } from '../src/predict-blocks.js';
import {
  buildFinetune,
  runCli as runCliBare,
  startCli as startCliBare,
  saveTinyModel,
  tempDir,
  chunkFiles,
  metric,
  wholeVolumeInstances,
  writeTestVolume,
  type CliOptions,
} from './helpers.js';
import { startRedis } from './redis-server.js';

const tmp = tempDir('predict-queue');
const [D, H, W] = [4, 256, 256];
let model: string;
let volume: string;
let redis: Awaited<ReturnType<typeof startRedis>>;
let server: MlflowServer;

/** The CLI, logging to the test MLflow server. */
const cliOptions = (): CliOptions => ({ env: { MLFLOW_TRACKING_URI: server.uri } });
const runCli = (args: string[]) => runCliBare(args, cliOptions());
const startCli = (args: string[]) => startCliBare(args, cliOptions());

/** The MLflow run of the job writing `out` (the only one). */
async function runOf(out: string): Promise<Run> {
  const client = new MlflowClient({ trackingUri: server.uri });
  const experiment = await client.getExperimentByName(DEFAULT_PREDICT_EXPERIMENT);
  const runs = await client.searchRuns({ experimentIds: [experiment!.experimentId], filter: `tags."emseg.predict.output" = '${out}'` });
  expect(runs).toHaveLength(1);
  return runs[0];
}

/** Waits until `read()` matches `pattern` (polling), or fails after `ms`. */
async function until(read: () => string, pattern: RegExp, ms = 120_000): Promise<RegExpMatchArray> {
  const t0 = Date.now();
  for (;;) {
    const m = read().match(pattern);
    if (m) return m;
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${pattern} in:\n${read()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  buildFinetune();
  redis = await startRedis(tmp.dir);
  server = await startMlflowServer({ storeDir: join(tmp.dir, 'mlflow') });
  model = await saveTinyModel(join(tmp.dir, 'model'));
  volume = join(tmp.dir, 'em.zarr');
  await writeTestVolume(volume, [D, H, W]);
}, 180_000);

afterAll(async () => {
  await redis?.stop();
  await server?.stop();
  tmp.cleanup();
});

// blocks of 2 x 128 x 128 (4 x 4 chunks): 2 x 2 x 2 = 8 blocks of ~1 s each
const blockArgs = (out: string) => ['predict', volume, '--model', model, '--out', out, '--block-chunks', '1,4,4'];
const workerArgs = () => ['worker', '--queue', redis.url, '--lock-seconds', '3', '--until-empty'];

describe('predict --queue with BullMQ workers', () => {
  it('two workers, one SIGKILLed mid-block: the block is picked up again and the output equals a single-process run; a rerun has nothing to do', async () => {
    const single = join(tmp.dir, 'single.zarr');
    const ref = await runCli(blockArgs(single));
    expect(ref.status, ref.stderr).toBe(0);
    expect(ref.stdout).toContain('8 block(s) predicted');

    const out = join(tmp.dir, 'queued.zarr');
    const predict = startCli([...blockArgs(out), '--queue', redis.url]);
    await until(predict.stderr, /8 to predict by the workers of redis:/);
    const a = startCli(workerArgs());
    const b = startCli(workerArgs());
    // kill worker a in the middle of its second block
    const [, , second] = await until(a.stderr, /block (\S+) of \S+ done[^]*block (\S+) of \S+ started/);
    await new Promise((r) => setTimeout(r, 200));
    a.child.kill('SIGKILL');
    const [ra, rb, rp] = await Promise.all([a.done, b.done, predict.done]);
    expect(ra.status).toBeNull();
    expect(ra.stderr).not.toMatch(new RegExp(`block ${second} of \\S+ done`));
    expect(rb.status, rb.stderr).toBe(0);
    expect(rb.stderr).toMatch(new RegExp(`block ${second} of \\S+ done`));
    expect(rp.status, rp.stderr).toBe(0);
    expect(rp.stdout).toContain(`8 block(s) predicted, 0 already done, 0 failed -> ${out}`);
    expect(readdirSync(join(out, '.emseg-job', 'done'))).toHaveLength(8);
    expect(chunkFiles(out)).toEqual(chunkFiles(single));
    const run = await runOf(out);
    expect(run.info.status).toBe('FINISHED');
    expect([run.params.engine, run.params.queue, metric(run, 'blocks_done'), metric(run, 'failures')]).toEqual(['queue', redis.url, 8, 0]);

    const again = await runCli([...blockArgs(out), '--queue', redis.url]);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).toContain('0 block(s) predicted, 8 already done, 0 failed');
  });

  it('--no-wait with --instances-out: predict exits once the blocks are enqueued; the worker that finishes the last block writes the instance labels', async () => {
    const out = join(tmp.dir, 'nowait.zarr');
    const labelsOut = join(tmp.dir, 'nowait-labels.zarr');
    const args = [...blockArgs(out), '--queue', redis.url, '--no-wait', '--instances-out', labelsOut, '--threshold', '0.55', '--connectivity', '26'];
    const enqueued = await runCli(args);
    expect(enqueued.status, enqueued.stderr).toBe(0);
    expect(enqueued.stdout).toContain(`8 block(s) enqueued on ${redis.url}`);
    expect(existsSync(join(labelsOut, '0'))).toBe(false);
    const w = await runCli(workerArgs());
    expect(w.status, w.stderr).toBe(0);
    const [, count] = w.stderr.match(new RegExp(`every block of ${out} is done: (\\d+) instance\\(s\\) -> ${labelsOut}`)) ?? [];
    const whole = await wholeVolumeInstances(out, { threshold: 0.55, connectivity: 26, minSize: 1 });
    expect(Number(count)).toBe(whole.count);
    expect(whole.count).toBeGreaterThan(1);
    const labels = await openZarrVolume(labelsOut, { labels: true });
    expect(Array.from(await labels.read([0, 0, 0], [D, H, W]))).toEqual(Array.from(whole.data));
    // a rerun of the same command (still --no-wait) finds everything done and says so
    const again = await runCli(args);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).toContain('0 block(s) predicted, 8 already done, 0 failed');
    expect(again.stdout).toContain(`${whole.count} instance(s)`);
  });

  it('an unreachable Redis is refused before anything is written', async () => {
    const out = join(tmp.dir, 'unreachable.zarr');
    const r = await runCli([...blockArgs(out), '--queue', 'redis://127.0.0.1:1']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('cannot reach Redis at redis://127.0.0.1:1: connect ECONNREFUSED 127.0.0.1:1');
    expect(existsSync(out)).toBe(false);
    const w = await runCli(['worker', '--queue', 'redis://127.0.0.1:1']);
    expect(w.status).toBe(1);
    expect(w.stderr).toContain('cannot reach Redis at redis://127.0.0.1:1');
  });

  it('a block that fails three times (with backoff) is named and the job ends non-zero; the other blocks are written', async () => {
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
    writeFileSync(join(broken, 'c', '0', '0', '0'), 'not gzip');
    const out = join(tmp.dir, 'failing.zarr');
    const predict = startCli(['predict', broken, '--model', model, '--out', out, '--block-chunks', '1,4,4', '--halo', '0', '--queue', redis.url]);
    await until(predict.stderr, /8 to predict by the workers/);
    const w = await runCli(workerArgs());
    const r = await predict.done;
    expect(r.status).toBe(1);
    expect(r.stdout).toContain('7 block(s) predicted, 0 already done, 1 failed');
    expect(r.stdout).toMatch(/failed: block 0-0-0 \(index 0\): failed 3 times; last: .*gzip/i);
    expect(w.stderr).toMatch(/block 0-0-0 failed \(attempt 3 of 3\)/);
    expect(readdirSync(join(out, '.emseg-job', 'done')).sort()).not.toContain('0-0-0.json');
    const run = await runOf(out);
    expect([run.info.status, metric(run, 'failures'), metric(run, 'blocks_done'), run.tags['emseg.predict.failedBlocks']]).toEqual(['FAILED', 1, 7, '0-0-0']);
  });
});
