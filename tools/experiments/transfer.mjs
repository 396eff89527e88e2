#!/usr/bin/env node
/**
 * The transfer experiment as one command (issue 7): does self-supervised pretraining on EM help
 * membrane segmentation?
 *
 *   1. pretrain an encoder with MoCoV2 (quick config, embedded synthetic crops),
 *   2. fine-tune a U-Net from that encoder and from random init, same config, budget and seed,
 *   3. score both on the test split with the official U-RISC F1,
 * all logged to one MLflow experiment; prints the comparison and writes it as JSON.
 *
 *   node tools/experiments/transfer.mjs [--steps N] [--pretrain-set K=V ...] [--finetune-set K=V ...]
 *                                       [--encoder DIR] [--experiment NAME] [--tracking-uri URI]
 *
 * Needs the built apps (`tsc -b`). Runs go to .emseg/experiments/transfer-<time>/.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const WORKSPACE = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const PRETRAIN = join(WORKSPACE, 'apps', 'pretrain', 'dist', 'main.js');
const FINETUNE = join(WORKSPACE, 'apps', 'finetune', 'dist', 'main.js');

const { values: opts } = parseArgs({
  options: {
    steps: { type: 'string' },
    seed: { type: 'string', default: '0' },
    'pretrain-set': { type: 'string', multiple: true, default: [] },
    'finetune-set': { type: 'string', multiple: true, default: [] },
    encoder: { type: 'string' },
    experiment: { type: 'string', default: 'emseg-transfer' },
    'tracking-uri': { type: 'string' },
    out: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (opts.help) {
  process.stdout.write(
    [
      'usage: node tools/experiments/transfer.mjs [options]',
      '  --steps N              fine-tuning steps of both runs (default: configs/finetune/quick.json)',
      '  --seed S               train and model seed of both fine-tunings (default 0)',
      '  --pretrain-set K=V     override the quick pretraining config (repeatable)',
      '  --finetune-set K=V     override the quick fine-tuning config of both runs (repeatable)',
      '  --encoder DIR          skip pretraining and compare this encoder bundle against random init',
      '  --experiment NAME      MLflow experiment of all runs (default emseg-transfer)',
      '  --tracking-uri URI     MLflow server (default: MLFLOW_TRACKING_URI, else the project store)',
      '  --out DIR              where the runs go (default .emseg/experiments/transfer-<time>)',
      '',
    ].join('\n'),
  );
  process.exit(0);
}
for (const main of [PRETRAIN, FINETUNE]) {
  if (!existsSync(main)) {
    process.stderr.write(`error: ${main} is missing: build first (npx tsc -b)\n`);
    process.exit(1);
  }
}

const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
const outDir = resolve(opts.out ?? join(WORKSPACE, '.emseg', 'experiments', `transfer-${stamp}`));
mkdirSync(outDir, { recursive: true });
const tracking = opts['tracking-uri'] ? ['--tracking-uri', opts['tracking-uri']] : [];

/** Runs a CLI with inherited output; resolves with its exit code. */
function run(label, args) {
  process.stderr.write(`\n=== ${label}: node ${args.map((a) => (a.includes(' ') ? JSON.stringify(a) : a)).join(' ')}\n`);
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, args, { cwd: WORKSPACE, stdio: 'inherit' });
    child.on('error', reject);
    child.on('close', (code, signal) => resolvePromise(signal ? 128 : (code ?? 1)));
  });
}

const readJson = (file) => (existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : null);
const t0 = Date.now();

// 1. the encoder
let encoder = opts.encoder ? resolve(opts.encoder) : null;
let pretrainSeconds = null;
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
  pretrainSeconds = (Date.now() - started) / 1000;
  encoder = join(pretrainOut, 'encoder');
  if (!existsSync(join(encoder, 'encoder.json'))) {
    process.stderr.write(`error: pretraining exited with code ${code} and wrote no encoder bundle at ${encoder}\n`);
    process.exit(1);
  }
  if (code !== 0) process.stderr.write(`warning: pretraining exited with code ${code}, but its encoder bundle is complete; continuing with it\n`);
}

// 2. the two fine-tunings, identical but for the encoder
const finetuneSets = [...opts['finetune-set'], `train.seed=${opts.seed}`, `model.seed=${opts.seed}`, ...(opts.steps ? [`train.steps=${opts.steps}`] : [])];
const arms = [
  { name: 'pretrained', encoder },
  { name: 'random-init', encoder: 'random' },
];
for (const arm of arms) {
  arm.out = join(outDir, `finetune-${arm.name}`);
  const started = Date.now();
  arm.code = await run(`fine-tune from ${arm.name}`, [
    FINETUNE,
    'urisc',
    '--encoder',
    arm.encoder,
    '--out',
    arm.out,
    '--experiment',
    opts.experiment,
    '--run-name',
    `transfer-${arm.name}-${stamp}`,
    ...tracking,
    ...finetuneSets.flatMap((s) => ['--set', s]),
  ]);
  arm.seconds = (Date.now() - started) / 1000;
  arm.validation = readJson(join(arm.out, 'scores', 'validation.json'));
  arm.test = readJson(join(arm.out, 'scores', 'test.json'));
  arm.config = readJson(join(arm.out, 'config.json'));
}

// 3. the comparison
const f = (v) => (typeof v === 'number' ? v.toFixed(4) : 'n/a');
const rows = arms.map((a) => [
  a.name,
  f(a.validation?.f1),
  f(a.validation?.bestF1),
  f(a.test?.meanF1),
  f(a.test?.meanPrecision),
  f(a.test?.meanRecall),
  `${Math.round(a.seconds)} s`,
]);
const head = ['encoder', 'val F1', 'val best-thr F1', 'test F1', 'test P', 'test R', 'time'];
const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (cells) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
const table = [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
const cfg = arms[0].config;
const summary = {
  experiment: opts.experiment,
  encoder,
  pretrainSeconds,
  finetune: cfg
    ? { architecture: cfg.model.architecture, steps: cfg.train.steps, batchSize: cfg.train.batchSize, patchSize: cfg.patches.size, seed: cfg.train.seed }
    : null,
  arms: arms.map((a) => ({
    name: a.name,
    encoder: a.encoder,
    exitCode: a.code,
    seconds: a.seconds,
    valF1: a.validation?.f1 ?? null,
    valBestThresholdF1: a.validation?.bestF1 ?? null,
    testF1: a.test?.meanF1 ?? null,
    testPrecision: a.test?.meanPrecision ?? null,
    testRecall: a.test?.meanRecall ?? null,
    outDir: a.out,
  })),
  totalSeconds: (Date.now() - t0) / 1000,
};
const summaryFile = join(outDir, 'summary.json');
writeFileSync(`${summaryFile}.tmp`, `${JSON.stringify(summary, null, 2)}\n`);
renameSync(`${summaryFile}.tmp`, summaryFile);
process.stdout.write(
  [
    '',
    `transfer experiment "${opts.experiment}"${cfg ? `: ${cfg.model.architecture} U-Net, ${cfg.train.steps} steps of ${cfg.train.batchSize} x ${cfg.patches.size} px, seed ${cfg.train.seed}` : ''}`,
    `encoder: ${encoder}${pretrainSeconds !== null ? ` (pretrained in ${Math.round(pretrainSeconds)} s)` : ''}`,
    '',
    table,
    '',
    `official U-RISC F1; val: the final evaluation, test: the best model, mean over the test images`,
    `summary: ${summaryFile}`,
    'see the runs: npm run mlflow',
    '',
  ].join('\n'),
);
process.exitCode = arms.every((a) => a.code === 0) ? 0 : 1;
