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
const PRETRAIN = join(root, 'apps', 'pretrain', 'dist', 'main.js');
const PRETRAIN_CONFIG = join(root, 'configs', 'pretrain', 'quick.json');
const IMPORT_TORCH = join(root, 'tools', 'import-torch', 'import-torch.mjs');
const PRETRAIN_TOOLS = join(root, 'tools', 'bench', 'pretrain');

const QUICK = { steps: 40, every: 20 };
/**
 * The pretrain task's budgets: MoCo steps per budget (short, long), the short fine-tune from each
 * encoder (steps, validation every), and its default seeds. The full run keeps it to about 10 minutes
 * per seed on 2 CPU cores (1 epoch = 64 steps of 32 crops vs 5 epochs; the issue's hand measurement
 * used 192 vs 960 steps, which would take about 25 minutes per seed and side pair).
 */
const PRETRAIN_BUDGETS = {
  full: { steps: [64, 320], finetune: { steps: 40, every: 20 }, seeds: 1 },
  quick: { steps: [16, 48], finetune: { steps: 20, every: 20 }, seeds: 1 },
};

const HELP = `usage: node tools/bench/quality/bench-quality.mjs [options]   (npm run bench:quality -- [options])

Trains the quick fine-tuning recipe (configs/finetune/quick.json, random-init ResNet-18 U-Net) with
emseg's CLI and with a PyTorch twin (tools/bench/quality/torch_quality.py) on each task, N seeds per
side, runs the sides one after the other, scores both sides' test predictions with emseg's scorer
and prints one JSON object (also written atomically to --out).

  --seeds N            seeds per side (default 3; seed s sets train.seed = model.seed = s)
  --quick              smoke check: 1 seed, ${QUICK.steps} steps, validation every ${QUICK.every} steps
  --tasks LIST         comma-separated, from: membranes, mitochondria, pretrain (default: all)
  --sides LIST         emseg,torch (default both; one side gives no ratio)
  --set K=V            extra fine-tuning config override for both sides (repeatable), e.g. --set train.steps=300
                       (the pretrain task applies it to its fine-tunes)
  --pretrain-seeds N   seeds of the pretrain task (default ${PRETRAIN_BUDGETS.full.seeds}; --quick ${PRETRAIN_BUDGETS.quick.seeds})
  --pretrain-steps A,B MoCo steps of the pretrain task's budgets (default ${PRETRAIN_BUDGETS.full.steps.join(',')}; --quick ${PRETRAIN_BUDGETS.quick.steps.join(',')})
  --pretrain-finetune N  steps of the short fine-tune from each encoder (default ${PRETRAIN_BUDGETS.full.finetune.steps},
                       validation every ${PRETRAIN_BUDGETS.full.finetune.every}; --quick ${PRETRAIN_BUDGETS.quick.finetune.steps})
  --pretrain-set K=V   extra pretraining config override for both sides of the pretrain task (repeatable)
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

Tasks: membranes and mitochondria train the U-Net from random init on each side; pretrain runs
MoCo v2 (configs/pretrain/quick.json) with emseg and with a PyTorch twin
(tools/bench/pretrain/torch_moco_train.py) at two budgets, and scores each encoder with the same
frozen-feature linear and kNN probes (tools/bench/pretrain/probe-encoder.mjs) and a short emseg
fine-tune from it (finetune urisc --encoder BUNDLE).

Budget: the default run (membranes + mitochondria: 3 seeds x 2 sides, 150 steps each, about 35
minutes; pretrain: 1 seed x 2 sides x 2 budgets of 64 and 320 MoCo steps, about 10 minutes) takes
about 45 minutes on 2 quiet CPU cores; --quick a few minutes. Progress goes to stderr.
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
      'pretrain-seeds': { type: 'string' },
      'pretrain-steps': { type: 'string' },
      'pretrain-finetune': { type: 'string' },
      'pretrain-set': { type: 'string', multiple: true, default: [] },
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
for (const s of [...o.set, ...o['pretrain-set']]) if (!/^[\w.]+=/.test(s)) usage(`--set / --pretrain-set expect KEY=VALUE, got ${s}`);
const pretrainPreset = o.quick ? PRETRAIN_BUDGETS.quick : PRETRAIN_BUDGETS.full;
const pretrainSeeds = o['pretrain-seeds'] === undefined ? pretrainPreset.seeds : Number(o['pretrain-seeds']);
const pretrainSteps = o['pretrain-steps'] === undefined ? pretrainPreset.steps : o['pretrain-steps'].split(',').map(Number);
const pretrainFinetune =
  o['pretrain-finetune'] === undefined
    ? pretrainPreset.finetune
    : { steps: Number(o['pretrain-finetune']), every: Math.min(pretrainPreset.finetune.every, Number(o['pretrain-finetune'])) };
if (!Number.isInteger(pretrainSeeds) || pretrainSeeds < 1) usage(`--pretrain-seeds must be a positive integer, got ${o['pretrain-seeds']}`);
if (pretrainSteps.length < 1 || !pretrainSteps.every((n) => Number.isInteger(n) && n > 0))
  usage(`--pretrain-steps must be comma-separated positive integers, got ${o['pretrain-steps']}`);
if (!Number.isInteger(pretrainFinetune.steps) || pretrainFinetune.steps < 1)
  usage(`--pretrain-finetune must be a positive integer, got ${o['pretrain-finetune']}`);

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

/** Official U-RISC F1 (+ pixel F1 / IoU) of a membrane submission folder, by emseg's scorer. */
async function membraneScores(predDir, data) {
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
}

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
    score: membraneScores,
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
  {
    name: 'pretrain',
    // the short fine-tunes from each encoder: emseg's finetune urisc on the membrane data
    command: 'urisc',
    config: BASE_CONFIG,
    pretrainConfig: PRETRAIN_CONFIG,
    description:
      "MoCo v2 (configs/pretrain/quick.json: ResNet-18, 64 px views of the 2048 embedded 128 px synthetic crops, batch 32, K auto = 512, m 0.99, T 0.2, SGD lr 0.06 cosine with 0.5 epoch warm-up) in emseg and in a PyTorch twin at the same budgets; each encoder scored by the same frozen-feature probes on the embedded membrane data (emseg's linear probe, a kNN probe) and by a short emseg fine-tune from it (finetune urisc --encoder BUNDLE, official U-RISC F1 on the test images)",
    primary: 'linearF1',
    seeds: () => pretrainSeeds,
    notes: [
      "the twin trains on the view batches emseg-views.mjs dumps from libs/data (UnlabeledCrops.stream with the run seed, epoch order, augmentation and normalisation of emseg's pretraining loop): the same pixels at every step, by construction, so there is no batch-parity check to run; the augmentation itself is emseg's code on both sides (not a port).",
      "shuffle-BN: the twin permutes the key batch with emseg's seeded permutation (Rng(train.seed * 1000003 + step), ported bit-exactly) and normalises it in moco.shuffleGroups contiguous sub-batches, as emseg does; torch BatchNorm2d updates the key network's running statistics once per sub-batch, emseg once per batch (the key network's running statistics are never used).",
      'initial weights (encoder He normal fan-out truncated at 2 sd, BN 1/0, head U(+-1/sqrt(fan_in))) and the initial queue (L2-normalised Gaussian rows) follow the same distributions but are different numbers (tfjs seeded initialisers vs torch.manual_seed(seed)).',
      "both encoders are scored by the same code: the twin's checkpoint goes through tools/import-torch into an emseg encoder bundle, and tools/bench/pretrain/probe-encoder.mjs (apps/pretrain's linear probe, and a kNN probe on the same pixel features) and emseg's finetune urisc score both bundles.",
      'the fine-tunes are emseg runs on both sides (the quick recipe, train.steps and validation.every of the pretrain budget, seed s), so the fine-tune F1 compares encoders, not fine-tuning frameworks; the random-init reference probe (emseg side, per seed) says what the probes give without any pretraining.',
      'torch runs with torch.set_num_threads(--threads), OMP_WAIT_POLICY=PASSIVE (unless set: spinning OpenMP threads slow torch up to 9x on a loaded 2-core machine; losses unchanged) and its batches dumped before training (a loader beside two OpenMP threads on two cores slows torch several-fold); emseg loads in-process with prefetch, as its CLI does.',
    ],
    async prepare() {
      const { ensureDefaultData, UnlabeledCrops } = await import(join(root, 'libs', 'data', 'dist', 'index.js'));
      const d = await ensureDefaultData();
      const crops = await UnlabeledCrops.open(d.crops.root);
      return {
        root: d.urisc.root,
        track: d.urisc.track,
        testImages: d.urisc.splits.test.images,
        scoreLabels: d.urisc.splits.test.labels,
        sets: [],
        crops: { root: d.crops.root, count: crops.size },
        info: {
          root: d.urisc.root,
          version: d.version,
          counts: d.spec.urisc.count,
          size: d.spec.urisc.size,
          crops: { root: d.crops.root, count: crops.size, size: d.spec.crops.size },
          budgets: { pretrainSteps, finetune: pretrainFinetune, seeds: pretrainSeeds },
        },
      };
    },
    score: membraneScores,
    emseg: (ctx, task, data, seed) => pretrainSide(ctx, task, data, seed, 'emseg'),
    torch: (ctx, task, data, seed) => pretrainSide(ctx, task, data, seed, 'torch'),
    summarise: summarisePretrain,
    ratio: pretrainRatios,
    describe: (r) =>
      Object.values(r.budgets)
        .map((b) => `${b.steps} steps: linear ${round(b.linear.f1)}, kNN ${round(b.knn.f1)}, fine-tune ${round(b.finetune.uriscF1)}`)
        .join('; '),
    recipe: (data) => pretrainRecipe(data),
  },
];

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/** The children running now: a SIGINT / SIGTERM of the benchmark is passed on to them, so none is left training. */
const children = new Set();
let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    stopping = true;
    progress(`${signal}: stopping ${children.size} running child process(es); nothing new starts`);
    for (const child of children) child.kill(signal);
    process.exitCode = 130;
    setTimeout(() => process.exit(130), 30_000).unref();
  });
}

/** Runs a command (under nice when asked); resolves with its code and captured output. Progress lines go through to stderr. */
function run(cmd, args, { label, niced = false, echo = () => false, env } = {}) {
  const [file, argv] = niced && niceness > 0 ? ['nice', ['-n', String(niceness), cmd, ...args]] : [cmd, args];
  return new Promise((resolvePromise, reject) => {
    if (stopping) return reject(new Error(`${label}: not started, the benchmark is stopping`));
    const child = spawn(file, argv, { cwd: root, env: env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    child.on('exit', () => children.delete(child));
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
    child.on('close', (code, signal) => resolvePromise({ code, signal, stdout, stderr }));
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

/**
 * emseg's side of a fine-tuning task: `finetune <command>` (random init unless `opts.encoder` names
 * a bundle), then `finetune predict` from the best validated model, scored by `task.score`.
 * `opts` (the pretrain task's fine-tunes): `dir`, `encoder`, `sets` (instead of allSets), `runName`, `label`.
 */
async function runEmseg(ctx, task, data, seed, opts = {}) {
  const dir = opts.dir ?? join(ctx.work, task.name, 'emseg', `seed-${seed}`);
  const runDir = join(dir, 'run');
  const predDir = join(dir, 'pred');
  mkdirSync(dir, { recursive: true });
  const sets = opts.sets ?? allSets(task, data, seed);
  const args = [
    FINETUNE,
    task.command,
    '--config',
    task.config,
    '--data',
    data.root,
    '--encoder',
    opts.encoder ?? 'random',
    '--out',
    runDir,
    '--overwrite',
    '--latest',
    join(ctx.work, 'latest.json'),
    '--no-test',
    '--experiment',
    o.experiment,
    '--run-name',
    opts.runName ?? `quality-${task.name}-seed${seed}${o.quick ? '-quick' : ''}`,
    ...(o['tracking-uri'] ? ['--tracking-uri', o['tracking-uri']] : []),
    ...sets.flatMap((s) => ['--set', s]),
  ];
  const load0 = loadavg();
  const t0 = performance.now();
  const label = opts.label ?? `emseg ${task.name} seed ${seed}`;
  const res = await run(process.execPath, args, { label, niced: true, echo: (l) => VAL_LINE.test(l) });
  const trainSeconds = (performance.now() - t0) / 1000;
  if (res.code !== 0) throw new Error(`finetune ${task.command} exited ${res.code ?? res.signal ?? '?'}: ${(res.stderr + res.stdout).slice(-2000)}`);
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
      label: `${label} predict`,
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
    { label: `torch ${task.name} seed ${seed}`, niced: true, echo: (l) => /validation (F1|IoU)/.test(l), env: TWIN_ENV },
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

// ---------------------------------------------------------------------------------------------
// The pretrain task (issue 18): MoCo v2 on both sides, probes and a short fine-tune per encoder
// ---------------------------------------------------------------------------------------------

let pretrainLibs;
/** The pretraining config both sides train with: configs/pretrain/quick.json + the budget + seed, K resolved (as `pretrain moco` resolves it). */
async function pretrainConfig(data, steps, seed) {
  pretrainLibs ??= {
    loadConfig: (await import(join(root, 'libs', 'config', 'dist', 'index.js'))).loadConfig,
    ...(await import(join(root, 'apps', 'pretrain', 'dist', 'config.js'))),
    ...(await import(join(root, 'apps', 'pretrain', 'dist', 'queue-fit.js'))),
  };
  const { loadConfig, mocoSchema, checkMocoConfig, resolveQueueSize } = pretrainLibs;
  const base = loadConfig(mocoSchema, { file: PRETRAIN_CONFIG, overrides: [`train.seed=${seed}`, ...o['pretrain-set']] });
  const sets = pretrainSets(Math.floor(data.crops.count / base.train.batchSize), steps, seed);
  const cfg = loadConfig(mocoSchema, { file: PRETRAIN_CONFIG, overrides: sets });
  checkMocoConfig(cfg, PRETRAIN_CONFIG);
  return { cfg: resolveQueueSize(cfg, data.crops.count), sets };
}

function pretrainSets(perEpoch, steps, seed) {
  // epochs rounded up, maxSteps exact: totalSteps = steps, the schedule spans them; checkpoint only at the end
  return [
    `train.seed=${seed}`,
    ...o['pretrain-set'],
    `train.epochs=${Math.max(1, Math.ceil(steps / Math.max(1, perEpoch)))}`,
    `train.maxSteps=${steps}`,
    `train.checkpointEvery=${steps}`,
    'probe.every=0',
  ];
}

/** The fine-tune of the pretrain task: the quick recipe at the pretrain budget's steps, seed s. */
const pretrainFinetuneSets = (seed) => [
  ...COMMON_SETS,
  `train.steps=${pretrainFinetune.steps}`,
  `validation.every=${pretrainFinetune.every}`,
  `train.checkpointEvery=${pretrainFinetune.every}`,
  ...o.set,
  ...seedSets(seed),
];

/**
 * The twins' environment (U-Net and MoCo): OpenMP threads that sleep rather than spin at barriers. On a
 * shared 2-core machine a spinning torch thread waits for a preempted peer: measured under load 5,
 * 4678 ms a MoCo step spinning vs 527 ms passive, with the same losses. Set OMP_WAIT_POLICY to override.
 */
const TWIN_ENV = { ...process.env, OMP_WAIT_POLICY: process.env.OMP_WAIT_POLICY ?? 'PASSIVE' };

const MOCO_DONE = /pretraining finished after (\d+)\/(\d+) steps \(last loss ([\d.]+|n\/a)\)/;

async function emsegPretrain(ctx, data, dir, seed, steps) {
  const { cfg, sets } = await pretrainConfig(data, steps, seed);
  const runDir = join(dir, 'run');
  const args = [
    PRETRAIN,
    'moco',
    '--config',
    PRETRAIN_CONFIG,
    '--data',
    data.crops.root,
    '--out',
    runDir,
    '--overwrite',
    '--latest',
    join(ctx.work, 'latest-pretrain.json'),
    '--experiment',
    o.experiment,
    '--run-name',
    `quality-pretrain-${steps}steps-seed${seed}${o.quick ? '-quick' : ''}`,
    ...(o['tracking-uri'] ? ['--tracking-uri', o['tracking-uri']] : []),
    ...sets.flatMap((v) => ['--set', v]),
  ];
  const t0 = performance.now();
  const res = await run(process.execPath, args, { label: `emseg moco ${steps} steps seed ${seed}`, niced: true, echo: (l) => MOCO_DONE.test(l) });
  const seconds = (performance.now() - t0) / 1000;
  if (res.code !== 0) throw new Error(`pretrain moco exited ${res.code}: ${(res.stderr + res.stdout).slice(-2000)}`);
  const done = MOCO_DONE.exec(res.stderr + res.stdout);
  const used = JSON.parse(readFileSync(join(runDir, 'config.json'), 'utf8'));
  const bundle = join(runDir, 'encoder');
  if (!existsSync(join(bundle, 'encoder.json'))) throw new Error(`pretrain moco wrote no encoder bundle in ${bundle}`);
  const configMatchesTwin = isDeepStrictEqual(used, cfg);
  if (!o.keep) rmSync(join(runDir, 'checkpoints'), { recursive: true, force: true });
  return {
    bundle,
    info: {
      steps: done ? +done[1] : null,
      lastLoss: done && done[3] !== 'n/a' ? +done[3] : null,
      queueSize: used.moco.queueSize,
      seconds: round(seconds, 1),
      note: 'the whole pretrain moco process (MLflow, crop listing, the loop, the bundle)',
      configMatchesTwin,
    },
  };
}

async function torchPretrain(ctx, data, dir, seed, steps) {
  const { cfg } = await pretrainConfig(data, steps, seed);
  mkdirSync(dir, { recursive: true });
  const cfgFile = join(dir, 'config.json');
  writeFileSync(cfgFile, `${JSON.stringify(cfg, null, 2)}\n`);
  const ckpt = join(dir, 'torch-moco.pth');
  const t0 = performance.now();
  const res = await run(
    python,
    [
      join(PRETRAIN_TOOLS, 'torch_moco_train.py'),
      '--config',
      cfgFile,
      '--data',
      data.crops.root,
      '--crops',
      String(data.crops.count),
      '--out',
      ckpt,
      '--threads',
      o.threads,
      '--seed',
      String(seed),
      '--node',
      process.execPath,
    ],
    {
      label: `torch moco ${steps} steps seed ${seed}`,
      niced: true,
      env: TWIN_ENV,
      echo: (l) => /^torch moco step \d+\/\d+/.test(l) && / (\d+)\/\1 /.test(l),
    },
  );
  const seconds = (performance.now() - t0) / 1000;
  if (res.code !== 0) throw new Error(`torch_moco_train.py exited ${res.code}: ${res.stderr.slice(-2000)}`);
  const out = lastJsonLine(res.stdout, 'torch_moco_train.py');
  const bundle = join(dir, 'encoder');
  const imp = await run(process.execPath, [IMPORT_TORCH, ckpt, '--out', bundle, '--prefix', 'module.encoder_q.', '--python', python, '--overwrite'], {
    label: 'import-torch',
  });
  if (imp.code !== 0) throw new Error(`import-torch exited ${imp.code}: ${(imp.stderr + imp.stdout).slice(-1500)}`);
  if (!o.keep) rmSync(ckpt, { force: true });
  return {
    bundle,
    info: {
      steps: out.steps,
      lastLoss: out.lastLoss,
      meanLossLast10: out.meanLossLast10,
      posSimLast10: out.posSimLast10,
      negSimLast10: out.negSimLast10,
      lossEvery10: out.lossEvery10,
      queueSize: cfg.moco.queueSize,
      msPerStep: out.msPerStep,
      viewsSeconds: out.viewsSeconds,
      seconds: round(seconds, 1),
      note: "the whole torch_moco_train.py process (dumping emseg's views, the loop, the checkpoint); import-torch not included",
      torch: { version: out.version, threads: out.threads, ompWaitPolicy: TWIN_ENV.OMP_WAIT_POLICY },
    },
  };
}

/**
 * emseg's MoCo step (moco-parity.mjs: apps/pretrain's own method, optimizer and schedule) from the
 * twin's initial weights and queue, on the same batches, against the twin's steps; and the twin
 * against itself at another thread count (how far float summation order alone moves the losses).
 */
async function mocoStepParity(ctx, data) {
  const longest = pretrainSteps[pretrainSteps.length - 1];
  const steps = Math.min(8, longest);
  const dir = join(ctx.work, 'pretrain', 'parity');
  mkdirSync(dir, { recursive: true });
  const { cfg } = await pretrainConfig(data, longest, 0);
  const cfgFile = join(dir, 'config.json');
  writeFileSync(cfgFile, `${JSON.stringify(cfg, null, 2)}\n`);
  const torchRun = async (threads, extra) => {
    const res = await run(
      python,
      [
        join(PRETRAIN_TOOLS, 'torch_moco_train.py'),
        '--config',
        cfgFile,
        '--data',
        data.crops.root,
        '--crops',
        String(data.crops.count),
        '--out',
        join(dir, `torch-${threads}.pth`),
        '--threads',
        String(threads),
        '--seed',
        '0',
        '--node',
        process.execPath,
        '--max-steps',
        String(steps),
        ...extra,
      ],
      { label: 'step parity', env: TWIN_ENV },
    );
    if (res.code !== 0) throw new Error(`torch_moco_train.py (parity) exited ${res.code}: ${res.stderr.slice(-1500)}`);
    return lastJsonLine(res.stdout, 'torch_moco_train.py (parity)');
  };
  try {
    const views = join(dir, 'views.f32');
    const t = await torchRun(Number(o.threads), ['--save-init', join(dir, 'init.pth'), '--keep-views', '--views', views]);
    const other = Number(o.threads) === 1 ? 2 : 1;
    const t2 = await torchRun(other, []);
    const exp = await run(python, [join(root, 'tools', 'import-torch', 'export_state_dict.py'), join(dir, 'init.pth'), join(dir, 'init-export')], {
      label: 'step parity',
    });
    if (exp.code !== 0) throw new Error(`export_state_dict.py exited ${exp.code}: ${exp.stderr.slice(-1500)}`);
    const e = await run(
      process.execPath,
      [
        join(PRETRAIN_TOOLS, 'moco-parity.mjs'),
        '--config',
        cfgFile,
        '--init',
        join(dir, 'init-export'),
        '--views',
        views,
        '--crops',
        String(data.crops.count),
        '--steps',
        String(steps),
      ],
      { label: 'step parity', niced: false },
    );
    if (e.code !== 0) throw new Error(`moco-parity.mjs exited ${e.code}: ${e.stderr.slice(-1500)}`);
    const em = lastJsonLine(e.stdout, 'moco-parity.mjs');
    const diff = (a, b) => a.map((v, i) => Number(Math.abs(v - b[i]).toExponential(2)));
    return {
      steps,
      budget: longest,
      emsegLosses: em.losses.map((v) => round(v, 6)),
      torchLosses: t.losses.map((v) => round(v, 6)),
      [`torchLosses${other}Threads`]: t2.losses.map((v) => round(v, 6)),
      absDiff: diff(em.losses, t.losses),
      torchVsTorchAbsDiff: diff(t2.losses, t.losses),
      posSimAbsDiff: diff(em.posSims, t.posSims),
      lrsEqual: em.lrs.every((v, i) => Math.abs(v - t.lrs[i]) < 1e-12),
      note: `emseg (apps/pretrain's MoCo method, Sgd and schedule) from the twin's initial weights and queue on the same batches, seed 0, the ${longest}-step budget's schedule; torchVsTorchAbsDiff: the twin at ${other} vs ${o.threads} thread(s), the size of float-order effects (the losses of both comparisons jump by ~1e-3 within a few steps: the dynamics amplify rounding)`,
    };
  } catch (err) {
    return { error: err.message };
  } finally {
    if (!o.keep) rmSync(dir, { recursive: true, force: true });
  }
}

/** probe-encoder.mjs on a bundle (or `random:<arch>:<seed>`): { linear, knn, seconds }. */
async function probeEncoder(encoder, data, jsonFile, label) {
  const res = await run(process.execPath, [join(PRETRAIN_TOOLS, 'probe-encoder.mjs'), '--encoder', encoder, '--probe', data.root, '--json', jsonFile], {
    label,
    niced: true,
  });
  if (res.code !== 0) throw new Error(`probe-encoder.mjs exited ${res.code}: ${res.stderr.slice(-1500)}`);
  return lastJsonLine(res.stdout, 'probe-encoder.mjs');
}

/** One seed of one side of the pretrain task: for each budget, pretrain, probe, fine-tune. */
async function pretrainSide(ctx, task, data, seed, side) {
  const load0 = loadavg();
  const budgets = {};
  let reference = null;
  let configMatchesTwin = true;
  if (side === 'emseg') {
    const dir = join(ctx.work, 'pretrain', 'random', `seed-${seed}`);
    mkdirSync(dir, { recursive: true });
    const p = await probeEncoder(`random:resnet18:${seed}`, data, join(dir, 'probe.json'), `probe random init seed ${seed}`);
    reference = {
      randomInit: { linear: p.linear, knn: p.knn, note: "emseg's random ResNet-18 (model seed s), the same probes: what they give without pretraining" },
    };
  }
  for (const steps of pretrainSteps) {
    const dir = join(ctx.work, 'pretrain', side, `seed-${seed}`, `steps-${steps}`);
    mkdirSync(dir, { recursive: true });
    const pre = side === 'emseg' ? await emsegPretrain(ctx, data, dir, seed, steps) : await torchPretrain(ctx, data, dir, seed, steps);
    if (pre.info.configMatchesTwin === false) configMatchesTwin = false;
    const probe = await probeEncoder(pre.bundle, data, join(dir, 'probe.json'), `probe ${side} ${steps} steps seed ${seed}`);
    const ft = await runEmseg(ctx, task, data, seed, {
      dir: join(dir, 'finetune'),
      encoder: pre.bundle,
      sets: pretrainFinetuneSets(seed),
      runName: `quality-pretrain-${side}-${steps}steps-finetune-seed${seed}${o.quick ? '-quick' : ''}`,
      label: `fine-tune from ${side} ${steps} steps seed ${seed}`,
    });
    const { perImage, ...test } = ft.test;
    budgets[steps] = {
      steps,
      pretrain: pre.info,
      linear: probe.linear,
      knn: probe.knn,
      probeSeconds: probe.seconds,
      finetune: {
        ...test,
        perImage,
        validation: { bestStep: ft.validation.best.step, bestF1: ft.validation.best.f1, lastStep: ft.validation.last.step, lastF1: ft.validation.last.f1 },
        seconds: ft.seconds,
      },
    };
    progress(
      `task pretrain: ${side} seed ${seed} ${steps} steps: loss ${round(pre.info.lastLoss)}, linear F1 ${round(probe.linear.f1)}, kNN F1 ${round(probe.knn.f1)}, fine-tune F1 ${round(test.uriscF1)}`,
    );
    if (!o.keep) rmSync(pre.bundle, { recursive: true, force: true });
  }
  const last = budgets[pretrainSteps[pretrainSteps.length - 1]];
  return {
    seed,
    // the task's primary metric (linearF1) at the longest budget, for the generic summary lines
    test: { linearF1: last.linear.f1, knnF1: last.knn.f1, finetuneF1: last.finetune.uriscF1 },
    budgets,
    ...(reference ? { reference } : {}),
    configMatchesTwin: side === 'emseg' ? configMatchesTwin : undefined,
    loadavg: { start: load0.map((v) => round(v, 2)), end: loadavg().map((v) => round(v, 2)) },
  };
}

const PRETRAIN_METRICS = {
  linearF1: (b) => b.linear.f1,
  knnF1: (b) => b.knn.f1,
  finetuneF1: (b) => b.finetune.uriscF1,
  finetunePixelF1: (b) => b.finetune.pixelF1,
  finetuneValBestF1: (b) => b.finetune.validation.bestF1,
  // the chosen thresholds: apps/pretrain's probe sweeps 0.05..0.95, so 0.95 means the sweep's edge
  linearThreshold: (b) => b.linear.threshold,
  knnThreshold: (b) => b.knn.threshold,
  linearPrecision: (b) => b.linear.precision,
  linearRecall: (b) => b.linear.recall,
  knnPrecision: (b) => b.knn.precision,
  knnRecall: (b) => b.knn.recall,
  pretrainLastLoss: (b) => b.pretrain.lastLoss,
  pretrainSeconds: (b) => b.pretrain.seconds,
};
const PRETRAIN_RATIO_METRICS = ['linearF1', 'knnF1', 'finetuneF1'];

function summarisePretrain(task, runs, wallSeconds, load) {
  const ok = runs.filter((r) => !r.error);
  const budgets = {};
  for (const steps of pretrainSteps) {
    budgets[steps] = { steps };
    for (const [name, get] of Object.entries(PRETRAIN_METRICS)) {
      budgets[steps][name] = stats(ok.map((r) => get(r.budgets[steps])).filter((v) => typeof v === 'number' && Number.isFinite(v)));
    }
  }
  const longest = pretrainSteps[pretrainSteps.length - 1];
  const refs = ok.filter((r) => r.reference).map((r) => r.reference.randomInit);
  return {
    metric: task.primary,
    metricBudget: longest,
    ...budgets[longest].linearF1,
    budgets,
    ...(refs.length ? { randomInitReference: { linearF1: stats(refs.map((r) => r.linear.f1)), knnF1: stats(refs.map((r) => r.knn.f1)) } } : {}),
    perSeed: runs.map((r) => (r.error ? { seed: r.seed, error: r.error } : { seed: r.seed, budgets: r.budgets, reference: r.reference, loadavg: r.loadavg })),
    wallSeconds: round(wallSeconds, 1),
    loadavg: load,
  };
}

/** Per budget and metric emseg mean / torch mean; `ratio` = the smallest linear-probe ratio over the budgets. */
function pretrainRatios(entry) {
  if (!entry.emseg?.budgets || !entry.torch?.budgets) return;
  entry.ratios = {};
  for (const steps of pretrainSteps) {
    entry.ratios[steps] = {};
    for (const name of PRETRAIN_RATIO_METRICS) {
      const e = entry.emseg.budgets[steps][name].mean;
      const t = entry.torch.budgets[steps][name].mean;
      entry.ratios[steps][name] = e != null && t ? e / t : null;
    }
  }
  const linear = pretrainSteps.map((s) => entry.ratios[s].linearF1).filter((v) => v !== null);
  const all = pretrainSteps.flatMap((s) => PRETRAIN_RATIO_METRICS.map((m) => entry.ratios[s][m])).filter((v) => v !== null);
  entry.ratio = linear.length ? Math.min(...linear) : null;
  entry.minRatio = all.length ? Math.min(...all) : null;
  entry.ratioRule =
    'ratio: the smallest emseg/torch ratio of the mean linear-probe F1 over the budgets; minRatio: the smallest over budgets and linearF1, knnF1, finetuneF1; ratios: each';
}

function pretrainRecipe(data) {
  return {
    config: relative(root, PRETRAIN_CONFIG),
    pretrainSteps,
    stepsPerEpoch: Math.floor(data.crops.count / 32),
    crops: data.crops,
    finetune: { ...pretrainFinetune, config: relative(root, BASE_CONFIG), encoder: 'the pretrained bundle (--encoder DIR)' },
    seeds: pretrainSeeds,
    probes: {
      linear:
        'apps/pretrain probe.ts (loadProbeData + runProbe): 8 train / 8 val patches of 128 px from the embedded U-RISC train / val images, stride-2/4/8 features upsampled and concatenated, 1x1 logistic regression, 60 Adam steps at 0.05, positive-weighted BCE; best-threshold F1 (0.05..0.95) on the val patches',
      knn: 'the same pixel features standardised by the train patches and L2-normalised; 8192 train and 16384 val pixels drawn at random (seeded); score = membrane share of the 20 nearest train pixels (cosine); best-threshold F1 (0.05..0.95)',
    },
    elements: {
      model: 'ResNet-18 (1-channel stem) + projection head Linear(512, 512) - ReLU - Linear(512, 128), L2-normalised',
      views:
        '64 px views of 128 px crops, 2 per crop: rotation +-180 (p 0.5), RandomResizedCrop scale 0.2-1 ratio 3/4-4/3, brightness / contrast 0.4, Gaussian blur sigma 0.1-2 (p 0.5), flips, Gaussian noise variance 1e-5..1e-4 (p 0.5), reflect borders; normalised (x - 0.573) / 0.127',
      moco: 'K = 512 (auto: a quarter of the crops), m 0.99 (momentum update before the keys), T 0.2, shuffle-BN in 2 sub-batches, InfoNCE with the positive at 0',
      optimizer:
        'SGD momentum 0.9, weight decay 1e-4 (all parameters), batch 32, lr 0.06, linear warm-up over 0.5 epoch (32 steps), half-cosine to 0 over the run',
    },
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
  for (const f of [FINETUNE, EVAL, ...(names.includes('pretrain') ? [PRETRAIN] : [])])
    if (!existsSync(f)) throw new Error(`${f} is missing: build first (npx tsc -b)`);
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
    pretrainSeeds: names.includes('pretrain') ? pretrainSeeds : undefined,
    sides,
    git: gitInfo(),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryGB: Math.round(totalmem() / 2 ** 30) },
    node: process.version,
    torchVersion,
    torchThreads: Number(o.threads),
    nice: niceness,
    loadavg: { start: loadavg().map((v) => round(v, 2)), end: null },
    startedAt: new Date().toISOString(),
    baseConfig: Object.fromEntries(TASKS.map((t) => [t.name, relative(root, t.pretrainConfig ?? t.config)])),
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
    `${tasks.length} task(s) x ${seeds} seed(s)${names.includes('pretrain') ? ` (pretrain: ${pretrainSeeds}, MoCo steps ${pretrainSteps.join(' and ')})` : ''} x [${sides.join(', ')}]${o.quick ? ' (quick)' : ''}; work in ${work}; load ${result.loadavg.start.join(' ')}`,
  );
  try {
    for (const task of tasks) {
      progress(`task ${task.name}: preparing data`);
      const data = await task.prepare(ctx);
      const cfg = await resolvedConfig(task, allSets(task, data, 0));
      if (task.name !== 'pretrain') result.recipe ??= recipeOf(cfg);
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
      if (task.recipe) entry.recipe = task.recipe(data);
      if (task.name === 'pretrain') {
        entry.batchParity = { identicalByConstruction: true, note: "the twin trains on the batches emseg-views.mjs dumps from emseg's own data pipeline" };
        if (sides.includes('torch') && sides.includes('emseg')) {
          entry.stepParity = await mocoStepParity(ctx, data);
          progress(`task pretrain: step parity ${JSON.stringify({ absDiff: entry.stepParity.absDiff, torchVsTorch: entry.stepParity.torchVsTorchAbsDiff })}`);
        }
      } else if (sides.includes('torch')) {
        entry.batchParity = await batchParity(ctx, task, data);
        progress(`task ${task.name}: batch parity ${JSON.stringify(entry.batchParity)}`);
      }
      for (const side of sides) {
        const runs = [];
        const load = { start: loadavg().map((v) => round(v, 2)), end: null };
        const t0 = performance.now();
        const taskSeeds = task.seeds ? task.seeds() : seeds;
        for (let seed = 0; seed < taskSeeds; seed++) {
          progress(`task ${task.name}: ${side} seed ${seed + 1}/${taskSeeds}`);
          try {
            const r = side === 'emseg' ? await (task.emseg ?? runEmseg)(ctx, task, data, seed) : await (task.torch ?? runTorch)(ctx, task, data, seed);
            if (side === 'emseg' && task.name === 'pretrain') {
              if (!r.configMatchesTwin) result.recipeNotes.push(`pretrain seed ${seed}: emseg's resolved pretraining config differs from the twin's`);
            } else if (side === 'emseg') {
              // the emseg run's own config.json must be what the twin trains from
              const expected = await resolvedConfig(task, allSets(task, data, seed));
              r.configMatchesTwin = isDeepStrictEqual(r.config, expected);
              if (!r.configMatchesTwin)
                result.recipeNotes.push(`${task.name} seed ${seed}: emseg's resolved config differs from the twin's (see the run's config.json)`);
            }
            delete r.config;
            runs.push(r);
            progress(
              task.describe
                ? `task ${task.name}: ${side} seed ${seed}: ${task.describe(r)}`
                : `task ${task.name}: ${side} seed ${seed}: test ${task.primary} ${round(r.test[task.primary])}, val best ${round(r.validation.best.f1)} @${r.validation.best.step}, last ${round(r.validation.last.f1)} @${r.validation.last.step}`,
            );
          } catch (err) {
            result.failures++;
            runs.push({ seed, error: err.message });
            progress(`task ${task.name}: ${side} seed ${seed} FAILED: ${err.message.split('\n')[0]}`);
          }
        }
        load.end = loadavg().map((v) => round(v, 2));
        entry[side] = (task.summarise ?? summarise)(task, runs, (performance.now() - t0) / 1000, load);
        const okRuns = runs.filter((r) => !r.error);
        if (side === 'emseg') entry.emseg.configMatchesTwin = okRuns.length > 0 && okRuns.every((r) => r.configMatchesTwin);
      }
      if (task.ratio) task.ratio(entry);
      else if (entry.emseg?.mean != null && entry.torch?.mean) entry.ratio = entry.emseg.mean / entry.torch.mean;
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
