#!/usr/bin/env node
/**
 * Training-quality benchmark (issue 18 part 1): the same U-Net trained by emseg and by a PyTorch
 * twin at equal budget, N seeds each, both scored by emseg's scorer; prints one JSON object.
 *
 *   node tools/bench/quality/bench-quality.mjs [--seeds 3] [--quick] [--tasks membranes,mitochondria]
 *     [--out FILE] [--work DIR] [--keep] [--sides emseg,torch] [--set K=V ...] [--nice 10]
 *     [--threads 2] [--torch-python .venv/bin/python] [--tracking-uri URI]
 *
 * emseg trains with its real CLI (`finetune urisc --encoder random`, configs/finetune/quick.json
 * plus the task's and the budget's --set), predicts the test images with `finetune predict` from
 * its best validated model; the twin (torch_quality.py) trains from the SAME resolved config and
 * predicts with its best validated model. Both submission folders go through emseg's scorer
 * (libs/evaluation's CLI, `emseg-eval`). See README.md beside this file for the recipe and the JSON.
 *
 * Needs `tsc -b` (runs apps/finetune/dist and libs/evaluation/dist) and the project's .venv with
 * torch (`npm run setup`).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual, parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..', '..');
const FINETUNE = join(root, 'apps', 'finetune', 'dist', 'main.js');
const EVAL = join(root, 'libs', 'evaluation', 'dist', 'cli.js');
const BASE_CONFIG = join(root, 'configs', 'finetune', 'quick.json');
const MITO_CONFIG = join(root, 'configs', 'segment', 'mito.json');

const QUICK = { steps: 40, every: 20 };

const HELP = `usage: node tools/bench/quality/bench-quality.mjs [options]   (npm run bench:quality -- [options])

Trains the quick fine-tuning recipe (configs/finetune/quick.json, random-init ResNet-18 U-Net) with
emseg's CLI and with a PyTorch twin (tools/bench/quality/torch_quality.py) on each task, N seeds per
side, runs the sides one after the other, scores both sides' test predictions with emseg's scorer
and prints one JSON object (also written atomically to --out).

  --seeds N            seeds per side (default 3; seed s sets train.seed = model.seed = s)
  --quick              smoke check: 1 seed, ${QUICK.steps} steps, validation every ${QUICK.every} steps
  --tasks LIST         comma-separated, from: membranes, mitochondria (default: all)
  --sides LIST         emseg,torch (default both; one side gives no ratio)
  --set K=V            extra config override for both sides (repeatable), e.g. --set train.steps=300
  --out FILE           result JSON (default .emseg/bench/quality/quality-<time>.json, git-ignored)
  --work DIR           run folders, predictions and the generated data (default: a new folder
                       under ${tmpdir()}, removed at the end unless --keep)
  --keep               keep run folders, checkpoints and predictions
  --nice N             run the training children under nice -n N (default 10; 0 = off)
  --threads N          torch.set_num_threads of the twin (default 2)
  --torch-python PATH  python with torch (default .venv/bin/python)
  --experiment NAME    MLflow experiment of the emseg runs (default emseg-bench-quality)
  --tracking-uri URI   MLflow server of the emseg runs (default: MLFLOW_TRACKING_URI, else the project store)
  -h, --help           this text

Budget: the default run (2 tasks x 3 seeds x 2 sides, 150 steps each) takes about 35 minutes on
2 CPU cores; --quick a few minutes. Progress goes to stderr.
Exit codes: 0 done, 1 a run failed (the JSON says which), 2 usage error.
`;

let o;
try {
  ({ values: o } = parseArgs({
    options: {
      seeds: { type: 'string', default: '3' },
      quick: { type: 'boolean', default: false },
      tasks: { type: 'string', default: '' },
      sides: { type: 'string', default: 'emseg,torch' },
      set: { type: 'string', multiple: true, default: [] },
      out: { type: 'string' },
      work: { type: 'string' },
      keep: { type: 'boolean', default: false },
      nice: { type: 'string', default: '10' },
      threads: { type: 'string', default: '2' },
      'torch-python': { type: 'string', default: '' },
      experiment: { type: 'string', default: 'emseg-bench-quality' },
      'tracking-uri': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }));
} catch (err) {
  process.stderr.write(`error: ${err.message}\n\n${HELP}`);
  process.exit(2);
}
if (o.help) {
  process.stdout.write(HELP);
  process.exit(0);
}

const progress = (msg) => process.stderr.write(`[bench:quality ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
const python = o['torch-python'] || join(root, '.venv', 'bin', 'python');
const niceness = Number(o.nice);
const seeds = o.quick ? 1 : Number(o.seeds);
const sides = o.sides.split(',').filter(Boolean);
if (!Number.isInteger(seeds) || seeds < 1) usage(`--seeds must be a positive integer, got ${o.seeds}`);
if (!Number.isInteger(niceness) || niceness < 0 || niceness > 19) usage(`--nice must be an integer in 0..19, got ${o.nice}`);
for (const s of sides) if (s !== 'emseg' && s !== 'torch') usage(`--sides: unknown side ${s} (emseg, torch)`);
for (const s of o.set) if (!/^[\w.]+=/.test(s)) usage(`--set expects KEY=VALUE, got ${s}`);

function usage(message) {
  process.stderr.write(`error: ${message}\n\n${HELP}`);
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// Budget and recipe
// ---------------------------------------------------------------------------------------------

/** The budget both sides train with: the quick preset's, or the --quick smoke budget. */
const BUDGET_SETS = o.quick ? [`train.steps=${QUICK.steps}`, `validation.every=${QUICK.every}`, `train.checkpointEvery=${QUICK.every}`] : [];
/** Overlays cost time and change nothing in training; the twin writes none. */
const COMMON_SETS = ['validation.overlays=0'];

const RECIPE_NOTES = [
  'Batches are identical: torch_quality.py ports libs/data (sfc32 seeds, random patch planning with foreground oversampling, URISC augmentation) and batchParity compares its batches with the ones emseg draws at a few steps.',
  'Initialisation follows the same distributions (encoder convs He normal fan-out truncated at 2 sd as tfjs varianceScaling, decoder He uniform fan-in, head Glorot uniform with zero bias, BN 1/0) but not the same numbers: tfjs seeded initialisers and torch.manual_seed(seed) give different weights, so seed s of emseg and seed s of torch are different networks trained on the same batches.',
  'Numerics differ: TensorFlow (oneDNN) and PyTorch CPU kernels, float32 summation orders, emseg fused batch norm vs torch BatchNorm2d (both momentum 0.1, eps 1e-5, unbiased running variance).',
  'Threads: emseg runs on TensorFlow thread pools over both cores; the twin is pinned with torch.set_num_threads(--threads).',
  'Validation overlays are switched off on the emseg side (validation.overlays=0); they do not touch training or model selection.',
  "The twin needs a val split (both tasks have one); emseg's random hold-out split is not ported.",
  "Selection metric is emseg's task metric on both sides: membranes run `finetune urisc` (the official U-RISC F1), mitochondria run `finetune segment` with configs/segment/mito.json (mean per-image foreground IoU, no format rule); each at the threshold chosen from inference.threshold and validation.thresholds (best mean score; ties: threshold-sweep F1), and the test images are predicted at that threshold (`predict --format urisc` on emseg's side, so both sides write the same file convention).",
];

// ---------------------------------------------------------------------------------------------
// Tasks: one entry each. A task prepares its data and says how it is scored; the sides are run by
// runEmseg / runTorch unless the task supplies its own `emseg(ctx, seed)` / `torch(ctx, seed)`
// (the pretrain task of issue 18 will: pretrain first, then fine-tune from the encoder).
// ---------------------------------------------------------------------------------------------

/**
 * @typedef {object} TaskData
 * @property {string} root  U-RISC-layout root for `finetune urisc|segment --data`
 * @property {string} track
 * @property {string} testImages  folder predicted by both sides
 * @property {string} scoreLabels  test labels in the scorer's convention (foreground black 0 on white 255)
 * @property {string[]} sets  config overrides of this task (both sides)
 * @property {object} [info]  anything worth reporting about the data
 */
/**
 * @typedef {object} Task
 * @property {string} name
 * @property {'urisc' | 'segment'} command  the finetune command emseg's side runs
 * @property {string} config  its base config (the twin trains from the same one, resolved)
 * @property {string} description
 * @property {string} primary  key of the metric the summary and `ratio` use
 * @property {(ctx: object) => Promise<TaskData>} prepare
 * @property {(predDir: string, data: TaskData) => Promise<object>} score  metric name -> value (+ precision/recall)
 * @property {string[]} [notes]  recipe notes of this task
 */

/** @type {Task[]} */
const TASKS = [
  {
    name: 'membranes',
    command: 'urisc',
    config: BASE_CONFIG,
    description: "the embedded synthetic U-RISC data of the quickstart (8 train, 2 val, 2 test images of 1024 x 1024; membrane black), emseg's default data",
    primary: 'uriscF1',
    async prepare() {
      const { ensureDefaultData } = await import(join(root, 'libs', 'data', 'dist', 'index.js'));
      const d = await ensureDefaultData();
      return {
        root: d.urisc.root,
        track: d.urisc.track,
        testImages: d.urisc.splits.test.images,
        scoreLabels: d.urisc.splits.test.labels,
        sets: [],
        info: { root: d.urisc.root, version: d.version, counts: d.spec.urisc.count, size: d.spec.urisc.size },
      };
    },
    async score(predDir, data) {
      const official = await emsegScore(predDir, data.scoreLabels, 'urisc');
      const pixel = await emsegScore(predDir, data.scoreLabels, 'pixel');
      return {
        uriscF1: official.f1,
        precision: official.precision,
        recall: official.recall,
        rejected: official.rejected,
        pixelF1: pixel.f1,
        pixelIoU: pixel.iou,
      };
    },
  },
  {
    name: 'mitochondria',
    command: 'segment',
    config: MITO_CONFIG,
    description:
      'synthetic mitochondria-like task: bright elliptical blobs (~8% foreground) with dark cristae on an EM-like textured background with dark rings, vesicles and unlabelled bright granules; 6 train, 2 val, 2 test images of 512 x 512, generated by torch_quality.py mito-data (numpy seed 7), labels white-foreground',
    primary: 'iou',
    notes: [
      "mitochondria IoU, precision and recall come from emseg's scorer (emseg-eval --protocol pixel, the mean over test images of the per-image foreground IoU, not a pooled IoU), against the test labels inverted into the scorer's convention (label-black/).",
    ],
    async prepare(ctx) {
      const dir = join(ctx.work, 'mitochondria-data');
      if (!existsSync(join(dir, 'done.json'))) {
        rmSync(dir, { recursive: true, force: true });
        const res = await run(python, [join(here, 'torch_quality.py'), 'mito-data', '--out', dir, '--seed', '7', '--size', '512'], { label: 'mito-data' });
        if (res.code !== 0) throw new Error(`mito-data failed (${res.code}): ${res.stderr.slice(-1500)}`);
        writeFileSync(join(dir, 'done.json'), JSON.stringify(lastJsonLine(res.stdout, 'mito-data')));
      }
      const info = JSON.parse(readFileSync(join(dir, 'done.json'), 'utf8'));
      const fractions = Object.values(info.foregroundFraction);
      return {
        root: dir,
        track: 'Track1',
        testImages: join(dir, 'imgs', 'Track1', 'test'),
        scoreLabels: join(dir, 'label-black', 'test'),
        sets: ['data.polarity=white-foreground'],
        info: { ...info, root: undefined, meanForegroundFraction: fractions.reduce((a, b) => a + b, 0) / fractions.length },
      };
    },
    async score(predDir, data) {
      const pixel = await emsegScore(predDir, data.scoreLabels, 'pixel');
      return { iou: pixel.iou, f1: pixel.f1, precision: pixel.precision, recall: pixel.recall };
    },
  },
];

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/** Runs a command (under nice when asked); resolves with its code and captured output. Progress lines go through to stderr. */
function run(cmd, args, { label, niced = false, echo = () => false, env } = {}) {
  const [file, argv] = niced && niceness > 0 ? ['nice', ['-n', String(niceness), cmd, ...args]] : [cmd, args];
  return new Promise((resolvePromise, reject) => {
    const child = spawn(file, argv, { cwd: root, env: env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let pending = '';
    const onLine = (line) => {
      if (echo(line)) progress(`${label}: ${line.trim()}`);
    };
    child.stdout.on('data', (b) => (stdout += b));
    child.stderr.on('data', (b) => {
      const s = b.toString();
      stderr += s;
      pending += s;
      const lines = pending.split(/\r|\n/);
      pending = lines.pop() ?? '';
      for (const line of lines) onLine(line);
    });
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code, stdout, stderr }));
  });
}

function lastJsonLine(text, what) {
  const line = text.trim().split('\n').filter(Boolean).pop();
  try {
    return JSON.parse(line);
  } catch {
    throw new Error(`${what}: no JSON on stdout (got: ${String(line).slice(0, 300)})`);
  }
}

/** emseg's scorer (libs/evaluation CLI) on a submission folder: the summary. */
async function emsegScore(predDir, labels, protocol) {
  const json = join(predDir, '..', `score-${protocol}.json`);
  const res = await run(process.execPath, [EVAL, '--pred', predDir, '--gt', labels, '--protocol', protocol, '--json', json, '--quiet'], { label: 'score' });
  if (res.code !== 0) throw new Error(`emseg-eval --protocol ${protocol} exited ${res.code}: ${res.stderr.slice(-1500)}`);
  const out = JSON.parse(readFileSync(json, 'utf8'));
  return { ...out.summary, perImage: out.images.map((r) => ({ name: r.name, f1: r.f1, iou: r.iou })) };
}

// ---------------------------------------------------------------------------------------------
// Config: resolved exactly as the finetune CLI resolves it (libs/config: file + extends + --set)
// ---------------------------------------------------------------------------------------------

let loadConfig;
async function resolvedConfig(task, sets) {
  loadConfig ??= (await import(join(root, 'libs', 'config', 'dist', 'index.js'))).loadConfig;
  // The schema check is the CLI's job; here only the merge (extends, overrides), as loadConfig does it.
  return loadConfig({ type: 'object' }, { file: task.config, overrides: sets });
}

const seedSets = (seed) => [`train.seed=${seed}`, `model.seed=${seed}`];
const allSets = (task, data, seed) => [...data.sets, ...COMMON_SETS, ...BUDGET_SETS, ...o.set, ...seedSets(seed)];

// ---------------------------------------------------------------------------------------------
// The two sides
// ---------------------------------------------------------------------------------------------

/** emseg's validation line: the task's metric (F1 for urisc, IoU for segment), then pixel F1 for segment. */
const VAL_LINE =
  /step (\d+): validation (?:F1|IoU) ([\d.]+) \((?:F1 [\d.]+, )?P ([\d.]+), R ([\d.]+); best-threshold F1 ([\d.]+) at ([\d.]+)\)(.*best so far)?/;

async function runEmseg(ctx, task, data, seed) {
  const dir = join(ctx.work, task.name, 'emseg', `seed-${seed}`);
  const runDir = join(dir, 'run');
  const predDir = join(dir, 'pred');
  mkdirSync(dir, { recursive: true });
  const sets = allSets(task, data, seed);
  const args = [
    FINETUNE,
    task.command,
    '--config',
    task.config,
    '--data',
    data.root,
    '--encoder',
    'random',
    '--out',
    runDir,
    '--overwrite',
    '--latest',
    join(ctx.work, 'latest.json'),
    '--no-test',
    '--experiment',
    o.experiment,
    '--run-name',
    `quality-${task.name}-seed${seed}${o.quick ? '-quick' : ''}`,
    ...(o['tracking-uri'] ? ['--tracking-uri', o['tracking-uri']] : []),
    ...sets.flatMap((s) => ['--set', s]),
  ];
  const load0 = loadavg();
  const t0 = performance.now();
  const res = await run(process.execPath, args, { label: `emseg ${task.name} seed ${seed}`, niced: true, echo: (l) => VAL_LINE.test(l) });
  const trainSeconds = (performance.now() - t0) / 1000;
  if (res.code !== 0) throw new Error(`finetune urisc exited ${res.code}: ${(res.stderr + res.stdout).slice(-2000)}`);
  const history = (res.stderr + res.stdout)
    .split(/\r|\n/)
    .map((l) => VAL_LINE.exec(l))
    .filter(Boolean)
    .map((m) => ({ step: +m[1], f1: +m[2], precision: +m[3], recall: +m[4], bestF1: +m[5], bestThreshold: +m[6], best: Boolean(m[7]) }));
  const bestRoot = join(runDir, 'best');
  const bestDir = join(bestRoot, readdirSync(bestRoot).sort().pop());
  const bestState = JSON.parse(readFileSync(join(bestDir, 'manifest.json'), 'utf8')).state;
  const lastEval = JSON.parse(readFileSync(join(runDir, 'scores', 'validation.json'), 'utf8'));
  const usedConfig = JSON.parse(readFileSync(join(runDir, 'config.json'), 'utf8'));
  const lastStep = history.length ? history[history.length - 1].step : null;
  const t1 = performance.now();
  const pred = await run(
    process.execPath,
    [FINETUNE, 'predict', data.testImages, '--model', bestDir, '--out', predDir, '--probability', 'none', '--format', 'urisc'],
    {
      label: `emseg predict ${task.name} seed ${seed}`,
      niced: true,
    },
  );
  if (pred.code !== 0) throw new Error(`finetune predict exited ${pred.code}: ${(pred.stderr + pred.stdout).slice(-2000)}`);
  const predictSeconds = (performance.now() - t1) / 1000;
  const scores = await task.score(predDir, data);
  if (!o.keep) {
    for (const sub of ['checkpoints', 'best', 'final', 'downloads']) rmSync(join(runDir, sub), { recursive: true, force: true });
  }
  return {
    seed,
    test: scores,
    validation: {
      // `f1` is the task's selection score (official F1 for urisc, IoU for segment), best and last both at their
      // chosen threshold; f1AtConfigured: the score at inference.threshold
      best: { step: bestState.step, f1: bestState.valScore ?? bestState.valF1 },
      last: {
        step: lastStep,
        f1: lastEval.chosen.score ?? lastEval.chosen.f1,
        threshold: lastEval.chosen.threshold,
        f1AtConfigured: lastEval.score ?? lastEval.f1,
        bestF1: lastEval.bestF1,
      },
      lastMinusBest: (lastEval.chosen.score ?? lastEval.chosen.f1) - (bestState.valScore ?? bestState.valF1),
      history,
    },
    config: usedConfig,
    seconds: {
      train: round(trainSeconds, 1),
      predict: round(predictSeconds, 1),
      note: `train = the whole finetune ${task.command} process (MLflow, data, validation included)`,
    },
    loadavg: { start: load0.map((v) => round(v, 2)), end: loadavg().map((v) => round(v, 2)) },
  };
}

async function runTorch(ctx, task, data, seed) {
  const dir = join(ctx.work, task.name, 'torch', `seed-${seed}`);
  const predDir = join(dir, 'pred');
  mkdirSync(dir, { recursive: true });
  const cfg = await resolvedConfig(task, allSets(task, data, seed));
  const cfgFile = join(dir, 'config.json');
  writeFileSync(cfgFile, `${JSON.stringify(cfg, null, 2)}\n`);
  const load0 = loadavg();
  const t0 = performance.now();
  const res = await run(
    python,
    [join(here, 'torch_quality.py'), 'train', '--config', cfgFile, '--data', data.root, '--seed', String(seed), '--pred-out', predDir, '--threads', o.threads],
    { label: `torch ${task.name} seed ${seed}`, niced: true, echo: (l) => /validation (F1|IoU)/.test(l) },
  );
  const seconds = (performance.now() - t0) / 1000;
  if (res.code !== 0) throw new Error(`torch_quality.py train exited ${res.code}: ${res.stderr.slice(-2000)}`);
  const out = lastJsonLine(res.stdout, 'torch_quality.py train');
  const scores = await task.score(predDir, data);
  if (!o.keep) rmSync(predDir, { recursive: true, force: true });
  return {
    seed,
    test: scores,
    validation: {
      best: { ...out.best, f1: out.best.score },
      last: { step: out.last.step, f1: out.last.chosen.score, threshold: out.last.chosen.threshold, f1AtConfigured: out.last.score, bestF1: out.last.bestF1 },
      lastMinusBest: out.last.chosen.score - out.best.score,
      history: out.validation,
    },
    config: cfg,
    torch: { version: out.version, threads: out.threads, msPerStep: out.msPerStep, lastLoss: out.lastLoss },
    seconds: {
      train: round(seconds - out.predictSeconds, 1),
      predict: out.predictSeconds,
      note: 'train = the whole torch_quality.py process less its test prediction',
    },
    loadavg: { start: load0.map((v) => round(v, 2)), end: loadavg().map((v) => round(v, 2)) },
  };
}

/** Checks that the twin's ported data pipeline draws emseg's batches (a few steps of seed 0). */
async function batchParity(ctx, task, data) {
  const dir = join(ctx.work, task.name, 'parity');
  const cfg = await resolvedConfig(task, allSets(task, data, 0));
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
  const per = Math.floor(cfg.patches.perEpoch / cfg.train.batchSize);
  const steps = [0, 1, per - 1, per, cfg.train.steps - 1].filter((s) => s >= 0 && s < cfg.train.steps).join(',');
  const dump = await run(
    process.execPath,
    [join(here, 'emseg-batches.mjs'), '--config', join(dir, 'config.json'), '--data', data.root, '--out', dir, '--steps', steps],
    {
      label: 'parity',
    },
  );
  if (dump.code !== 0) return { error: `emseg-batches.mjs exited ${dump.code}: ${dump.stderr.slice(-800)}` };
  const cmp = await run(python, [join(here, 'torch_quality.py'), 'parity', '--config', join(dir, 'config.json'), '--data', data.root, '--dump', dir], {
    label: 'parity',
  });
  rmSync(dir, { recursive: true, force: true });
  if (cmp.code !== 0) return { error: `torch_quality.py parity exited ${cmp.code}: ${cmp.stderr.slice(-800)}` };
  return lastJsonLine(cmp.stdout, 'parity');
}

// ---------------------------------------------------------------------------------------------
// Summary
// ---------------------------------------------------------------------------------------------

const round = (v, d = 4) => (v === null || v === undefined || !Number.isFinite(v) ? v : Math.round(v * 10 ** d) / 10 ** d);

function stats(values) {
  const n = values.length;
  if (n === 0) return { n: 0, mean: null, sd: null, min: null, max: null };
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const sd = n > 1 ? Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : null;
  return { n, mean, sd, min: Math.min(...values), max: Math.max(...values) };
}

function summarise(task, runs, wallSeconds, load) {
  const ok = runs.filter((r) => !r.error);
  const metric = (k) => ok.map((r) => r.test[k]).filter((v) => typeof v === 'number');
  const s = stats(metric(task.primary));
  const meanOf = (k) => stats(metric(k)).mean;
  const extra = Object.keys(ok[0]?.test ?? {}).filter((k) => typeof ok[0].test[k] === 'number' && k !== task.primary);
  return {
    metric: task.primary,
    ...s,
    meanPrecision: meanOf('precision'),
    meanRecall: meanOf('recall'),
    means: Object.fromEntries(extra.map((k) => [k, meanOf(k)])),
    perSeed: runs.map((r) =>
      r.error
        ? { seed: r.seed, error: r.error }
        : {
            seed: r.seed,
            [task.primary]: r.test[task.primary],
            ...r.test,
            validation: {
              bestStep: r.validation.best.step,
              bestF1: r.validation.best.f1,
              lastStep: r.validation.last.step,
              lastF1: r.validation.last.f1,
              lastMinusBest: r.validation.lastMinusBest,
              history: r.validation.history,
            },
            seconds: r.seconds,
            loadavg: r.loadavg,
            ...(r.torch ? { torch: r.torch } : {}),
          },
    ),
    validationLastMinusBest: stats(ok.map((r) => r.validation.lastMinusBest)),
    wallSeconds: round(wallSeconds, 1),
    loadavg: load,
  };
}

function gitInfo() {
  const rev = spawnSync('git', ['-C', root, 'rev-parse', 'HEAD'], { encoding: 'utf8' });
  const status = spawnSync('git', ['-C', root, 'status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' });
  return { commit: rev.status === 0 ? rev.stdout.trim() : null, dirty: status.status === 0 ? status.stdout.trim().length > 0 : null };
}

function writeAtomic(file, text) {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

/** The recipe elements both sides used (from the resolved config), for the JSON. */
function recipeOf(cfg) {
  return {
    architecture: cfg.model.architecture,
    encoder: 'random',
    decoderChannels: cfg.model.decoderChannels,
    normalization: cfg.model.normalization,
    patches: cfg.patches,
    augmentation: cfg.patches.augmentation,
    loss: cfg.loss,
    optimizer: cfg.optimizer,
    batchSize: cfg.train.batchSize,
    steps: cfg.train.steps,
    validationEvery: cfg.validation.every,
    inference: cfg.inference,
    polarity: cfg.data.polarity,
    selection:
      'best official U-RISC F1 on the val split at the chosen threshold (inference.threshold and validation.thresholds; ties: threshold-sweep F1), validated every validationEvery steps and at the last step',
  };
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const names = o.tasks ? o.tasks.split(',').filter(Boolean) : TASKS.map((t) => t.name);
  const tasks = names.map((n) => TASKS.find((t) => t.name === n) ?? usage(`--tasks: unknown task ${n} (${TASKS.map((t) => t.name).join(', ')})`));
  for (const f of [FINETUNE, EVAL]) if (!existsSync(f)) throw new Error(`${f} is missing: build first (npx tsc -b)`);
  if (sides.includes('torch') && !existsSync(python)) throw new Error(`no ${python}: run \`npm run setup\` (the bench needs torch in the project's .venv)`);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const outFile = resolve(o.out ?? join(root, '.emseg', 'bench', 'quality', `quality-${stamp}${o.quick ? '-quick' : ''}.json`));
  const work = resolve(o.work ?? join(tmpdir(), `emseg-bench-quality-${stamp}`));
  mkdirSync(work, { recursive: true });
  const ctx = { work, root };
  const torchVersion = sides.includes('torch')
    ? spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' }).stdout.trim() || null
    : null;
  const started = performance.now();
  const result = {
    benchmark: 'quality',
    issue: '18 part 1',
    quick: o.quick,
    seeds,
    sides,
    git: gitInfo(),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryGB: Math.round(totalmem() / 2 ** 30) },
    node: process.version,
    torchVersion,
    torchThreads: Number(o.threads),
    nice: niceness,
    loadavg: { start: loadavg().map((v) => round(v, 2)), end: null },
    startedAt: new Date().toISOString(),
    baseConfig: Object.fromEntries(TASKS.map((t) => [t.name, relative(root, t.config)])),
    budgetSets: BUDGET_SETS,
    commonSets: [...COMMON_SETS, ...o.set],
    recipe: null,
    recipeNotes: [...RECIPE_NOTES],
    tasks: {},
    wallSeconds: null,
    failures: 0,
    out: outFile,
    work: o.keep ? work : null,
  };
  progress(
    `${tasks.length} task(s) x ${seeds} seed(s) x [${sides.join(', ')}]${o.quick ? ' (quick)' : ''}; work in ${work}; load ${result.loadavg.start.join(' ')}`,
  );
  try {
    for (const task of tasks) {
      progress(`task ${task.name}: preparing data`);
      const data = await task.prepare(ctx);
      const cfg = await resolvedConfig(task, allSets(task, data, 0));
      result.recipe ??= recipeOf(cfg);
      for (const n of task.notes ?? []) result.recipeNotes.push(`${task.name}: ${n}`);
      const entry = {
        description: task.description,
        data: data.info,
        sets: data.sets,
        primary: task.primary,
        batchParity: null,
        emseg: null,
        torch: null,
        ratio: null,
      };
      result.tasks[task.name] = entry;
      if (sides.includes('torch')) {
        entry.batchParity = await batchParity(ctx, task, data);
        progress(`task ${task.name}: batch parity ${JSON.stringify(entry.batchParity)}`);
      }
      for (const side of sides) {
        const runs = [];
        const load = { start: loadavg().map((v) => round(v, 2)), end: null };
        const t0 = performance.now();
        for (let seed = 0; seed < seeds; seed++) {
          progress(`task ${task.name}: ${side} seed ${seed + 1}/${seeds}`);
          try {
            const r = side === 'emseg' ? await (task.emseg ?? runEmseg)(ctx, task, data, seed) : await (task.torch ?? runTorch)(ctx, task, data, seed);
            if (side === 'emseg') {
              // the emseg run's own config.json must be what the twin trains from
              const expected = await resolvedConfig(task, allSets(task, data, seed));
              r.configMatchesTwin = isDeepStrictEqual(r.config, expected);
              if (!r.configMatchesTwin)
                result.recipeNotes.push(`${task.name} seed ${seed}: emseg's resolved config differs from the twin's (see the run's config.json)`);
            }
            delete r.config;
            runs.push(r);
            progress(
              `task ${task.name}: ${side} seed ${seed}: test ${task.primary} ${round(r.test[task.primary])}, val best ${round(r.validation.best.f1)} @${r.validation.best.step}, last ${round(r.validation.last.f1)} @${r.validation.last.step}`,
            );
          } catch (err) {
            result.failures++;
            runs.push({ seed, error: err.message });
            progress(`task ${task.name}: ${side} seed ${seed} FAILED: ${err.message.split('\n')[0]}`);
          }
        }
        load.end = loadavg().map((v) => round(v, 2));
        entry[side] = summarise(task, runs, (performance.now() - t0) / 1000, load);
        const okRuns = runs.filter((r) => !r.error);
        if (side === 'emseg') entry.emseg.configMatchesTwin = okRuns.length > 0 && okRuns.every((r) => r.configMatchesTwin);
      }
      if (entry.emseg?.mean != null && entry.torch?.mean) entry.ratio = entry.emseg.mean / entry.torch.mean;
      writeAtomic(outFile, `${JSON.stringify(result, null, 2)}\n`); // partial result after each task
    }
  } finally {
    result.loadavg.end = loadavg().map((v) => round(v, 2));
    result.wallSeconds = round((performance.now() - started) / 1000, 1);
    result.finishedAt = new Date().toISOString();
    writeAtomic(outFile, `${JSON.stringify(result, null, 2)}\n`);
    if (!o.keep) rmSync(work, { recursive: true, force: true });
  }
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  progress(`done in ${(result.wallSeconds / 60).toFixed(1)} min; wrote ${outFile}`);
  return result.failures ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`error: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
