#!/usr/bin/env node
/**
 * 3D stack prediction benchmark (issue 12 part 4): a ResNet-18 U-Net (random init) predicts a
 * synthetic EM stack (libs/data generateSyntheticMitoStack, 8-bit, cached under
 * .emseg/bench/stack/data/) in 'stack' and 'orthoplane' mode, each in a fresh child process, so
 * the peak RSS (the child's own VmHWM) is the prediction's alone. Prints one JSON object and
 * writes it to .emseg/bench/stack/<time>.json (git-ignored).
 *
 *   node tools/bench/segment/bench-stack.mjs [--quick] [--sizes 64x1024,16x512] [--modes stack,orthoplane]
 *     [--tile 512] [--overlap 128] [--batch 1] [--out FILE]
 *
 * --sizes: DEPTHxSIZE stacks (default 64x1024, --quick 16x512); every size runs every mode.
 * The tiling defaults are configs/segment/mito.json's. Needs `tsc -b` (imports the built dist/).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..', '..');
const dist = (p) => join(root, p);

const { values: o } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    sizes: { type: 'string' },
    modes: { type: 'string', default: 'stack,orthoplane' },
    tile: { type: 'string', default: '512' },
    overlap: { type: 'string', default: '128' },
    batch: { type: 'string', default: '1' },
    out: { type: 'string' },
    // internal: the child processes
    child: { type: 'string' },
    input: { type: 'string' },
    work: { type: 'string' },
    depth: { type: 'string' },
    size: { type: 'string' },
  },
});

const round = (v, d = 2) => (v === null || v === undefined ? null : Number(v.toFixed(d)));
const load = () => loadavg().map((v) => round(v));

/** Peak (VmHWM) and current (VmRSS) resident set size of this process, MB. */
function rssMB() {
  const status = readFileSync('/proc/self/status', 'utf8');
  const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]) / 1024;
  return { peak: kb('VmHWM'), current: kb('VmRSS') };
}

/** Child: writes the synthetic stack into --work (atomically by the generator). */
async function generateChild() {
  const { generateSyntheticMitoStack } = await import(dist('libs/data/dist/index.js'));
  const ds = await generateSyntheticMitoStack({ dir: o.work, seed: 12, size: Number(o.size), depth: Number(o.depth) });
  process.stdout.write(`${JSON.stringify({ image: ds.stacks[0].image })}\n`);
}

/** Child: one predictStack run; prints its summary and this process's peak RSS. */
async function predictChild() {
  const { tf, backendInfo } = await import(dist('libs/tf/dist/index.js'));
  const { resnetEncoder } = await import(dist('libs/models/dist/index.js'));
  const { Segmenter, predictStack } = await import(dist('libs/segmentation/dist/index.js'));
  const rssAtStart = rssMB();
  const seg = Segmenter.create(
    resnetEncoder({ depth: 18, seed: 3 }),
    { mean: [0.5], std: [0.2] },
    { encoderSource: 'random', encoderRunId: null },
    { seed: 4 },
  );
  const inference = { tileSize: Number(o.tile), overlap: Number(o.overlap), window: 'gaussian', batchSize: Number(o.batch), flipTta: false };
  const tensorsBefore = tf.memory().numTensors;
  const passes = {};
  // a pass runs from the end of the previous one (the xz pass includes writing the transposed input)
  let passStart = performance.now();
  const r = await predictStack(seg, o.input, {
    mode: o.child,
    inference,
    threshold: 0.5,
    maskOut: join(o.work, 'mask.tif'),
    probabilityOut: join(o.work, 'probability.tif'),
    onSlice: (axis, done, total) => {
      if (done < total) return;
      passes[axis] = { planes: total, seconds: round((performance.now() - passStart) / 1000, 1) };
      passStart = performance.now();
    },
  });
  const tensorsLeaked = tf.memory().numTensors - tensorsBefore;
  seg.dispose();
  process.stdout.write(
    `${JSON.stringify({
      backend: backendInfo(),
      seconds: round(r.seconds, 1),
      slicesPerSecond: round(r.slicesPerSecond, 3),
      planes: r.planes,
      passes,
      foregroundFraction: round(r.foregroundFraction, 4),
      peakRssMB: round(rssMB().peak, 0),
      rssAtStartMB: round(rssAtStart.current, 0),
      tensorsLeaked,
    })}\n`,
  );
}

/** Runs this script as a child; resolves with its last JSON line, its wall time and the load before/after. */
function child(args) {
  return new Promise((resolvePromise, reject) => {
    const before = load();
    const t0 = performance.now();
    const p = spawn(process.execPath, [fileURLToPath(import.meta.url), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('close', (status) => {
      if (status !== 0) return reject(new Error(`child ${args.join(' ')} exited with ${status}: ${stderr.slice(-2000)}`));
      resolvePromise({
        ...JSON.parse(stdout.trim().split('\n').pop()),
        wallSeconds: round((performance.now() - t0) / 1000, 1),
        loadAverage: { before, after: load() },
      });
    });
  });
}

async function stackFile(depth, size) {
  const dir = join(root, '.emseg', 'bench', 'stack', 'data', `mito-${depth}x${size}x${size}-seed12`);
  const image = join(dir, 'images', 'stack.tif');
  if (existsSync(image)) return image;
  mkdirSync(dirname(dir), { recursive: true });
  process.stderr.write(`generating ${depth} x ${size} x ${size} stack in ${dir}\n`);
  return (await child(['--child', 'generate', '--work', dir, '--depth', String(depth), '--size', String(size)])).image;
}

function gitInfo() {
  const rev = spawnSync('git', ['-C', root, 'rev-parse', 'HEAD'], { encoding: 'utf8' });
  const status = spawnSync('git', ['-C', root, 'status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' });
  return { commit: rev.status === 0 ? rev.stdout.trim() : null, dirty: status.status === 0 ? status.stdout.trim().length > 0 : null };
}

async function main() {
  if (o.child === 'generate') return generateChild();
  if (o.child) return predictChild();
  for (const f of ['libs/segmentation/dist/index.js', 'libs/data/dist/index.js'])
    if (!existsSync(dist(f))) throw new Error(`${f} is missing: build first (npx tsc -b)`);
  const sizes = (o.sizes ?? (o.quick ? '16x512' : '64x1024')).split(',').map((s) => s.split('x').map(Number));
  const modes = o.modes.split(',');
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const outFile = resolve(o.out ?? join(root, '.emseg', 'bench', 'stack', `${stamp}${o.quick ? '-quick' : ''}.json`));
  const result = {
    benchmark: 'stack',
    issue: '12 part 4',
    quick: o.quick,
    git: gitInfo(),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryGB: Math.round(totalmem() / 2 ** 30) },
    node: process.version,
    model: 'ResNet-18 U-Net, random init, default decoder',
    inference: { tileSize: Number(o.tile), overlap: Number(o.overlap), window: 'gaussian', batchSize: Number(o.batch), flipTta: false },
    loadAverage: { start: load(), end: null },
    startedAt: new Date().toISOString(),
    runs: [],
    out: outFile,
  };
  for (const [depth, size] of sizes) {
    const input = await stackFile(depth, size);
    for (const mode of modes) {
      const work = mkdtempSync(join(tmpdir(), 'emseg-bench-stack-'));
      process.stderr.write(`${mode} ${depth} x ${size} x ${size} (load ${load().join(' ')})\n`);
      try {
        const r = await child(['--child', mode, '--input', input, '--work', work, '--tile', o.tile, '--overlap', o.overlap, '--batch', o.batch]);
        result.runs.push({ mode, depth, width: size, height: size, ...r });
        process.stderr.write(`  ${r.seconds} s, ${r.slicesPerSecond} slices/s, peak RSS ${r.peakRssMB} MB\n`);
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    }
  }
  result.loadAverage.end = load();
  const text = `${JSON.stringify(result, null, 2)}\n`;
  mkdirSync(dirname(outFile), { recursive: true });
  writeFileSync(`${outFile}.tmp-${process.pid}`, text);
  renameSync(`${outFile}.tmp-${process.pid}`, outFile);
  process.stdout.write(text);
}

main().catch((err) => {
  process.stderr.write(`error: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
