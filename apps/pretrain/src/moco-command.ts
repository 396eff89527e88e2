/**
 * The `moco` command: one self-supervised pretraining run (MoCoV2 by default, `--set method=byol`
 * for BYOL) in its own run folder, tracked in MLflow and tagged `emseg.method`. Claims the folder,
 * runs the loop (pretrain.ts), saves the encoder bundle and records it in latest.json.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadConfig } from '@emseg/config';
import { ensureDefaultData } from '@emseg/data';
import type { TrackedRun } from '@emseg/tracking';
import { checkpointsLine, ProgressBar, superviseRun, withRunDir, type RunSession } from '@emseg/training';
import { checkMocoConfig, mocoSchema, type MocoConfig } from './config.js';
import { methodTitle } from './methods.js';
import { openCrops, pretrain } from './pretrain.js';
import { PRETRAIN_RUNS } from './paths.js';
import { queueSizeOf, queueSizeWarning, resolveQueueSize } from './queue-fit.js';

const log = (message: string) => process.stderr.write(`${message}\n`);

export interface MocoArgs {
  config: string;
  data?: string;
  set: string[];
  out?: string;
  resume: boolean;
  overwrite: boolean;
  /** Where to record the finished pretraining (default: latest.json beside the run folder). */
  latest?: string;
  experiment: string;
  runName?: string;
  trackingUri?: string;
  probe?: string;
}

/** Runs `moco`; returns the exit code (0 finished, 130 stopped by a signal); bad input throws. */
export async function moco(args: MocoArgs): Promise<number> {
  const cfg: MocoConfig = loadConfig(mocoSchema, { file: args.config, overrides: args.set });
  checkMocoConfig(cfg, args.config);
  const runName = args.runName ?? `${cfg.method}-${cfg.encoder.architecture}-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}`;
  const dir = resolve(args.out ?? join(PRETRAIN_RUNS, runName));
  return withRunDir({ app: 'pretrain', runName, dir, resume: args.resume, overwrite: args.overwrite, log }, (session) =>
    pretrainInRunDir(args, cfg, runName, session),
  );
}

/**
 * MoCo's K for a run on `crops` crops: "auto" resolved by the rule of queue-fit.ts, or on --resume the
 * K the interrupted run resolved (its `config.json`; its checkpointed queue has that size); and the
 * warning when K is not below the crop count.
 */
function fitQueue(cfg: MocoConfig, crops: number, previousConfig: string | null): { cfg: MocoConfig; warning: string | null } {
  if (cfg.method !== 'mocov2') return { cfg, warning: null };
  let fitted = cfg;
  if (cfg.moco.queueSize === 'auto') {
    const before = previousConfig && existsSync(previousConfig) ? (JSON.parse(readFileSync(previousConfig, 'utf8')) as { moco?: { queueSize?: unknown } }) : {};
    const previous = before.moco?.queueSize;
    fitted = typeof previous === 'number' ? { ...cfg, moco: { ...cfg.moco, queueSize: previous } } : resolveQueueSize(cfg, crops);
    const why =
      typeof previous === 'number'
        ? 'as the interrupted run resolved it'
        : `the largest multiple of train.batchSize ${cfg.train.batchSize} up to a quarter of the ${crops} crops`;
    log(`moco.queueSize "auto": ${queueSizeOf(fitted)} (${why})`);
  }
  return { cfg: fitted, warning: queueSizeWarning(queueSizeOf(fitted), crops, cfg.train.batchSize) };
}

async function pretrainInRunDir(args: MocoArgs, asked: MocoConfig, runName: string, session: RunSession): Promise<number> {
  const outDir = session.dir;
  let dataDir = args.data;
  if (!dataDir) {
    const data = await ensureDefaultData();
    dataDir = data.crops.root;
    log(`data: embedded synthetic crops (${data.crops.count} x ${data.spec.crops.size} px) in ${dataDir}${data.created ? ' (generated now)' : ''}`);
  }
  const probeDir = args.probe === 'embedded' ? (await ensureDefaultData()).urisc.root : args.probe;
  // The crops are listed before the MLflow run starts, so that it logs the queue size MoCo trains with.
  const crops = await openCrops(dataDir, outDir, asked, log);
  const { cfg, warning } = fitQueue(asked, crops.size, args.resume ? join(outDir, 'config.json') : null);
  if (warning) log(warning);
  const run: TrackedRun = await session.startRun({
    experiment: args.experiment,
    trackingUri: args.trackingUri,
    cfg,
    configFile: args.config,
    description: `${methodTitle(cfg.method)} pretraining of a ${cfg.encoder.architecture} on ${dataDir}`,
    params: { data: resolve(dataDir) },
    tags: { 'emseg.method': cfg.method, ...(warning ? { 'emseg.warning.queueSize': warning } : {}) },
  });
  let bar: ProgressBar | undefined;
  return superviseRun(run, { trackingUri: args.trackingUri, onFailure: () => bar?.done('(failed)') }, async (stop) => {
    const result = await pretrain({
      cfg,
      dataDir,
      crops,
      outDir,
      resume: args.resume,
      stop,
      mlflowRunId: run.id,
      probeDir,
      listener: {
        warn: (message) => {
          if (bar) process.stderr.write('\n');
          log(message);
        },
        probe: (step, p) => {
          run.logMetrics({ probe_f1: p.f1, probe_precision: p.precision, probe_recall: p.recall, probe_threshold: p.threshold }, step);
          process.stderr.write(`\nlinear probe at step ${step}: best-threshold F1 ${p.f1.toFixed(4)} (threshold ${p.threshold.toFixed(2)})\n`);
        },
        start: ({ crops, totalSteps, startStep, digest }) => {
          run.logInput({ name: 'unlabeled-crops', digest: digest.digest, source: resolve(dataDir), context: 'training' });
          run.logParams({ 'data.crops': crops, 'train.totalSteps': totalSteps });
          bar = new ProgressBar({ label: cfg.method, total: totalSteps, unit: 'img', start: startStep });
        },
        step: (step, m) => {
          // The method's own metrics (MoCo: pos_sim, neg_sim; BYOL: z_std) under their names.
          run.logMetrics({ loss: m.loss, lr: m.lr, momentum: m.momentum, images_per_sec: m.imagesPerSec, epoch: m.epoch, ...m.metrics }, step);
          bar?.tick(cfg.train.batchSize, { loss: m.loss, lr: m.lr });
        },
      },
    });
    bar?.done(result.status === 'KILLED' ? '(stopped)' : '');
    // The encoder is on disk: record it for fine-tuning before waiting on the tracking server.
    const latest =
      result.status === 'FINISHED' && result.bundleDir
        ? await session.recordLatest({ bundleDir: result.bundleDir, encoderUri: `runs:/${run.id}/encoder` }, args.latest)
        : null;
    if (result.bundleDir) await run.logArtifacts(result.bundleDir, 'encoder');
    if (existsSync(join(outDir, 'bad-crops.log'))) await run.logArtifact(join(outDir, 'bad-crops.log'));
    return {
      status: result.status,
      summary: [
        `pretraining ${result.status.toLowerCase()} after ${result.steps}/${result.totalSteps} steps (last loss ${result.lastLoss?.toFixed(4) ?? 'n/a'})`,
        `encoder bundle: ${result.bundleDir}  (MLflow: runs:/${run.id}/encoder)`,
        checkpointsLine(result.checkpointDir, result.status, outDir),
        ...(result.status === 'FINISHED'
          ? [`recorded in:    ${latest}  (fine-tune from it: --encoder ${outDir === join(PRETRAIN_RUNS, runName) ? 'latest-pretrain' : latest})`]
          : []),
      ],
    };
  });
}
