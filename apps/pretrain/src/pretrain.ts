/**
 * The MoCoV2 pretraining loop: data stream -> MocoModel steps -> checkpoints -> encoder bundle.
 * Tracking-agnostic: progress and metrics go to a `PretrainListener` (main.ts wires MLflow to it).
 * The loop itself (schedule, resume, checkpoints, stop) is `runTraining`; this file supplies the
 * MoCo step, the checkpoint state and the linear probe as its evaluation.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { tf, type Tensor } from '@emseg/tf';
import {
  BadCropsError,
  DataError,
  UnlabeledCrops,
  imageBatchToTensor,
  readImageInfo,
  writeFileAtomic,
  type AugmentationSpec,
  type BadCrop,
  type DatasetDigest,
  type ViewBatch,
} from '@emseg/data';
import { saveEncoderBundle } from '@emseg/models';
import { Sgd, cosineSchedule, runTraining, stepSchedule, type Checkpoint, type GracefulStop, type LrSchedule, type TrainingTask } from '@emseg/training';
import type { MocoConfig } from './config.js';
import { MocoModel, type MocoStepResult } from './moco-model.js';
import { disposeProbeData, loadProbeData, runProbe, type ProbeData, type ProbeResult } from './probe.js';

export interface StepMetrics extends MocoStepResult {
  lr: number;
  imagesPerSec: number;
  epoch: number;
}

export interface PretrainListener {
  /** Called once the data are listed, before the first step. */
  start?(info: { crops: number; stepsPerEpoch: number; totalSteps: number; startStep: number; digest: DatasetDigest }): void | Promise<void>;
  step?(step: number, metrics: StepMetrics): void;
  checkpoint?(dir: string, step: number): void | Promise<void>;
  probe?(step: number, result: ProbeResult): void;
  /** Something the user must know but that does not stop the run (default: printed to stderr). */
  warn?(message: string): void;
}

export interface PretrainOptions {
  cfg: MocoConfig;
  /** Folder of unlabeled crops (CEM500K layout: any tree of images). */
  dataDir: string;
  /** Run directory: checkpoints/, encoder/, the crop manifest and bad-crops.log go here. */
  outDir: string;
  /** Continue from the newest checkpoint in outDir/checkpoints. */
  resume?: boolean;
  stop?: GracefulStop;
  listener?: PretrainListener;
  /** U-RISC-layout folder of a few labelled images for the linear probe (see probe.ts). */
  probeDir?: string;
  /** Extra facts for the bundle's encoder.json. */
  mlflowRunId?: string | null;
}

export interface PretrainResult {
  status: 'FINISHED' | 'KILLED';
  steps: number;
  totalSteps: number;
  lastLoss: number | null;
  bundleDir: string | null;
  checkpointDir: string;
}

interface CheckpointState {
  step: number;
  queuePtr: number;
  optimizerIterations: number;
  architecture: string;
  /** The crops trained on (absent in checkpoints written before this was recorded). */
  crops?: number;
  dataDigest?: string;
}

function schedule(cfg: MocoConfig, stepsPerEpoch: number, totalSteps: number): LrSchedule {
  const { optimizer: o } = cfg;
  const warmupSteps = Math.round(o.warmupEpochs * stepsPerEpoch);
  return o.schedule === 'cosine'
    ? cosineSchedule(o.lr, totalSteps, { warmupSteps })
    : stepSchedule(o.lr, o.milestones.map((e) => Math.round(e * stepsPerEpoch)), o.gamma, { warmupSteps });
}

/** Crops must be at least the network's input size (RandomResizedCrop may not upsample whole images). */
async function checkCropSize(crops: UnlabeledCrops, cropSize: number): Promise<void> {
  const first = crops.path(0);
  const info = await readImageInfo(first);
  if (info.width < cropSize || info.height < cropSize) {
    throw new DataError(first, `is ${info.width} x ${info.height} pixels, smaller than data.cropSize ${cropSize}`, `crops of at least ${cropSize} x ${cropSize} (or a smaller data.cropSize)`);
  }
}

/**
 * Lists the crops into `<outDir>/crops.manifest` (or reuses it), checking every crop's header when it
 * is built. Crops that fail are listed in `<outDir>/bad-crops.log`, and either stop the run
 * (data.badCrops "fail") or are left out with a warning ("skip").
 */
async function openCrops(dataDir: string, outDir: string, cfg: MocoConfig, warn: (message: string) => void): Promise<UnlabeledCrops> {
  const manifest = join(outDir, 'crops.manifest');
  const log = join(outDir, 'bad-crops.log');
  const writeLog = (bad: readonly BadCrop[]) => writeFileAtomic(log, `# crops that failed the header check (${new Date().toISOString()})\n${bad.map((b) => `${b.problem}\n`).join('')}`);
  let crops: UnlabeledCrops;
  try {
    crops = await UnlabeledCrops.open(dataDir, { manifest, badCrops: cfg.data.badCrops, minSize: cfg.data.cropSize });
  } catch (err) {
    if (!(err instanceof BadCropsError)) throw err;
    await writeLog(err.bad);
    const fix = `remove or replace these files (a crop smaller than data.cropSize ${cfg.data.cropSize} may also mean data.cropSize is too large), or train without them with --set data.badCrops=skip; all ${err.bad.length} are listed in ${log}`;
    throw new BadCropsError(err.path, err.bad, err.checked, fix);
  }
  const check = crops.headerCheck;
  if (check !== null && check.skipped.length > 0) {
    await writeLog(check.skipped);
    warn(`warning: left out ${check.skipped.length} of ${check.checked} crops that fail the header check (data.badCrops "skip"); they are listed in ${log}`);
  } else if (check !== null) {
    await rm(log, { force: true });
  }
  return crops;
}

export async function pretrainMoco(opts: PretrainOptions): Promise<PretrainResult> {
  const { cfg, outDir } = opts;
  const warn = opts.listener?.warn ?? ((message: string) => void process.stderr.write(`${message}\n`));
  const crops = await openCrops(opts.dataDir, outDir, cfg, warn);
  await checkCropSize(crops, cfg.data.cropSize);
  const stepsPerEpoch = Math.floor(crops.size / cfg.train.batchSize);
  if (stepsPerEpoch === 0) {
    throw new DataError(crops.root, `has ${crops.size} crops, fewer than one batch (train.batchSize ${cfg.train.batchSize})`, 'at least one batch of crops');
  }
  const epochSteps = Math.ceil(cfg.train.epochs * stepsPerEpoch);
  const totalSteps = cfg.train.maxSteps === null ? epochSteps : Math.min(cfg.train.maxSteps, epochSteps);
  const lrAt = schedule(cfg, stepsPerEpoch, totalSteps);
  const ckptRoot = join(outDir, 'checkpoints');

  const model = new MocoModel(cfg);
  const optimizer = new Sgd(cfg.optimizer.momentum, cfg.optimizer.weightDecay);
  let probeData: ProbeData | null = null;
  try {
    if (opts.probeDir) probeData = await loadProbeData(opts.probeDir, { patchSize: cfg.probe.patchSize, mean: cfg.data.mean, std: cfg.data.std });
    const probe = probeData;
    const digest = await crops.digest();
    const norm = { mean: cfg.data.mean, std: cfg.data.std };
    const task: TrainingTask<ViewBatch, MocoStepResult & { lr: number }, CheckpointState, ProbeResult> = {
      batches: (epoch) =>
        crops.stream({
          seed: cfg.train.seed,
          epoch,
          batchSize: cfg.train.batchSize,
          size: cfg.data.cropSize,
          views: 2,
          augmentation: cfg.augmentation as AugmentationSpec,
          prefetch: cfg.data.prefetch,
        }),
      start: (startStep) => opts.listener?.start?.({ crops: crops.size, stepsPerEpoch, totalSteps, startStep, digest }),
      step: (batch, step) => {
        const [q, k] = batch.views.map((v) => imageBatchToTensor(v, norm));
        const lr = lrAt(step);
        const result = model.step(q, k, optimizer, lr, cfg.train.seed * 1_000_003 + step);
        tf.dispose([q, k]);
        return { ...result, lr };
      },
      state: ({ step }) => ({
        tensors: checkpointTensors(model, optimizer),
        state: {
          step,
          queuePtr: model.queue.ptr,
          optimizerIterations: optimizer.iterations,
          architecture: cfg.encoder.architecture,
          crops: crops.size,
          dataDigest: digest.digest,
        },
      }),
      restore: (ck) => restore(model, optimizer, ck, cfg, { crops: crops.size, digest: digest.digest, root: crops.root }, warn),
      // The probe watches the features; it picks no best model.
      evaluate: probe
        ? (step) => {
            const result = runProbe(model.query.encoder, probe, { steps: cfg.probe.steps });
            opts.listener?.probe?.(step, result);
            return { score: result, better: false };
          }
        : undefined,
    };

    const run = await runTraining({
      task,
      totalSteps,
      stepsPerEpoch,
      checkpointRoot: ckptRoot,
      checkpointEvery: cfg.train.checkpointEvery,
      evaluateEvery: cfg.probe.every,
      evaluateOnStop: true,
      resume: opts.resume,
      stop: opts.stop,
      divergenceHint: `lower optimizer.lr (now ${cfg.optimizer.lr})`,
      warn,
      listener: {
        step: (step, m, t) => opts.listener?.step?.(step, { ...m, epoch: t.epoch, imagesPerSec: (cfg.train.batchSize * 1000) / t.stepMs }),
        checkpoint: opts.listener?.checkpoint,
      },
    });
    const bundleDir = join(outDir, 'encoder');
    await saveEncoderBundle(
      bundleDir,
      model.query.encoder,
      {
        normalization: { mean: cfg.data.mean, std: cfg.data.std },
        pixelSizeNm: cfg.data.pixelSizeNm,
        training: { method: 'mocov2', dataDigest: digest.digest, steps: run.steps, config: cfg as unknown as Record<string, unknown>, mlflowRunId: opts.mlflowRunId ?? null },
      },
      { overwrite: true },
    );
    return { status: run.status, steps: run.steps, totalSteps, lastLoss: run.lastMetrics?.loss ?? null, bundleDir, checkpointDir: ckptRoot };
  } finally {
    if (probeData) disposeProbeData(probeData);
    model.dispose();
    optimizer.dispose();
  }
}

function checkpointTensors(model: MocoModel, optimizer: Sgd): Record<string, Tensor> {
  const out: Record<string, Tensor> = { queue: model.queue.keys };
  for (const [name, v] of Object.entries(model.allVariables(model.query))) out[`query/${name}`] = v;
  for (const [name, v] of Object.entries(model.allVariables(model.key))) out[`key/${name}`] = v;
  for (const [name, t] of Object.entries(optimizer.state().slots)) out[`optimizer/${name}`] = t;
  return out;
}

/**
 * Loads a checkpoint (the runner found, and disposes) into the model and optimizer. Warns when the
 * crops differ from those the checkpoint was trained on: the remaining epochs' order changes.
 */
function restore(
  model: MocoModel,
  optimizer: Sgd,
  ck: Checkpoint<CheckpointState>,
  cfg: MocoConfig,
  data: { crops: number; digest: string; root: string },
  warn: (message: string) => void,
): void {
  const { dir } = ck;
  const { crops, dataDigest } = ck.state;
  if (dataDigest !== undefined && dataDigest !== data.digest) {
    warn(
      `warning: the crops in ${data.root} (${data.crops} crops, digest ${data.digest}) are not those checkpoint ${dir} was trained on ` +
        `(${crops} crops, digest ${dataDigest}): the remaining epochs see a different crop order than the interrupted run would have`,
    );
  }
  if (ck.state.architecture !== cfg.encoder.architecture) {
    throw new Error(`checkpoint ${dir} is a ${ck.state.architecture}, but the config asks for ${cfg.encoder.architecture}`);
  }
  for (const [prefix, branch] of [['query', model.query], ['key', model.key]] as const) {
    for (const [name, v] of Object.entries(model.allVariables(branch))) {
      const t = ck.tensors[`${prefix}/${name}`];
      if (!t) throw new Error(`checkpoint ${dir} has no ${prefix}/${name}`);
      v.assign(t);
    }
  }
  model.queue.load(ck.tensors.queue, ck.state.queuePtr);
  const slots = Object.fromEntries(Object.entries(ck.tensors).filter(([k]) => k.startsWith('optimizer/')).map(([k, t]) => [k.slice('optimizer/'.length), t]));
  optimizer.restore({ iterations: ck.state.optimizerIterations, slots });
}
