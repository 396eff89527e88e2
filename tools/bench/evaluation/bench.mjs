#!/usr/bin/env node
// Benchmark of libs/evaluation on a U-RISC-sized pair (default 9958 x 9959), printing JSON.
//
//   npx tsc -b libs/evaluation && node tools/bench/evaluation/bench.mjs [--width W] [--height H] [--no-python]
//
// Synthetic membrane-like inputs are made here: a wavy grid of cells ~160 px across with ~4 px
// membranes (~5% of pixels, as in U-RISC), and a prediction whose membranes are shifted, thicker in
// places, with gaps (merges) and speckles. The same raw bytes are handed to the project venv's
// Python, which times the reference implementations on them:
//   urisc F1      - the competition script's NumPy operations (inversion, unique, counts, sums)
//   V_Rand+V_Info - scikit-image: skeletonize, label(connectivity=1), contingency_table,
//                   adapted_rand_error and variation_of_information from that table
//   ASSD          - SciPy: binary_erosion surfaces + distance_transform_edt (x2)
// Each TS timing is the best of --repeats runs (default 2); Python runs each once.
// Targets (issue 4): urisc F1 < 1 s, V_Rand + V_Info (one threshold) < 10 s, ASSD < 10 s.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const DIST = join(ROOT, 'libs/evaluation/dist');
if (!existsSync(join(DIST, 'index.js'))) {
  console.error('libs/evaluation is not built: run `npx tsc -b libs/evaluation` first');
  process.exit(1);
}
// the metric modules themselves (no sharp needed, so the benchmark also runs on a bare machine)
const { uriscF1 } = await import(join(DIST, 'urisc-f1.js'));
const { isbiSliceScores } = await import(join(DIST, 'isbi.js'));
const { assd } = await import(join(DIST, 'assd.js'));
const { edt } = await import(join(DIST, 'edt.js'));

function arg(name, fallback) {
  const k = process.argv.indexOf(`--${name}`);
  return k >= 0 ? Number(process.argv[k + 1]) : fallback;
}
const W = arg('width', 9958);
const H = arg('height', 9959);
const REPEATS = arg('repeats', 2);
const withPython = !process.argv.includes('--no-python');

/** Deterministic LCG in [0, 1). */
function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

/** Membrane masks (1 = membrane) of the truth and of a plausible prediction. */
function makeInputs(w, h) {
  const rand = rng(12345);
  const cell = 160;
  const rowShift = new Int32Array(h);
  const colShift = new Int32Array(w);
  const p1 = (2 * Math.PI * (0.7 + rand())) / 900;
  const p2 = (2 * Math.PI * (0.7 + rand())) / 1100;
  for (let y = 0; y < h; y++) rowShift[y] = Math.round(40 * Math.sin(p1 * y) + 15 * Math.sin(7.3 * p1 * y + 1));
  for (let x = 0; x < w; x++) colShift[x] = Math.round(40 * Math.sin(p2 * x + 2) + 15 * Math.sin(5.1 * p2 * x));
  const gt = new Uint8Array(w * h);
  const pred = new Uint8Array(w * h);
  const off = 1000 * cell;
  for (let y = 0; y < h; y++) {
    const rs = rowShift[y] + off;
    const row = y * w;
    for (let x = 0; x < w; x++) {
      const u = (x + rs) % cell;
      const v = (y + colShift[x] + off) % cell;
      gt[row + x] = u < 4 || v < 4 ? 1 : 0;
      const up = (x + rs + 2) % cell;
      const vp = (y + colShift[x] + off + 1) % cell;
      pred[row + x] = up < 5 || vp < 4 ? 1 : 0;
    }
  }
  // gaps (false merges) and speckles (false membrane) in the prediction, in 12 x 12 blocks
  const blocks = Math.round((w * h) / 20000);
  for (let k = 0; k < blocks; k++) {
    const bx = Math.floor(rand() * (w - 12));
    const by = Math.floor(rand() * (h - 12));
    const value = rand() < 0.6 ? 0 : 1;
    const size = value ? 3 : 12;
    for (let y = by; y < by + size; y++) pred.fill(value, y * w + bx, y * w + bx + size);
  }
  return { gt, pred };
}

function best(fn) {
  let bestMs = Infinity;
  let result;
  for (let r = 0; r < REPEATS; r++) {
    const t0 = performance.now();
    result = fn();
    bestMs = Math.min(bestMs, performance.now() - t0);
  }
  return { ms: Math.round(bestMs), result };
}

const LOAD_BEFORE = Number(loadavg()[0].toFixed(2));
const t0 = performance.now();
const { gt, pred } = makeInputs(W, H);
const makeMs = Math.round(performance.now() - t0);
let membrane = 0;
for (let i = 0; i < gt.length; i++) membrane += gt[i];

// U-RISC convention: membrane black (0), background white (255)
const toGrey = (m) => {
  const g = new Uint8Array(m.length);
  for (let i = 0; i < m.length; i++) g[i] = m[i] ? 0 : 255;
  return { width: W, height: H, data: g };
};
const predGrey = toGrey(pred);
const gtGrey = toGrey(gt);
const predMask = { width: W, height: H, data: pred };
const gtMask = { width: W, height: H, data: gt };
const trueCells = { width: W, height: H, data: gt.map((v) => 1 - v) };
// cell-interior probability: 0.1 on predicted membrane, 0.9 elsewhere (threshold 0.5 = the prediction)
const cellProbability = { width: W, height: H, data: Float32Array.from(pred, (v) => (v ? 0.1 : 0.9)) };

const f1 = best(() => uriscF1(predGrey, gtGrey));
const isbi = best(() => isbiSliceScores({ cellProbability, trueCells }, 0.5));
const dist = best(() => assd(predMask, gtMask, { pixelSizeNm: 2.18 }));
const edtOnly = best(() => {
  edt(gtMask);
  return null;
});

const out = {
  benchmark: 'libs/evaluation',
  // timings on a shared machine scale with its load: 1-minute load average before and after
  machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version, loadBefore: LOAD_BEFORE },
  image: { width: W, height: H, pixels: W * H, membraneFraction: Number((membrane / gt.length).toFixed(4)), makeMs },
  targetsMs: { uriscF1: 1000, vRandVInfo: 10000, assd: 10000 },
  ts: {
    uriscF1: { ms: f1.ms, f1: f1.result.f1 },
    vRandVInfo: { ms: isbi.ms, threshold: 0.5, vRand: isbi.result.rand.vRand, vInfo: isbi.result.info.vInfo },
    assd: { ms: dist.ms, assdPx: dist.result.assd, assdNm: dist.result.assdNm },
    edt: { ms: edtOnly.ms },
  },
};

if (withPython) {
  const python = join(ROOT, '.venv/bin/python');
  const dir = mkdtempSync(join(tmpdir(), 'emseg-eval-bench-'));
  try {
    writeFileSync(join(dir, 'gt.u8'), gt);
    writeFileSync(join(dir, 'pred.u8'), pred);
    const r = spawnSync(python, [join(ROOT, 'tools/bench/evaluation/reference.py'), dir, String(W), String(H)], {
      encoding: 'utf8',
      maxBuffer: 1 << 20,
    });
    if (r.status !== 0) {
      out.python = { error: (r.stderr || r.error?.message || 'failed').slice(-2000) };
    } else {
      const py = JSON.parse(r.stdout);
      out.python = py;
      const ratio = (a, b) => (a > 0 && b > 0 ? Number((a / b).toFixed(2)) : null);
      // > 1: the TypeScript implementation is that many times faster
      out.speedupVsPython = {
        uriscF1: ratio(py.uriscF1?.ms, f1.ms),
        vRandVInfo: ratio(py.vRandVInfo?.ms, isbi.ms),
        assd: ratio(py.assd?.ms, dist.ms),
        edt: ratio(py.edt?.ms, edtOnly.ms),
      };
      out.agreement = {
        uriscF1AbsDiff: Math.abs(py.uriscF1?.f1 - f1.result.f1),
        assdAbsDiff: Math.abs(py.assd?.assdPx - dist.result.assd),
      };
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
out.machine.loadAfter = Number(loadavg()[0].toFixed(2));
process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
