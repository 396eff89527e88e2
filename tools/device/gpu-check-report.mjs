#!/usr/bin/env node
// Assembles the ONE JSON object of gpu-check.sh from what its stages left in DIR:
//   stages.tsv (name, exit status or skipped:reason / budget, seconds), NAME.out / NAME.log,
//   vitest.json (the tests stage's JSON reporter).
// Fields of a stage that failed stay null; `error` names every failed stage with its last log line.
// Exit 0 only when every stage passed.
//
//   node tools/device/gpu-check-report.mjs DIR MODE ELAPSED_S BUDGET_S
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const [dir, mode, elapsed, budget] = process.argv.slice(2);
const read = (f) => (existsSync(join(dir, f)) ? readFileSync(join(dir, f), 'utf8') : '');
const round = (x, d = 2) => (typeof x === 'number' && Number.isFinite(x) ? Number(x.toFixed(d)) : null);

const stages = {};
for (const line of read('stages.tsv').split('\n').filter(Boolean)) {
  const [name, rc, seconds] = line.split('\t');
  const s = { ok: rc === '0', seconds: Number(seconds) };
  if (rc === 'budget') s.error = 'not run: out of time budget';
  else if (rc.startsWith('skipped:')) {
    s.skipped = rc.slice('skipped:'.length);
    delete s.ok;
  } else if (rc !== '0') {
    const tail = read(`${name}.log`).trim().split('\n').filter(Boolean).slice(-3).join(' | ');
    s.error = `${rc === '124' || rc === '137' ? 'timed out' : `exit ${rc}`}${tail ? `: ${tail.slice(-600)}` : ''}`;
  }
  stages[name] = s;
}

/** The stage's stdout as JSON (the benchmarks print one object), or null. */
function json(name) {
  if (!stages[name]?.ok) return null;
  const text = read(`${name}.out`);
  try {
    return JSON.parse(text);
  } catch {
    const at = text.indexOf('\n{');
    try {
      return at >= 0 ? JSON.parse(text.slice(at + 1)) : null;
    } catch {
      stages[name].ok = false;
      stages[name].error = 'its output is not JSON';
      return null;
    }
  }
}

const moco = json('moco');
const finetune = json('finetune');
const ours = moco?.backend ?? finetune?.backend ?? null;

let tests = null;
if (existsSync(join(dir, 'vitest.json'))) {
  try {
    const v = JSON.parse(read('vitest.json'));
    tests = {
      passed: v.numPassedTests,
      failed: v.numFailedTests,
      skipped: v.numPendingTests + (v.numTodoTests ?? 0),
      total: v.numTotalTests,
      failures: v.testResults
        .flatMap((f) => f.assertionResults.filter((a) => a.status === 'failed').map((a) => `${f.name.replace(/^.*?\/(libs|apps)\//, '$1/')}: ${a.fullName}`))
        .slice(0, 20),
    };
  } catch {}
}

const gpuLine = stages['nvidia-smi']?.ok ? read('nvidia-smi.out').trim().split('\n')[0] : null;
const train = finetune?.train?.[0] ?? null;
const inf = finetune?.inference ?? null;

const report = {
  check: 'emseg GPU device check (issue 13)',
  mode,
  ok: Object.values(stages).every((s) => s.ok !== false),
  seconds: Number(elapsed),
  budgetSeconds: Number(budget),
  gpu: gpuLine ? Object.fromEntries(['index', 'name', 'driver', 'memory'].map((k, i) => [k, gpuLine.split(',')[i]?.trim() ?? null])) : null,
  backend: ours && {
    package: ours.package,
    device: ours.device,
    gpu: ours.gpu,
    gpuName: ours.gpuName,
    cudaVersion: ours.cudaVersion,
    cudnnVersion: ours.cudnnVersion,
    tensorflowVersion: ours.tensorflowVersion,
  },
  pytorch: moco?.pytorch ?? null,
  tests,
  moco: (moco?.results ?? []).map((r) => ({
    arch: r.arch,
    size: r.size,
    batch: r.batch,
    queue: Number(/queue (\d+)/.exec(moco.benchmark)?.[1] ?? NaN),
    oursImagesPerSec: r.oursImagesPerSec,
    pytorchImagesPerSec: r.pytorchImagesPerSec,
    timeRatioOursOverPytorch: r.ratioOursOverPytorchTime,
  })),
  unetTrainStep: train && {
    arch: train.arch,
    size: train.size,
    batch: train.batch,
    oursMs: train.emsegMs,
    pytorchMs: train.torchMs,
    timeRatioOursOverPytorch: train.ratio,
    ...(train.torch ? { pytorchError: train.torch.error ?? train.torch } : {}),
  },
  inference: inf && {
    arch: inf.arch,
    width: inf.width,
    height: inf.height,
    tile: inf.tile,
    overlap: inf.overlap,
    tiles: inf.emseg?.tiles ?? null,
    oursSeconds: round(inf.emseg?.seconds),
    pytorchSeconds: round(inf.torch?.seconds),
    timeRatioOursOverPytorch: inf.timeRatio,
    oursPeakRssMB: round(inf.emseg?.peakRssMB, 0),
    pytorchPeakRssMB: round(inf.torch?.peakRssMB, 0),
    ...(inf.torch?.error ? { pytorchError: inf.torch.error } : {}),
  },
  stages,
  logs: dir,
};
const failed = Object.entries(stages).filter(([, s]) => s.ok === false);
const torchErrors = [moco?.pytorch?.error, train?.torch?.error, inf?.torch?.error].filter(Boolean);
if (torchErrors.length) report.ok = false;
if (failed.length || torchErrors.length) {
  report.error = [...failed.map(([n, s]) => `${n}: ${s.error ?? 'failed'}`), ...torchErrors.map((e) => `pytorch: ${e.slice(-400)}`)].join('; ');
}
process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
process.exit(report.ok ? 0 : 1);
