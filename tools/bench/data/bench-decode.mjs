#!/usr/bin/env node
/**
 * Benchmark: decode a U-RISC Track 1 sized PNG (9958 x 9959, ~100 Mpixel) and cut it into
 * 1024 x 1024 patches at stride 512; also region reads and full-image tiled stitching.
 * Prints JSON: seconds per phase and peak RSS (MB) after each phase.
 *
 *   npx tsc -b libs/data && node tools/bench/data/bench-decode.mjs [--width 9958] [--height 9959] [--image FILE]
 *
 * Without --image, a synthetic EM image of that size is generated once and cached under
 * .emseg/bench/. Measurements run in a fresh child process so its peak RSS is the decoder's alone.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    width: { type: 'string', default: '9958' },
    height: { type: 'string', default: '9959' },
    image: { type: 'string' },
    child: { type: 'boolean', default: false },
  },
});
const root = fileURLToPath(new URL('../../../', import.meta.url));
/** Peak resident memory of this process in MB (Linux VmHWM: reset by exec, unlike ru_maxrss). */
function mb() {
  try {
    const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    if (hwm) return Math.round(Number(hwm[1]) / 1024);
  } catch {
    // not Linux
  }
  return Math.round(process.resourceUsage().maxRSS / 1024);
}
const secondsSince = (t0) => Number(((performance.now() - t0) / 1000).toFixed(3));

/** CPU time stolen by the hypervisor since the start (Linux /proc/stat), to flag noisy numbers. */
const readStat = () => {
  try {
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    return { total: cpu.reduce((a, b) => a + b, 0), steal: cpu[7] ?? 0 };
  } catch {
    return null;
  }
};
const statAtStart = readStat();
const stealPercent = () => {
  const now = readStat();
  if (!now || !statAtStart) return null;
  return Number(((100 * (now.steal - statAtStart.steal)) / Math.max(1, now.total - statAtStart.total)).toFixed(1));
};

if (args.child) {
  const data = await import('@emseg/data');
  const path = args.image;
  const out = { image: path, rssAtStartMB: mb() };
  let t0 = performance.now();
  const info = await data.readImageInfo(path);
  out.info = { width: info.width, height: info.height, bitDepth: info.bitDepth, format: info.format, seconds: secondsSince(t0) };

  t0 = performance.now();
  await data.readImage(path, { region: { x: 0, y: 0, width: 1024, height: 1024 } });
  out.regionTop1024 = { seconds: secondsSince(t0), peakRssMB: mb() };
  t0 = performance.now();
  await data.readImage(path, { region: { x: info.width - 1024, y: info.height - 1024, width: 1024, height: 1024 } });
  out.regionBottom1024 = { seconds: secondsSince(t0), peakRssMB: mb() };

  t0 = performance.now();
  const image = await data.readImage(path);
  out.decode = { seconds: secondsSince(t0), megapixels: Number(((image.width * image.height) / 1e6).toFixed(1)), peakRssMB: mb() };

  t0 = performance.now();
  const grid = data.patchGrid(image.width, image.height, { size: 1024, stride: 512 });
  const raw = new Uint8Array(1024 * 1024);
  const floats = new Float32Array(1024 * 1024);
  let checksum = 0;
  for (const rect of grid) {
    data.cutRegion(image.data, image.width, image.height, rect, raw);
    for (let i = 0; i < raw.length; i++) floats[i] = raw[i] / 255;
    checksum += floats[rect.x % 1024];
  }
  out.patches = { size: 1024, stride: 512, count: grid.length, seconds: secondsSince(t0), asFloat32: true, peakRssMB: mb(), checksum };

  t0 = performance.now();
  const stitched = await data.predictTiled(image, { tileSize: 1024, overlap: 256, window: 'gaussian' }, (batch) => batch);
  let maxError = 0;
  for (let i = 0; i < stitched.length; i += 997) maxError = Math.max(maxError, Math.abs(stitched[i] - image.data[i] / 255));
  out.tiledIdentityInference = {
    tileSize: 1024,
    overlap: 256,
    tiles: data.tilePlan(image.width, image.height, { tileSize: 1024, overlap: 256 }).tiles.length,
    seconds: secondsSince(t0),
    peakRssMB: mb(),
    accumulatorMB: Math.round((stitched.length * 4) / 2 ** 20),
    maxReconstructionError: maxError,
  };
  console.log(JSON.stringify(out));
} else {
  const width = Number(args.width);
  const height = Number(args.height);
  let image = args.image && resolve(args.image);
  let generatedSeconds = null;
  if (!image) {
    const dir = join(root, '.emseg', 'bench');
    image = join(dir, `synthetic-em-${width}x${height}-seed1.png`);
    if (!existsSync(image)) {
      mkdirSync(dir, { recursive: true });
      const t0 = performance.now();
      const { Rng, renderEmScene, writeImage } = await import('@emseg/data');
      const scene = renderEmScene(new Rng(1), { width, height });
      await writeImage(image, { width, height, bitDepth: 8, data: scene.image });
      generatedSeconds = secondsSince(t0);
    }
  }
  const child = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', '--image', image], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
    maxBuffer: 1 << 20,
  });
  const result = JSON.parse(child.trim().split('\n').at(-1));
  console.log(
    JSON.stringify({ benchmark: 'data/decode-patches', node: process.version, generatedSeconds, ...result, cpuStealPercentDuringRun: stealPercent() }, null, 2),
  );
}
