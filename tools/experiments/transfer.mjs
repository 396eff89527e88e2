#!/usr/bin/env node
/**
 * The transfer experiment as one command (issue 7, issue 12 item 6): does self-supervised
 * pretraining on EM help membrane segmentation? A preset of `nx run finetune:benchmark`:
 *
 *   1. pretrain an encoder with MoCoV2 (quick config, embedded synthetic crops), or take --encoder,
 *   2. run `finetune benchmark` (CEM500K's protocol) with that encoder on the membrane task
 *      (configs/segment/membrane.json; with no --data the embedded synthetic U-RISC data): the
 *      encoder frozen and fine-tuned, plus random init, same config, budget and seed, each a child
 *      run of one MLflow parent run, validated by V-Rand and tested by IoU, F1 and V-Rand,
 *   3. score every arm's test masks with the official U-RISC F1 as well (membrane black, as the
 *      competition reads them), log it to the benchmark's parent run, print the comparison and
 *      write it as JSON.
 *
 *   node tools/experiments/transfer.mjs [--steps N] [--seed S] [--encoder DIR] [--modes frozen,finetuned]
 *                                       [--pretrain-set K=V ...] [--finetune-set K=V ...] [--config FILE] [--data DIR]
 *                                       [--experiment NAME] [--tracking-uri URI] [--out DIR]
 *
 * Needs the built apps (`tsc -b`). Runs go to .emseg/experiments/transfer-<time>/:
 *   pretrain/          the MoCoV2 run (encoder/ is the bundle), latest.json beside it
 *   benchmark/         the benchmark: one run folder per arm, results.{csv,json,svg,png}
 *   summary.json       the comparison (written atomically)
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const WORKSPACE = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const PRETRAIN = join(WORKSPACE, 'apps', 'pretrain', 'dist', 'main.js');
const FINETUNE = join(WORKSPACE, 'apps', 'finetune', 'dist', 'main.js');
const LIB = (name) => join(WORKSPACE, 'libs', name, 'dist', 'index.js');
const DEFAULT_CONFIG = join(WORKSPACE, 'configs', 'segment', 'membrane.json');

const USAGE = [
  'usage: node tools/experiments/transfer.mjs [options]   (npm run experiment:transfer -- [options])',
  '',
  'Does MoCoV2 pretraining on EM help membrane segmentation? Pretrains an encoder (quick config), then runs',
  '`finetune benchmark` (CEM500K protocol: the encoder frozen and fine-tuned, plus random init, as child runs',
  'of one MLflow parent run) on the membrane task, and adds the official U-RISC F1 of every arm.',
  '',
  '  --steps N              fine-tuning steps of every arm (--set train.steps=N; default: the config, 150)',
  '  --seed S               train and model seed of every arm (default 0)',
  '  --encoder DIR          skip pretraining and compare this encoder bundle (or runs:/<id>/encoder, a',
  "                         pretraining's latest.json, latest-pretrain) against random init",
  '  --modes LIST           encoder modes: frozen and/or finetuned (default frozen,finetuned; random init',
  '                         is always trained whole)',
  '  --pretrain-set K=V     override the quick pretraining config (repeatable)',
  '  --finetune-set K=V     override the fine-tuning config of every arm (repeatable)',
  '  --config FILE          the `segment` config of every arm (default configs/segment/membrane.json)',
  '  --data DIR             labelled membrane folder, membrane black, as for `finetune segment` (default:',
  '                         the embedded synthetic U-RISC data)',
  '  --experiment NAME      MLflow experiment of all runs (default emseg-transfer)',
  '  --tracking-uri URI     MLflow server (default: MLFLOW_TRACKING_URI, else the project store, started',
  '                         once for the whole experiment)',
  '  --out DIR              where the runs go (default .emseg/experiments/transfer-<time>)',
  '  --help                 this help',
  '',
  'Exit code: 0 every run finished, 1 a run failed, 2 bad arguments, 130 stopped.',
  'Since issue 12: the fine-tuning runs are `finetune benchmark` arms on configs/segment/membrane.json (the',
  '`finetune urisc` quick config before), so --finetune-set keys are those of the segment config.',
  '',
].join('\n');

let opts;
try {
  ({ values: opts } = parseArgs({
    options: {
      steps: { type: 'string' },
      seed: { type: 'string', default: '0' },
      'pretrain-set': { type: 'string', multiple: true, default: [] },
      'finetune-set': { type: 'string', multiple: true, default: [] },
      encoder: { type: 'string' },
      modes: { type: 'string', default: 'frozen,finetuned' },
      config: { type: 'string', default: DEFAULT_CONFIG },
      data: { type: 'string' },
      experiment: { type: 'string', default: 'emseg-transfer' },
      'tracking-uri': { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }));
} catch (err) {
  process.stderr.write(`error: ${err.message}\n\n${USAGE}`);
  process.exit(2);
}
if (opts.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const usageError = (message) => {
  process.stderr.write(`error: ${message}\n(see --help)\n`);
  process.exit(2);
};
if (opts.steps !== undefined && !/^[1-9]\d*$/.test(opts.steps)) usageError(`--steps takes a positive integer, got ${JSON.stringify(opts.steps)}`);
if (!/^\d+$/.test(opts.seed)) usageError(`--seed takes a non-negative integer, got ${JSON.stringify(opts.seed)}`);
if (opts.encoder?.includes(',')) usageError(`--encoder takes one encoder (benchmark's --encoders is comma-separated), got ${JSON.stringify(opts.encoder)}`);
if (opts.encoder === 'random') usageError('--encoder random: random init is always an arm; name a pretrained encoder, or leave --encoder out to pretrain one');
for (const main of [PRETRAIN, FINETUNE, LIB('fs'), LIB('evaluation'), LIB('tracking')]) {
  if (!existsSync(main)) {
    process.stderr.write(`error: ${main} is missing: build first (npx tsc -b)\n`);
    process.exit(1);
  }
}
const { writeJsonAtomic } = await import(pathToFileURL(LIB('fs')).href);
const { readGrey8, uriscF1OrRejected } = await import(pathToFileURL(LIB('evaluation')).href);
const { MlflowClient, defaultStoreDir, startMlflowServer } = await import(pathToFileURL(LIB('tracking')).href);

const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
const outDir = resolve(opts.out ?? join(WORKSPACE, '.emseg', 'experiments', `transfer-${stamp}`));
mkdirSync(outDir, { recursive: true });
const t0 = Date.now();
const log = (message) => process.stderr.write(`${message}\n`);

// One tracking server for the whole experiment: the given one, else the project store started once
// (both children would otherwise start their own), so the parent run can be added to at the end.
let trackingUri = opts['tracking-uri'] ?? process.env.MLFLOW_TRACKING_URI ?? null;
let server = null;
if (trackingUri === null) {
  try {
    server = await startMlflowServer({ storeDir: defaultStoreDir(WORKSPACE) });
    trackingUri = server.uri;
    log(`MLflow: the project store at ${trackingUri} for this experiment (npm run mlflow shows it later)`);
  } catch (err) {
    log(`warning: could not start the project MLflow store (${err.message}); each run tracks on its own and the official F1 is not added to MLflow`);
  }
}
const tracking = trackingUri ? ['--tracking-uri', trackingUri] : [];

// Ctrl-C reaches the running command too (same process group): it saves and ends its run, and we
// wait for it, then start nothing more. A SIGTERM sent to this script alone is passed on.
let current = null;
let stopSignal = null;
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    if (stopSignal !== null) return;
    stopSignal = signal;
    log(`\n${signal}: waiting for the running command to stop; nothing more is started`);
    if (signal === 'SIGTERM') current?.kill('SIGTERM');
  });
}
const stopped = () => Object.assign(new Error(`stopped by ${stopSignal}`), { exitCode: 130 });

/** Runs a CLI with inherited output; resolves with its exit code (130 when a signal ended it). */
function run(label, args) {
  if (stopSignal !== null) return Promise.reject(stopped());
  log(`\n=== ${label}: node ${args.map((a) => (/[\s"]/.test(a) ? JSON.stringify(a) : a)).join(' ')}`);
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, args, { cwd: WORKSPACE, stdio: 'inherit' });
    current = child;
    child.on('error', reject);
    child.on('close', (code, signal) => {
      current = null;
      resolvePromise(signal ? 130 : (code ?? 1));
    });
  });
}
const readJson = (file) => (existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : null);

let exitCode = 0;
try {
  // 1. the encoder
  let encoder = opts.encoder ? (opts.encoder.startsWith('runs:') || opts.encoder === 'latest-pretrain' ? opts.encoder : resolve(opts.encoder)) : null;
  let pretrain = null;
  if (encoder === null) {
    const pretrainOut = join(outDir, 'pretrain');
    const started = Date.now();
    const code = await run('pretrain (MoCoV2, quick)', [
      PRETRAIN,
      'moco',
      '--out',
      pretrainOut,
      '--experiment',
      opts.experiment,
      '--run-name',
      `transfer-pretrain-${stamp}`,
      ...tracking,
      ...opts['pretrain-set'].flatMap((s) => ['--set', s]),
    ]);
    encoder = join(pretrainOut, 'encoder');
    const latest = readJson(join(outDir, 'latest.json'));
    pretrain = { exitCode: code, seconds: (Date.now() - started) / 1000, runId: latest?.runId ?? null, outDir: pretrainOut };
    if (code === 130 || stopSignal !== null) throw Object.assign(new Error('pretraining was stopped'), { exitCode: 130 });
    if (!existsSync(join(encoder, 'encoder.json'))) {
      throw Object.assign(new Error(`pretraining exited with code ${code} and wrote no encoder bundle at ${encoder}`), { exitCode: 1 });
    }
    if (code !== 0) log(`warning: pretraining exited with code ${code}, but its encoder bundle is complete; continuing with it`);
  }

  // 2. the benchmark, every arm at the same config, budget and seed
  const benchOut = join(outDir, 'benchmark');
  const sets = [...opts['finetune-set'], `train.seed=${opts.seed}`, `model.seed=${opts.seed}`, ...(opts.steps ? [`train.steps=${opts.steps}`] : [])];
  const benchStarted = Date.now();
  const benchCode = await run('benchmark (CEM500K protocol, membranes)', [
    FINETUNE,
    'benchmark',
    '--encoders',
    encoder,
    '--modes',
    opts.modes,
    '--config',
    resolve(opts.config),
    ...(opts.data ? ['--data', resolve(opts.data)] : []),
    '--out',
    benchOut,
    '--experiment',
    opts.experiment,
    ...tracking,
    ...sets.flatMap((s) => ['--set', s]),
  ]);
  const benchSeconds = (Date.now() - benchStarted) / 1000;
  const results = readJson(join(benchOut, 'results.json'));
  if (results === null)
    throw Object.assign(new Error(`the benchmark exited with code ${benchCode} and wrote no ${join(benchOut, 'results.json')}`), { exitCode: benchCode || 1 });
  exitCode = benchCode;

  // 3. the official U-RISC F1 of every arm's test masks (segment writes membrane white; U-RISC reads membrane black)
  const arms = [];
  for (const arm of results.arms) {
    const scores = readJson(join(arm.runDir, 'scores', 'test.json'));
    const cfg = readJson(join(arm.runDir, 'config.json'));
    let official = null;
    let note = null;
    if (scores === null) note = 'no test scores';
    else if (cfg?.data?.polarity !== 'black-foreground') note = `labels are ${cfg?.data?.polarity ?? 'of unknown polarity'}, not membrane black`;
    else {
      const images = [];
      for (const image of scores.images) {
        const [mask, truth] = await Promise.all([readGrey8(image.prediction), readGrey8(image.groundTruth)]);
        const submission = { ...mask, data: Uint8Array.from(mask.data, (v) => 255 - v) };
        images.push({ name: image.name, ...uriscF1OrRejected(submission, truth, { prediction: image.prediction, groundTruth: image.groundTruth }) });
      }
      const mean = (key) => images.reduce((a, r) => a + r[key], 0) / Math.max(1, images.length);
      official = {
        meanF1: mean('f1'),
        meanPrecision: mean('precision'),
        meanRecall: mean('recall'),
        rejected: images.filter((r) => r.rejected).length,
        images,
      };
    }
    arms.push({
      name: arm.name,
      encoder: arm.encoder,
      mode: arm.mode,
      exitCode: arm.status,
      seconds: arm.seconds ?? null,
      validation: arm.validation,
      testIoU: arm.test?.iou ?? null,
      testF1: arm.test?.f1 ?? null,
      testVRand: scores?.mean?.vRand ?? null,
      urisc: official,
      ...(note ? { uriscNote: note } : {}),
      runDir: arm.runDir,
    });
  }

  // 4. the comparison
  const cfg = readJson(join(arms[0]?.runDir ?? benchOut, 'config.json'));
  const baseline = arms.find((a) => a.encoder === 'random');
  const delta = (a) => (a.urisc && baseline?.urisc ? a.urisc.meanF1 - baseline.urisc.meanF1 : null);
  const f = (v) => (typeof v === 'number' ? v.toFixed(4) : 'n/a');
  const signed = (v) => (typeof v === 'number' ? `${v >= 0 ? '+' : ''}${v.toFixed(4)}` : '');
  const head = ['arm', `val ${results.metric}`, 'test V-Rand', 'test IoU', 'test F1 (Dice)', 'U-RISC F1', 'vs random', 'time'];
  const rows = arms.map((a) => [
    a.name + (a.exitCode !== 0 ? ` (exit ${a.exitCode})` : ''),
    f(a.validation),
    f(a.testVRand),
    f(a.testIoU),
    f(a.testF1),
    f(a.urisc?.meanF1) + (a.urisc?.rejected ? ` (${a.urisc.rejected}/${a.urisc.images.length} rejected)` : ''),
    a === baseline ? '' : signed(delta(a)),
    a.seconds !== null ? `${Math.round(a.seconds)} s` : 'n/a',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  const table = [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');

  let logged = null;
  if (trackingUri && results.parentRunId) {
    try {
      const client = new MlflowClient({ trackingUri });
      const now = Date.now();
      const metrics = arms.filter((a) => a.urisc).map((a) => ({ key: `${a.name}_test_urisc_f1`, value: a.urisc.meanF1, timestamp: now, step: 0 }));
      const tags = {
        'emseg.experiment': 'transfer',
        'emseg.transfer.encoder': encoder,
        ...(pretrain?.runId ? { 'emseg.transfer.pretrainRunId': pretrain.runId } : {}),
      };
      await client.logBatch(results.parentRunId, { metrics, tags });
      logged = results.parentRunId;
    } catch (err) {
      log(`warning: could not add the official F1 to MLflow parent run ${results.parentRunId}: ${err.message}`);
    }
  }

  const summary = {
    question: 'does MoCoV2 pretraining on EM help membrane segmentation?',
    experiment: opts.experiment,
    encoder,
    pretrain,
    benchmark: {
      exitCode: benchCode,
      seconds: benchSeconds,
      outDir: benchOut,
      results: join(benchOut, 'results.json'),
      parentRunId: results.parentRunId ?? null,
      config: results.config,
      sets: results.sets,
      data: results.data ?? null,
      validationMetric: results.metric,
    },
    finetune: cfg
      ? { architecture: cfg.model.architecture, steps: cfg.train.steps, batchSize: cfg.train.batchSize, patchSize: cfg.patches.size, seed: cfg.train.seed }
      : null,
    arms,
    officialMetric: 'U-RISC F1 (mean over the test images of each arm, bound_pix 0), from the masks the benchmark wrote',
    totalSeconds: (Date.now() - t0) / 1000,
  };
  const summaryFile = join(outDir, 'summary.json');
  await writeJsonAtomic(summaryFile, summary);
  process.stdout.write(
    [
      '',
      `transfer experiment "${opts.experiment}"${cfg ? `: ${cfg.model.architecture} U-Net, ${cfg.train.steps} steps of ${cfg.train.batchSize} x ${cfg.patches.size} px, seed ${cfg.train.seed}` : ''}`,
      `encoder: ${encoder}${pretrain ? ` (pretrained in ${Math.round(pretrain.seconds)} s${pretrain.runId ? `, MLflow run ${pretrain.runId}` : ''})` : ''}`,
      '',
      table,
      '',
      `val: the selected model's validation ${results.metric}; test: the best model on the test split (IoU and Dice F1 pooled over pixels, V-Rand mean per image);`,
      'U-RISC F1: the official score of the same test masks (mean per image); vs random: its difference from random init.',
      ...(arms.some((a) => a.urisc?.rejected)
        ? ['rejected: masks the competition refuses (background under 5x membrane) score 0, as on its leaderboard; the reasons are in summary.json']
        : []),
      ...arms.filter((a) => a.uriscNote).map((a) => `${a.name}: no U-RISC F1 (${a.uriscNote})`),
      `summary: ${summaryFile}`,
      `benchmark: ${join(benchOut, 'results.csv')} (MLflow parent run ${results.parentRunId ?? 'n/a'}${logged ? ', U-RISC F1 added' : ''}); see the runs: npm run mlflow`,
      `total: ${Math.round(summary.totalSeconds)} s`,
      '',
    ].join('\n'),
  );
} catch (err) {
  log(`error: ${err.message}`);
  exitCode = err.exitCode ?? 1;
} finally {
  await server?.stop();
}
process.exitCode = exitCode;
