#!/usr/bin/env node
// The README's main job on the embedded default data: quick MoCoV2 pretraining -> U-Net
// fine-tuning from that encoder -> full-image prediction of the test images -> official U-RISC
// scoring. Every step is a real CLI run, logged to the project's MLflow store; `npm run mlflow`
// shows them. Extra arguments are passed to both training steps (e.g. `-- --set train.maxSteps=20`
// is not valid for both; use EMSEG_QUICKSTART_PRETRAIN / EMSEG_QUICKSTART_FINETUNE to add flags).
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const experiment = process.env.MLFLOW_EXPERIMENT_NAME ?? 'emseg-quickstart';
const extra = (name) => (process.env[name] ? process.env[name].split(' ').filter(Boolean) : []);

const steps = [
  [
    '1/4 pretrain (MoCoV2, quick config)',
    ['apps/pretrain/dist/main.js', 'moco', '--experiment', experiment, '--probe', 'embedded', ...extra('EMSEG_QUICKSTART_PRETRAIN')],
  ],
  [
    '2/4 fine-tune (U-Net from the pretrained encoder)',
    ['apps/finetune/dist/main.js', 'urisc', '--experiment', experiment, '--encoder', 'latest-pretrain', ...extra('EMSEG_QUICKSTART_FINETUNE')],
  ],
  ['3/4 predict the test images (blended tiles)', ['apps/finetune/dist/main.js', 'predict']],
  ['4/4 score with the official U-RISC F1', ['apps/finetune/dist/main.js', 'score', '--json', join(root, '.emseg', 'quickstart-scores.json')]],
];

const started = Date.now();
for (const [title, args] of steps) {
  process.stderr.write(`\n=== ${title}\n`);
  const res = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
  if (res.status !== 0) {
    process.stderr.write(`\nquickstart: step "${title}" failed (exit ${res.status ?? res.signal}).\n`);
    process.exit(res.status ?? 1);
  }
}
process.stderr.write(
  `\nquickstart done in ${((Date.now() - started) / 60000).toFixed(1)} min. Runs are in MLflow experiment "${experiment}": ` +
    'run `npm run mlflow` and open the printed URL.\n',
);
