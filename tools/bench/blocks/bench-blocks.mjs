#!/usr/bin/env node
/**
 * Block-wise Zarr prediction benchmark (issue 15): a ResNet-18 U-Net (random init, the full
 * decoder) predicts a synthetic uint8 volume (Zarr v3, written once under .emseg/bench/blocks/) with
 * 1 and 2 local worker processes and with 2 BullMQ workers on a redis-server started on a free
 * port. Reports blocks/s, peak RSS per process (VmHWM, sampled from /proc every 200 ms), the Redis
 * traffic per block (INFO stats: bytes in + out and commands, over the whole queued run), and
 * whether every run wrote the same chunks (else how many voxels differ from the first engine's, by
 * how many quanta: the queue workers run TensorFlow on fewer threads, which can reorder float sums). Every job logs its MLflow run to one server started for
 * the benchmark (store .emseg/bench/blocks/mlflow/), as a user's would. Prints one JSON object and
 * writes it to .emseg/bench/blocks/<time>.json (git-ignored).
 *
 *   node tools/bench/blocks/bench-blocks.mjs [--quick] [--size 16x1024] [--chunk 8x256] [--tile 512] [--overlap 128]
 *     [--engines local1,local2,queue2] [--out FILE]
 *
 * Defaults: 16 x 1024 x 1024 in chunks of 8 x 256 x 256, tiles of 512 (overlap 128); --quick:
 * 8 x 512 x 512, chunks 4 x 128 x 128, tiles 256 (overlap 64). Needs `tsc -b` and redis-server.
 */
import { existsSync, rmSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { cli as runCli, lib, load, redisStats, root, round, startRedis, storeDigest, writeReport } from './common.mjs';

const { values: o } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    size: { type: 'string' },
    chunk: { type: 'string' },
    tile: { type: 'string' },
    overlap: { type: 'string' },
    engines: { type: 'string', default: 'local1,local2,queue2' },
    out: { type: 'string' },
  },
});
const [depth, side] = (o.size ?? (o.quick ? '8x512' : '16x1024')).split('x').map(Number);
const [chunkZ, chunkXY] = (o.chunk ?? (o.quick ? '4x128' : '8x256')).split('x').map(Number);
const tile = Number(o.tile ?? (o.quick ? 256 : 512));
const overlap = Number(o.overlap ?? (o.quick ? 64 : 128));
const work = join(root, '.emseg', 'bench', 'blocks');

async function fixtures() {
  const volume = join(work, `volume-${depth}x${side}-c${chunkZ}x${chunkXY}.zarr`);
  const model = join(work, `model-t${tile}-o${overlap}`);
  if (!existsSync(join(volume, 'zarr.json'))) {
    const { createZarrVolume } = await lib('data');
    const v = await createZarrVolume(volume, { shape: [depth, side, side], chunks: [chunkZ, chunkXY, chunkXY], dtype: 'uint8' });
    for (let z = 0; z < depth; z += chunkZ) {
      const n = Math.min(chunkZ, depth - z);
      const data = new Uint8Array(n * side * side);
      for (let i = 0; i < data.length; i++) {
        const [zz, y, x] = [z + Math.floor(i / (side * side)), Math.floor(i / side) % side, i % side];
        data[i] = Math.max(0, Math.min(255, Math.round(128 + 80 * Math.sin((x + 3 * zz) / 11) * Math.cos((y - 2 * zz) / 13) + ((x * 31 + y * 17) % 23) - 11)));
      }
      await v.write([z, 0, 0], [n, side, side], data);
    }
  }
  if (!existsSync(model)) {
    const { resnetEncoder } = await lib('models');
    const { Segmenter } = await lib('segmentation');
    const s = Segmenter.create(
      resnetEncoder({ depth: 18, seed: 1 }),
      { mean: [0.5], std: [0.2] },
      { encoderSource: 'random', encoderRunId: null },
      { seed: 2 },
    );
    const inference = { tileSize: tile, overlap, window: 'gaussian', batchSize: 1, flipTta: false };
    await s.save(model, s.info({ threshold: 0.5, inference, step: 0, valF1: null, mlflowRunId: null, task: 'iou', metric: 'iou', valScore: null }));
    s.dispose();
  }
  return { volume, model };
}

/** The CLI, logging to the benchmark's MLflow server only (never the environment's). */
const cli = (args, env = {}) => runCli(args, { env: { MLFLOW_TRACKING_URI: '', ...env } });

/** Voxels of each later output that differ from the first's, and the largest difference (in stored quanta). */
async function differences(outs) {
  const { openZarrVolume } = await lib('data');
  const read = async (dir) => {
    const v = await openZarrVolume(dir);
    return v.read(
      v.shape.map(() => 0),
      v.shape,
    );
  };
  const first = await read(outs[0]);
  const rows = [];
  for (const dir of outs.slice(1)) {
    const other = await read(dir);
    let voxels = 0;
    let max = 0;
    for (let i = 0; i < first.length; i++) {
      const d = Math.abs(first[i] - other[i]);
      if (d > 0) voxels++;
      if (d > max) max = d;
    }
    rows.push({ output: relative(root, dir), against: relative(root, outs[0]), voxels, of: first.length, maxQuanta: max });
  }
  return rows;
}

async function main() {
  const loadBefore = load();
  const { volume, model } = await fixtures();
  const blocksOf = (stdout) => Number(/(\d+) block\(s\) predicted/.exec(stdout)?.[1] ?? NaN);
  const results = [];
  const { startMlflowServer } = await lib('tracking');
  const mlflow = await startMlflowServer({ storeDir: join(work, 'mlflow') });
  try {
    for (const engine of o.engines.split(',')) await runEngine(engine);
  } finally {
    await mlflow.stop();
  }
  async function runEngine(engine) {
    const out = join(work, `out-${engine}.zarr`);
    rmSync(out, { recursive: true, force: true });
    const base = ['predict', volume, '--model', model, '--out', out, '--tracking-uri', mlflow.uri];
    let r;
    let traffic = null;
    if (engine === 'local1' || engine === 'local2') {
      r = await cli([...base, '--workers', engine === 'local1' ? '1' : '2']).done;
    } else if (engine === 'queue2') {
      const redis = await startRedis(work);
      try {
        const before = await redisStats(redis.url);
        const predict = cli([...base, '--queue', redis.url]);
        while (!/to predict by the workers/.test(predict.stderr())) await new Promise((ok) => setTimeout(ok, 100));
        const workers = [0, 1].map(
          () => cli(['worker', '--queue', redis.url, '--until-empty'], { TF_NUM_INTRAOP_THREADS: String(Math.max(1, Math.floor(cpus().length / 2))) }).done,
        );
        r = await predict.done;
        const ws = await Promise.all(workers);
        r.processes.push(...ws.flatMap((w) => w.processes));
        const after = await redisStats(redis.url);
        const n = blocksOf(r.stdout);
        traffic = { bytesPerBlock: Math.round((after.bytes - before.bytes) / n), commandsPerBlock: round((after.commands - before.commands) / n, 1) };
      } finally {
        redis.stop();
      }
    } else throw new Error(`unknown engine ${engine}; known: local1, local2, queue2`);
    if (r.status !== 0) throw new Error(`${engine} exited ${r.status}:\n${r.stderr.slice(-3000)}`);
    const blocks = blocksOf(r.stdout);
    results.push({
      engine,
      blocks,
      seconds: round(r.seconds, 1),
      blocksPerSecond: round(blocks / r.seconds, 3),
      processes: r.processes,
      redis: traffic,
      chunks: storeDigest(out),
      loadAfter: load(),
    });
    process.stderr.write(`${engine}: ${blocks} blocks in ${r.seconds.toFixed(1)} s\n`);
  }
  const report = {
    benchmark: 'blocks',
    volume: { shape: [depth, side, side], chunks: [chunkZ, chunkXY, chunkXY], dtype: 'uint8' },
    model: { architecture: 'resnet18', tile, overlap, batchSize: 1, flipTta: false },
    machine: { cpus: cpus().length, model: cpus()[0]?.model, memoryGB: round(totalmem() / 2 ** 30, 1), loadBefore },
    results,
    identical: new Set(results.map((r) => r.chunks)).size === 1,
    // engines run TensorFlow with other thread counts (1 per queue worker), which may reorder float sums: voxels off by a quantum
    differences: await differences(results.map((r) => join(work, `out-${r.engine}.zarr`))),
  };
  await writeReport(o.out ?? join(work, `${new Date().toISOString().replace(/[:.]/g, '-')}.json`), report);
}

await main();
