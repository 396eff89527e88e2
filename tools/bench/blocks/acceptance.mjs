#!/usr/bin/env node
/**
 * Issue 15's acceptance at full size: a synthetic EM-like volume of 64 x 2048 x 2048 (uint8, Zarr
 * v3, chunks 4 x 256 x 256, gzip 1; written once under .emseg/bench/blocks/acceptance/) is predicted
 * by a tiny random-init U-Net (plain-conv-small encoder, decoder [8, 8, 8, 8, 8]; one 1056 tile per
 * block slice, halo 16) through the built CLI:
 *
 *   (a) one process (`predict`, 1 TensorFlow thread like every other process here: another thread
 *       count may reorder float sums and move a few voxels by one quantum, e.g. 3 of 262144 for a
 *       ResNet-18 U-Net at 2 threads against 1);
 *   (b) `predict --queue` on a real redis-server (127.0.0.1, free port) with two `worker --queue`
 *       processes (1 thread each), one SIGKILLed in the middle of a block: the other picks the
 *       block up once its lock (--lock-seconds) runs out;
 *   (c) `--shard 0/2` and `--shard 1/2`, two processes at once (1 thread each);
 *   (d) every run again: each must skip every block.
 *
 * Every output chunk file of (b) and (c) is compared byte for byte with (a). All runs log to one
 * MLflow server started for the run (their statuses and blocks_done are reported). Prints one JSON
 * (wall times, blocks, blocks/s, peak RSS per process, Redis commands and bytes per block, skipped
 * counts, identical, load) and writes it atomically to .emseg/bench/blocks/acceptance-<time>.json.
 *
 *   node tools/bench/blocks/acceptance.mjs [--depth 64] [--side 2048] [--chunk 4x256] [--block-chunks 1,4,4]
 *     [--tile 1056] [--overlap 0] [--halo 16] [--lock-seconds 10] [--out FILE]
 *
 * Needs `npx tsc -b`, redis-server and the project's MLflow (.venv). The volume and model are kept
 * for the next run; the outputs are removed at the start of each run.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { chunkDigests, cli as runCli, lib, load, redisStats, root, round, sleep, startRedis, until, writeReport } from './common.mjs';

const { values: o } = parseArgs({
  options: {
    depth: { type: 'string', default: '64' },
    side: { type: 'string', default: '2048' },
    chunk: { type: 'string', default: '4x256' },
    'block-chunks': { type: 'string', default: '1,4,4' },
    tile: { type: 'string', default: '1056' },
    overlap: { type: 'string', default: '0' },
    halo: { type: 'string', default: '16' },
    'lock-seconds': { type: 'string', default: '10' },
    out: { type: 'string' },
  },
});
const depth = Number(o.depth);
const side = Number(o.side);
const [chunkZ, chunkXY] = o.chunk.split('x').map(Number);
const tile = Number(o.tile);
const overlap = Number(o.overlap);
const work = join(root, '.emseg', 'bench', 'blocks', 'acceptance');
const log = (m) => process.stderr.write(`[acceptance ${new Date().toISOString().slice(11, 19)}] ${m}\n`);
const t00 = performance.now();
const startedAt = Date.now();

/** The synthetic volume (EM-like: cells with dark walls, blobs, noise) and the tiny model; kept between runs. */
async function fixtures() {
  const volume = join(work, `volume-${depth}x${side}-c${chunkZ}x${chunkXY}.zarr`);
  const model = join(work, `model-plain-conv-small-t${tile}-o${overlap}`);
  const t0 = performance.now();
  if (!existsSync(join(volume, '.complete'))) {
    rmSync(volume, { recursive: true, force: true });
    const { createZarrVolume } = await lib('data');
    const v = await createZarrVolume(volume, { shape: [depth, side, side], chunks: [chunkZ, chunkXY, chunkXY], dtype: 'uint8' });
    const wave = (n, period, phase) => Float32Array.from({ length: n }, (_, i) => Math.sin((2 * Math.PI * (i + phase)) / period));
    for (let z = 0; z < depth; z += chunkZ) {
      const n = Math.min(chunkZ, depth - z);
      const data = new Uint8Array(n * side * side);
      for (let k = 0; k < n; k++) {
        const zz = z + k;
        const [wx, wy, bx, by] = [wave(side, 97, zz * 1.3), wave(side, 89, -zz * 0.7), wave(side, 331, zz * 2.1), wave(side, 277, zz)];
        let h = (zz + 1) * 2654435761;
        for (let y = 0; y < side; y++) {
          const row = (k * side + y) * side;
          for (let x = 0; x < side; x++) {
            h = (Math.imul(h ^ (h >>> 15), 2246822519) + x) | 0;
            const wall = Math.abs(wx[x] * wy[y]) < 0.08 ? -70 : 0;
            const blob = 40 * bx[x] * by[y];
            data[row + x] = Math.max(0, Math.min(255, Math.round(150 + wall + blob + ((h >>> 24) % 41) - 20)));
          }
        }
      }
      await v.write([z, 0, 0], [n, side, side], data);
    }
    writeFileSync(join(volume, '.complete'), '');
    log(`volume ${depth} x ${side} x ${side} written in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  if (!existsSync(join(model, '.complete'))) {
    rmSync(model, { recursive: true, force: true });
    const { plainConvEncoder } = await lib('models');
    const { Segmenter } = await lib('segmentation');
    const s = Segmenter.create(
      plainConvEncoder({ architecture: 'plain-conv-small', seed: 1 }),
      { mean: [0.5], std: [0.2] },
      { encoderSource: 'random', encoderRunId: null },
      { decoderChannels: [8, 8, 8, 8, 8], seed: 2 },
    );
    const inference = { tileSize: tile, overlap, window: 'gaussian', batchSize: 1, flipTta: false };
    await s.save(model, s.info({ threshold: 0.5, inference, step: 0, valF1: null, mlflowRunId: null, task: 'iou', metric: 'iou', valScore: null }));
    s.dispose();
    writeFileSync(join(model, '.complete'), '');
  }
  return { volume, model, fixtureSeconds: round((performance.now() - t0) / 1000, 1) };
}

/** The CLI, its progress lines logged under `label`; RSS sampled every 500 ms. */
const cli = (label, args, env = {}) =>
  runCli(args, {
    env,
    sampleMs: 500,
    onStderr: (line) => /^(MLflow run|blocks:|error:)| started \(| done in /.test(line) && log(`${label}: ${line.slice(0, 200)}`),
  });

/** Fails with the run's output unless it exited 0. */
function ok(label, r) {
  if (r.status !== 0) throw new Error(`${label} exited ${r.status ?? r.signal}:\n${r.stdout.slice(-2000)}\n${r.stderr.slice(-4000)}`);
  return r;
}

/** "N block(s) predicted, M already done, F failed" of a run's summary. */
function counts(r) {
  const m = /(\d+) block\(s\) predicted, (\d+) already done, (\d+) failed/.exec(r.stdout);
  return m ? { predicted: Number(m[1]), alreadyDone: Number(m[2]), failed: Number(m[3]) } : null;
}

/** Compares every file of `dir` with the reference's: byte for byte (digests), both ways. */
function compare(reference, dir) {
  const other = chunkDigests(dir);
  const differing = [...reference].filter(([k, h]) => other.get(k) !== h).map(([k]) => k);
  const extra = [...other.keys()].filter((k) => !reference.has(k));
  return {
    files: other.size,
    chunkFiles: [...other.keys()].filter((k) => /\/c\//.test(`/${k}`)).length,
    differing: differing.slice(0, 10),
    differingCount: differing.length,
    extra,
  };
}

async function main() {
  const loadBefore = load();
  mkdirSync(work, { recursive: true });
  const { volume, model, fixtureSeconds } = await fixtures();
  const { startMlflowServer, MlflowClient } = await lib('tracking');
  const mlflow = await startMlflowServer({ storeDir: join(work, 'mlflow') });
  const redis = await startRedis(work);
  const outs = { single: join(work, 'out-single.zarr'), queue: join(work, 'out-queue.zarr'), shards: join(work, 'out-shards.zarr') };
  for (const dir of Object.values(outs)) rmSync(dir, { recursive: true, force: true });
  const base = (out) => [
    'predict',
    volume,
    '--model',
    model,
    '--out',
    out,
    '--halo',
    o.halo,
    '--block-chunks',
    o['block-chunks'],
    '--tracking-uri',
    mlflow.uri,
  ];
  const one = { TF_NUM_INTRAOP_THREADS: '1' };
  const engines = {};
  const reruns = {};
  try {
    // (a) one process
    log('(a) single process');
    const a = ok('single', await cli('single', base(outs.single), one).done);
    engines.single = { seconds: round(a.seconds, 1), ...counts(a), threads: '1', processes: a.processes, loadAfter: load() };
    engines.single.blocksPerSecond = round(engines.single.predicted / a.seconds, 3);
    const reference = chunkDigests(outs.single);
    const ra = ok('single rerun', await cli('single rerun', base(outs.single), one).done);
    reruns.single = { seconds: round(ra.seconds, 1), ...counts(ra) };

    // (b) the queue: two workers, one SIGKILLed mid-block
    log('(b) queue: predict --queue + two workers, one SIGKILLed mid-block');
    const before = await redisStats(redis.url);
    const t0 = performance.now();
    const predict = cli('queue', [...base(outs.queue), '--queue', redis.url]);
    await until(predict.stderr, /to predict by the workers/);
    const workerArgs = ['worker', '--queue', redis.url, '--lock-seconds', o['lock-seconds'], '--until-empty'];
    const wa = cli('worker A', workerArgs, one);
    const wb = cli('worker B', workerArgs, one);
    // A: once it has finished two blocks and started its third, kill it in the middle of that one
    const [, killedBlock] = await until(wa.stderr, /done in [^]*done in [^]*block (\S+) of \S+ started/);
    // half of A's last block time: the middle of this one
    const times = [...wa.stderr().matchAll(/ done in ([\d.]+) s/g)].map((m) => Number(m[1]));
    await sleep(Math.max(500, (times[times.length - 1] * 1000) / 2));
    wa.child.kill('SIGKILL');
    const killedAt = round((performance.now() - t0) / 1000, 1);
    log(`worker A SIGKILLed ${killedAt} s into the queued run, in block ${killedBlock}`);
    const [rwa, rwb, rq] = await Promise.all([wa.done, wb.done, predict.done]);
    ok('queue predict', rq);
    ok('worker B', rwb);
    const after = await redisStats(redis.url);
    const c = counts(rq);
    const redone = new RegExp(`block ${killedBlock} of \\S+ done`).test(rwb.stderr);
    engines.queue = {
      seconds: round((performance.now() - t0) / 1000, 1),
      ...c,
      blocksPerSecond: round(c.predicted / ((performance.now() - t0) / 1000), 3),
      threads: '1 per worker',
      killed: {
        worker: 'A',
        signal: rwa.signal,
        atSeconds: killedAt,
        block: killedBlock,
        blockDoneByA: new RegExp(`block ${killedBlock} of \\S+ done`).test(rwa.stderr),
        redoneByB: redone,
      },
      blocksByWorker: { A: (rwa.stderr.match(/ done in /g) ?? []).length, B: (rwb.stderr.match(/ done in /g) ?? []).length },
      redis: {
        commandsPerBlock: round((after.commands - before.commands) / c.predicted, 1),
        bytesPerBlock: Math.round((after.bytes - before.bytes) / c.predicted),
      },
      processes: [...rq.processes, ...rwa.processes, ...rwb.processes],
      loadAfter: load(),
    };
    const rr = ok('queue rerun', await cli('queue rerun', [...base(outs.queue), '--queue', redis.url]).done);
    reruns.queue = { seconds: round(rr.seconds, 1), ...counts(rr) };

    // (c) two shards at once
    log('(c) shards 0/2 and 1/2 at once');
    const t1 = performance.now();
    const [s0, s1] = await Promise.all([
      cli('shard 0/2', [...base(outs.shards), '--shard', '0/2'], one).done,
      cli('shard 1/2', [...base(outs.shards), '--shard', '1/2'], one).done,
    ]);
    ok('shard 0/2', s0);
    ok('shard 1/2', s1);
    const shardCounts = [counts(s0), counts(s1)];
    const predicted = shardCounts.reduce((n, x) => n + x.predicted, 0);
    engines.shards = {
      seconds: round((performance.now() - t1) / 1000, 1),
      predicted,
      perShard: shardCounts.map((x, i) => ({ shard: `${i}/2`, ...x, seconds: round([s0, s1][i].seconds, 1) })),
      blocksPerSecond: round(predicted / ((performance.now() - t1) / 1000), 3),
      threads: '1 per shard',
      processes: [...s0.processes, ...s1.processes],
      loadAfter: load(),
    };
    const [r0, r1] = await Promise.all([
      cli('shard 0/2 rerun', [...base(outs.shards), '--shard', '0/2'], one).done,
      cli('shard 1/2 rerun', [...base(outs.shards), '--shard', '1/2'], one).done,
    ]);
    reruns.shards = [ok('shard 0/2 rerun', r0), ok('shard 1/2 rerun', r1)].map((r, i) => ({ shard: `${i}/2`, seconds: round(r.seconds, 1), ...counts(r) }));

    // chunk for chunk
    const comparison = { queue: compare(reference, outs.queue), shards: compare(reference, outs.shards) };
    const blocks = engines.single.predicted;
    const skippedAll =
      reruns.single.predicted === 0 &&
      reruns.single.alreadyDone === blocks &&
      reruns.queue.predicted === 0 &&
      reruns.queue.alreadyDone === blocks &&
      reruns.shards.every((x) => x.predicted === 0) &&
      reruns.shards.reduce((n, x) => n + x.alreadyDone, 0) === blocks;

    // the MLflow runs of the jobs
    const client = new MlflowClient({ trackingUri: mlflow.uri });
    const experiment = await client.getExperimentByName('emseg-predict');
    const runs = (await client.searchRuns({ experimentIds: [experiment.experimentId] }))
      .filter((r) => Number(r.info.startTime) >= startedAt)
      .sort((x, y) => x.info.startTime - y.info.startTime)
      .map((r) => ({
        name: r.info.runName,
        status: r.info.status,
        engine: r.params.engine,
        shard: r.params.shard,
        job: r.tags['emseg.predict.job'],
        blocksDone: r.metrics.find((m) => m.key === 'blocks_done')?.value,
        blocksTotal: r.metrics.find((m) => m.key === 'blocks_total')?.value,
        blocksPerSecond: round(r.metrics.find((m) => m.key === 'blocks_per_second')?.value ?? 0, 3),
        failures: r.metrics.find((m) => m.key === 'failures')?.value,
      }));

    const report = {
      benchmark: 'blocks-acceptance',
      volume: {
        path: relative(root, volume),
        shape: [depth, side, side],
        chunks: [chunkZ, chunkXY, chunkXY],
        dtype: 'uint8',
        codec: 'gzip 1',
        chunkFiles: comparison.queue.chunkFiles,
      },
      model: { encoder: 'plain-conv-small', decoderChannels: [8, 8, 8, 8, 8], init: 'random', tile, overlap, halo: Number(o.halo), batchSize: 1 },
      blocks: {
        count: blocks,
        blockChunks: o['block-chunks'].split(',').map(Number),
        shape: o['block-chunks'].split(',').map((k, i) => Number(k) * [chunkZ, chunkXY, chunkXY][i]),
      },
      machine: { cpus: cpus().length, model: cpus()[0]?.model, memoryGB: round(totalmem() / 2 ** 30, 1), loadBefore, loadAfter: load() },
      fixtureSeconds,
      engines,
      reruns,
      comparison,
      identical:
        comparison.queue.differingCount === 0 &&
        comparison.queue.extra.length === 0 &&
        comparison.shards.differingCount === 0 &&
        comparison.shards.extra.length === 0,
      skippedAll,
      mlflow: { runs },
      totalSeconds: round((performance.now() - t00) / 1000, 1),
    };
    const file = o.out ?? join(root, '.emseg', 'bench', 'blocks', `acceptance-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    await writeReport(file, report);
    log(`written ${file}`);
    if (!report.identical || !report.skippedAll) process.exitCode = 1;
  } finally {
    redis.stop();
    await mlflow.stop();
  }
}

await main();
