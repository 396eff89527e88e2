#!/usr/bin/env node
/**
 * emseg pretrain: MoCoV2 self-supervised pretraining of an EM encoder, logged to MLflow.
 *
 *   nx run pretrain:moco                          quick config on the embedded synthetic crops
 *   nx run pretrain:moco -c cem500k --data DIR    the CEM500K recipe on a real crops folder
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { backendInfo, backendTags } from '@emseg/tf';
import { flatten, loadConfig } from '@emseg/config';
import { ensureDefaultData, writeFileAtomic } from '@emseg/data';
import { Tracker, type TrackedRun } from '@emseg/tracking';
import { ProgressBar, gracefulStop } from '@emseg/training';
import { checkMocoConfig, mocoSchema, type MocoConfig } from './config.js';
import { pretrainMoco } from './pretrain.js';

const WORKSPACE = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** Where the newest finished pretraining is recorded, so `finetune:urisc` can pick its encoder up. */
export const LATEST_PRETRAIN = join(WORKSPACE, '.emseg', 'runs', 'pretrain', 'latest.json');

interface MocoArgs {
  config: string;
  data?: string;
  set: string[];
  out?: string;
  resume: boolean;
  experiment: string;
  runName?: string;
  trackingUri?: string;
  probe?: string;
}

/** JSON, written atomically (temp file + rename). */
function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  return writeFileAtomic(path, `${JSON.stringify(value, null, 2)}\n`);
}

function readPreviousRunId(path: string): string | null {
  try {
    return (JSON.parse(readFileSync(path, 'utf8')) as { runId?: string }).runId ?? null;
  } catch {
    return null;
  }
}

async function moco(args: MocoArgs): Promise<number> {
  const cfg: MocoConfig = loadConfig(mocoSchema, { file: args.config, overrides: args.set });
  checkMocoConfig(cfg, args.config);
  const runName = args.runName ?? `moco-${cfg.encoder.architecture}-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}`;
  const outDir = resolve(args.out ?? join(WORKSPACE, '.emseg', 'runs', 'pretrain', runName));
  let dataDir = args.data;
  if (!dataDir) {
    const data = await ensureDefaultData();
    dataDir = data.crops.root;
    process.stderr.write(`data: embedded synthetic crops (${data.crops.count} x ${data.spec.crops.size} px) in ${dataDir}${data.created ? ' (generated now)' : ''}\n`);
  }
  const probeDir = args.probe === 'embedded' ? (await ensureDefaultData()).urisc.root : args.probe;
  mkdirSync(outDir, { recursive: true });
  await writeJsonAtomic(join(outDir, 'config.json'), cfg);

  // A resumed run is a new MLflow run (params such as train.maxSteps may change); it links back.
  const previous = args.resume ? readPreviousRunId(join(outDir, 'mlflow-run.json')) : null;
  const info = backendInfo();
  process.stderr.write(`backend: ${info.package} (TensorFlow ${info.tensorflowVersion ?? 'pure JS'}, ${info.gpu ? 'GPU' : 'CPU'})\n`);
  const run: TrackedRun = await Tracker.start({
    trackingUri: args.trackingUri,
    experiment: args.experiment,
    runName,
    handleProcessEvents: false, // we end the run ourselves, after saving a checkpoint
    description: `MoCoV2 pretraining of a ${cfg.encoder.architecture} on ${dataDir}`,
    tags: {
      ...backendTags(),
      'emseg.app': 'pretrain',
      'emseg.config': resolve(args.config),
      'emseg.outDir': outDir,
      ...(previous ? { 'emseg.resumedFrom': previous } : {}),
    },
    params: { ...flatten(cfg as unknown as Record<string, unknown>), data: resolve(dataDir) },
  });
  process.stderr.write(`MLflow run ${run.id} in experiment "${args.experiment}" at ${run.client.trackingUri}${previous ? ` (resuming run ${previous})` : ''}\n`);
  await writeJsonAtomic(join(outDir, 'mlflow-run.json'), { runId: run.id, trackingUri: run.client.trackingUri, experiment: args.experiment });
  const stop = gracefulStop();
  let bar: ProgressBar | undefined;
  try {
    await run.logArtifact(join(outDir, 'config.json'));
    const result = await pretrainMoco({
      cfg,
      dataDir,
      outDir,
      resume: args.resume,
      stop,
      mlflowRunId: run.id,
      probeDir,
      listener: {
        probe: (step, p) => {
          run.logMetrics({ probe_f1: p.f1, probe_precision: p.precision, probe_recall: p.recall, probe_threshold: p.threshold }, step);
          process.stderr.write(`\nlinear probe at step ${step}: best-threshold F1 ${p.f1.toFixed(4)} (threshold ${p.threshold.toFixed(2)})\n`);
        },
        start: ({ crops, totalSteps, startStep, digest }) => {
          run.logInput({ name: 'unlabeled-crops', digest: digest.digest, source: resolve(dataDir), context: 'training' });
          run.logParams({ 'data.crops': crops, 'train.totalSteps': totalSteps });
          bar = new ProgressBar({ label: 'moco', total: totalSteps, unit: 'img', start: startStep });
        },
        step: (step, m) => {
          run.logMetrics({ loss: m.loss, lr: m.lr, images_per_sec: m.imagesPerSec, pos_sim: m.posSim, neg_sim: m.negSim, epoch: m.epoch }, step);
          bar?.tick(cfg.train.batchSize, { loss: m.loss, lr: m.lr });
        },
      },
    });
    bar?.done(result.status === 'KILLED' ? '(stopped)' : '');
    if (result.bundleDir) await run.logArtifacts(result.bundleDir, 'encoder');
    await run.end(result.status);
    if (result.status === 'FINISHED' && result.bundleDir) {
      await writeJsonAtomic(LATEST_PRETRAIN, { runId: run.id, trackingUri: run.client.trackingUri, bundleDir: result.bundleDir, encoderUri: `runs:/${run.id}/encoder`, finishedAt: new Date().toISOString() });
    }
    process.stdout.write(
      [
        `pretraining ${result.status.toLowerCase()} after ${result.steps}/${result.totalSteps} steps (last loss ${result.lastLoss?.toFixed(4) ?? 'n/a'})`,
        `encoder bundle: ${result.bundleDir}  (MLflow: runs:/${run.id}/encoder)`,
        `checkpoints:    ${result.checkpointDir}${result.status === 'KILLED' ? `  (continue with --resume --out ${outDir})` : ''}`,
        `see the run:    npm run mlflow`,
        '',
      ].join('\n'),
    );
    return result.status === 'KILLED' ? 130 : 0;
  } catch (err) {
    bar?.done('(failed)');
    await run.end('FAILED', { reason: (err as Error).message });
    throw err;
  } finally {
    stop.dispose();
  }
}

async function main(): Promise<void> {
  await yargs(hideBin(process.argv))
    .scriptName('emseg-pretrain')
    .usage('$0 <command> [options]')
    .command(
      'moco',
      'MoCoV2 contrastive pretraining of a ResNet encoder on unlabeled EM crops (CEM500K recipe)',
      (y) =>
        y
          .option('config', { type: 'string', default: join(WORKSPACE, 'configs', 'pretrain', 'quick.json'), describe: 'run configuration (JSON; see configs/pretrain/)' })
          .option('data', { type: 'string', describe: 'folder of unlabeled crops (any tree of PNG/TIFF/JPEG); default: the embedded synthetic crops' })
          .option('set', { type: 'string', array: true, default: [] as string[], describe: 'override a config value, e.g. --set train.maxSteps=100 (repeatable)' })
          .option('out', { type: 'string', describe: 'run directory for checkpoints and the encoder bundle (default .emseg/runs/pretrain/<run name>)' })
          .option('resume', { type: 'boolean', default: false, describe: 'continue from the newest checkpoint in --out' })
          .option('experiment', { type: 'string', default: process.env.MLFLOW_EXPERIMENT_NAME ?? 'emseg-pretrain', describe: 'MLflow experiment' })
          .option('run-name', { type: 'string', describe: 'MLflow run name (default moco-<arch>-<time>)' })
          .option('probe', { type: 'string', describe: 'U-RISC-layout folder of a few labelled images ("embedded": the synthetic ones): fit a linear membrane probe on frozen features every probe.every steps and log its F1' })
          .option('tracking-uri', { type: 'string', describe: 'MLflow server (default MLFLOW_TRACKING_URI, else the project store started on a free port)' })
          .check((a) => {
            if (a.resume && !a.out) throw new Error('--resume needs --out DIR, the run directory to continue');
            return true;
          })
          .example('$0 moco', 'quick run on the embedded synthetic crops')
          .example('$0 moco --config configs/pretrain/cem500k.json --data /data/cem500k', 'the paper recipe')
          .example('$0 moco --out .emseg/runs/pretrain/r1 --resume', 'continue an interrupted run'),
      async (a) => {
        process.exitCode = await moco({ ...a, runName: a.runName, trackingUri: a.trackingUri } as MocoArgs);
      },
    )
    .demandCommand(1, 'name a command: moco')
    .strict()
    .help()
    .fail((msg, err, y) => {
      if (err) {
        process.stderr.write(`error: ${err.message}\n`);
      } else {
        process.stderr.write(`${y.help()}\n\nerror: ${msg}\n`);
      }
      process.exit(2);
    })
    .parseAsync();
}

main().catch((err: unknown) => {
  process.stderr.write(`error: ${(err as Error).message}\n`);
  process.exit(1);
});
